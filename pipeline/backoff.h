#pragma once
// Delays between attempts of a document whose failure was transient: exponential from 100 ms,
// doubling per failed attempt, capped at 10 s, each jittered by x0.5 .. x1.5 so that documents
// that failed together (a busy device, a full disk) do not all retry together.
//
// The jitter source is a parameter, so the shape can be tested exactly; the pipeline draws it
// from one RetryJitter it is given (PipelineOptions::jitter_seed), so tests can replay it.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>

#include "core/clock.h"

namespace docpipe {

inline constexpr std::chrono::milliseconds kBackoffBase{100};
inline constexpr std::chrono::milliseconds kBackoffMax{10000};

// The delay after failed attempt `attempt` (1 = the first attempt failed), before jitter:
// kBackoffBase * 2^(attempt - 1), at most kBackoffMax. Attempts below 1 count as 1.
Clock::duration backoff_nominal(int attempt);

// The nominal delay scaled by 0.5 + `unit` (`unit` in [0, 1), clamped into it).
Clock::duration backoff_delay(int attempt, double unit);

// The jitter of one pipeline: a seeded generator shared by its stage threads (one lock per draw,
// taken once per failed attempt, so it is never contended in practice). The same seed gives the
// same sequence of delays, which is what lets a test know a retry's due time in advance.
class RetryJitter {
 public:
  explicit RetryJitter(uint64_t seed) : rng_(seed) {}
  RetryJitter(const RetryJitter&) = delete;
  RetryJitter& operator=(const RetryJitter&) = delete;

  // A seed for production: drawn from std::random_device, once per pipeline.
  static uint64_t random_seed();

  // backoff_delay(attempt, u) with u the generator's next uniform draw in [0, 1).
  Clock::duration delay(int attempt);

 private:
  std::mutex mu_;
  std::mt19937_64 rng_;
};

}  // namespace docpipe
