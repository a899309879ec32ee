#pragma once
// Delays between attempts of a document whose failure was transient: exponential from 100 ms,
// doubling per failed attempt, capped at 10 s, each jittered by x0.5 .. x1.5 so that documents
// that failed together (a busy device, a full disk) do not all retry together.
//
// The jitter source is a parameter, so the shape can be tested exactly; the pipeline draws it
// from a per-thread generator (random_backoff_delay).

#include <chrono>

namespace docpipe {

inline constexpr std::chrono::milliseconds kBackoffBase{100};
inline constexpr std::chrono::milliseconds kBackoffMax{10000};

// The delay after failed attempt `attempt` (1 = the first attempt failed), before jitter:
// kBackoffBase * 2^(attempt - 1), at most kBackoffMax. Attempts below 1 count as 1.
std::chrono::steady_clock::duration backoff_nominal(int attempt);

// The nominal delay scaled by 0.5 + `unit` (`unit` in [0, 1), clamped into it).
std::chrono::steady_clock::duration backoff_delay(int attempt, double unit);

// backoff_delay with `unit` drawn uniformly from this thread's generator.
std::chrono::steady_clock::duration random_backoff_delay(int attempt);

}  // namespace docpipe
