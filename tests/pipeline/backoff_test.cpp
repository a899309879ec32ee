// Retry backoff: the shape of the delay (exponential from 100 ms, x2 per attempt, capped at 10 s,
// jittered x0.5 .. x1.5), the seeded jitter, and the gaps between the attempts of a transiently
// failing document in a running pipeline on a FakeClock.
#include "pipeline/backoff.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "pipeline/pipeline.h"
#include "tests/pipeline/pipeline_test_support.h"
#include "tests/support/fake_clock.h"

namespace docpipe {
namespace {

using namespace std::chrono_literals;
using testing::chain_of;
using testing::FakeJob;
using testing::FunctionStep;
using testing::make_inputs;
using testing::make_spec;
using testing::TempDir;
using testing::test_options;

int64_t ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

int64_t us(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

TEST_CASE("backoff: the nominal delay doubles per failed attempt from 100 ms up to 10 s") {
  const std::vector<int64_t> expected{100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000};
  for (size_t i = 0; i < expected.size(); ++i) {
    const int attempt = static_cast<int>(i) + 1;
    CAPTURE(attempt);
    CHECK(ms(backoff_nominal(attempt)) == expected[i]);
  }
  for (int attempt = 2; attempt <= 7; ++attempt) {
    CAPTURE(attempt);
    CHECK(backoff_nominal(attempt) == 2 * backoff_nominal(attempt - 1));
  }
  // Far past the cap, and attempts no caller should pass: no overflow, no shorter delay.
  CHECK(ms(backoff_nominal(17)) == 10000);
  CHECK(ms(backoff_nominal(64)) == 10000);
  CHECK(ms(backoff_nominal(1000000)) == 10000);
  CHECK(ms(backoff_nominal(0)) == 100);
  CHECK(ms(backoff_nominal(-5)) == 100);
}

TEST_CASE("backoff: jitter scales the nominal delay by x0.5 to x1.5") {
  for (int attempt : {1, 2, 3, 6, 8, 30}) {
    CAPTURE(attempt);
    const int64_t nominal = us(backoff_nominal(attempt));
    CHECK(us(backoff_delay(attempt, 0.0)) == nominal / 2);
    CHECK(us(backoff_delay(attempt, 0.5)) == nominal);
    CHECK(us(backoff_delay(attempt, 0.25)) == nominal * 3 / 4);
    const int64_t top = us(backoff_delay(attempt, 0.999999));
    CHECK(top < nominal * 3 / 2);
    CHECK(top > nominal * 3 / 2 - nominal / 1000);
    // Out-of-range jitter sources are clamped into the band.
    CHECK(us(backoff_delay(attempt, -1.0)) == nominal / 2);
    CHECK(us(backoff_delay(attempt, 7.0)) <= nominal * 3 / 2);
  }
  CHECK(ms(backoff_delay(8, 0.999999)) < 15000);  // the cap applies before the jitter
}

TEST_CASE("backoff: drawn delays cover the jitter band and differ") {
  RetryJitter jitter(RetryJitter::random_seed());
  for (int attempt : {1, 3, 9}) {
    CAPTURE(attempt);
    const int64_t nominal = us(backoff_nominal(attempt));
    int64_t lo = INT64_MAX, hi = 0;
    std::set<int64_t> distinct;
    for (int i = 0; i < 2000; ++i) {
      const int64_t d = us(jitter.delay(attempt));
      lo = std::min(lo, d);
      hi = std::max(hi, d);
      distinct.insert(d);
    }
    CHECK(lo >= nominal / 2);
    CHECK(hi < nominal * 3 / 2);
    // 2000 uniform draws: each outer eighth of the band is hit with certainty for any practical
    // purpose (a miss has probability (7/8)^2000).
    CHECK(lo < nominal * 5 / 8);
    CHECK(hi > nominal * 11 / 8);
    CHECK(distinct.size() > 1000);
  }
}

TEST_CASE("backoff: the same jitter seed gives the same delays, another seed others") {
  RetryJitter a(42), b(42), c(43);
  std::vector<Clock::duration> from_a, from_b, from_c;
  for (int i = 0; i < 100; ++i) {
    const int attempt = 1 + i % 8;
    from_a.push_back(a.delay(attempt));
    from_b.push_back(b.delay(attempt));
    from_c.push_back(c.delay(attempt));
    CHECK(from_a.back() >= backoff_nominal(attempt) / 2);
    CHECK(from_a.back() < backoff_nominal(attempt) * 3 / 2);
  }
  CHECK(from_a == from_b);
  CHECK(from_a != from_c);
}

TEST_CASE("backoff: threads sharing one jitter draw each value of its sequence once") {
  // Four stage threads drawing at once get, between them, exactly the sequence one thread would:
  // no draw is lost or repeated (and TSan sees the generator guarded).
  constexpr int kThreads = 4, kDraws = 100000;
  RetryJitter shared(7), alone(7);
  std::vector<std::vector<Clock::duration>> drawn(kThreads);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      drawn[t].reserve(kDraws);
      ++ready;
      while (ready.load() < kThreads) std::this_thread::yield();  // all draw at once
      for (int i = 0; i < kDraws; ++i) drawn[t].push_back(shared.delay(1));
    });
  }
  for (auto& t : threads) t.join();
  std::vector<Clock::duration> together, expected;
  for (const auto& d : drawn) together.insert(together.end(), d.begin(), d.end());
  for (int i = 0; i < kThreads * kDraws; ++i) expected.push_back(alone.delay(1));
  std::sort(together.begin(), together.end());
  std::sort(expected.begin(), expected.end());
  CHECK(together == expected);
}

TEST_CASE("backoff: the gaps between attempts of a transiently failing document grow") {
  TempDir dir;
  auto docs = make_inputs(dir / "in", {{"flaky.txt", "flaky"}});
  test::FakeClock clock;
  auto mu = std::make_shared<std::mutex>();
  auto calls = std::make_shared<std::vector<Clock::time_point>>();
  auto failing = std::make_shared<FunctionStep>(
      [mu, calls, &clock](const DocumentContext&, std::string_view, std::string&) -> Status {
        std::lock_guard lock(*mu);
        calls->push_back(clock.now());
        return make_error(ErrorCode::kIo, "flaky: device busy");
      });
  JobSpec spec = make_spec("backoff", dir / "out", chain_of({failing}));
  spec.limits.max_attempts = 4;
  auto job = std::make_shared<FakeJob>(spec, docs);
  PipelineOptions options = test_options();
  options.clock = &clock;
  options.jitter_seed = 1234;
  options.readers = 1;     // one reader: each pending retry is one wait on the clock
  RetryJitter twin(1234);  // the pipeline's draws, replayed
  std::vector<Clock::duration> delays;
  Pipeline pipeline(options, nullptr);
  pipeline.add_job(job);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    // The attempt failed and the reader waits for its retry: time jumps to the due time.
    REQUIRE(clock.await_blocked(static_cast<size_t>(attempt)));
    delays.push_back(twin.delay(attempt));
    clock.advance(delays.back());
  }
  REQUIRE(job->wait_finished());
  pipeline.stop();
  REQUIRE(job->outcomes().size() == 1);
  CHECK(job->outcomes()[0].state == DocumentState::kFailed);
  CHECK(job->outcomes()[0].attempts == 4);

  std::lock_guard lock(*mu);
  REQUIRE(calls->size() == 4);
  std::vector<Clock::duration> gaps;
  for (size_t i = 1; i < calls->size(); ++i) gaps.push_back((*calls)[i] - (*calls)[i - 1]);
  // Time moves only at the advances: each retry ran exactly when its jittered delay was up.
  CHECK(gaps == delays);
  // Gap k follows failed attempt k: nominal 100, 200, 400 ms (the contract, written out here
  // rather than taken from backoff_nominal), jittered x0.5 .. x1.5.
  const std::chrono::milliseconds nominal[] = {100ms, 200ms, 400ms};
  for (size_t k = 0; k < gaps.size(); ++k) {
    CAPTURE(k + 1);
    CAPTURE(ms(gaps[k]));
    CHECK(gaps[k] >= nominal[k] / 2);
    CHECK(gaps[k] < nominal[k] * 3 / 2);
  }
  // Whatever the jitter drew, the third wait (>= 200 ms) is longer than the first (<= 150 ms).
  CHECK(gaps[2] > gaps[0]);
}

}  // namespace
}  // namespace docpipe
