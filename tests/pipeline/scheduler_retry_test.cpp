// The scheduler's retries on a FakeClock: a retry is due exactly its delay after it was handed
// back, never earlier; due retries go before new documents, earliest first; and the drain wait
// of stop()'s grace ends at the last completion or at the clock's deadline.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

#include "pipeline/scheduler.h"
#include "tests/pipeline/scheduler_test_support.h"
#include "tests/support/fake_clock.h"

namespace docpipe {
namespace {

using namespace std::chrono_literals;
using testing::counted_job;
using testing::outcome_for;

// Ends a test's helper thread also when a REQUIRE failed first: time jumps a day ahead and the
// scheduler stops, which wakes and ends every wait in it.
struct EndThread {
  test::FakeClock& clock;
  Scheduler& scheduler;
  std::thread& thread;
  ~EndThread() {
    clock.advance(24h);
    scheduler.stop();
    if (thread.joinable()) thread.join();
  }
};

TEST_CASE("scheduler: a retry comes back after its delay with the next attempt number") {
  test::FakeClock clock;
  Scheduler s(clock);
  auto job = counted_job("r", 1);
  s.add_job(job);
  auto d = s.next();
  REQUIRE(d);
  REQUIRE(s.retry(*d, 30ms));
  std::optional<ScheduledDocument> again;
  std::atomic<bool> returned{false};
  // Blocks until the retry is due: the job has nothing else.
  std::thread reader([&] {
    again = s.next();
    returned = true;
  });
  EndThread end{clock, s, reader};
  REQUIRE(clock.await_blocked(1));
  clock.advance(29ms);
  REQUIRE(clock.await_blocked(2));  // woken, found the retry not yet due, waiting again
  CHECK_FALSE(returned.load());
  clock.advance(1ms);
  reader.join();
  REQUIRE(again);
  CHECK(again->doc.relative_path == "r-0");
  CHECK(again->attempt == 2);
  CHECK_FALSE(again->cancelled);
  CHECK(s.documents_in_flight() == 1);
  s.complete(again->job, outcome_for(*again));
  CHECK(job->finished_calls() == 1);
}

TEST_CASE("scheduler: due retries go before new documents, earliest first, never early") {
  test::FakeClock clock;
  Scheduler s(clock);
  auto retried = counted_job("r", 3);
  auto fresh = counted_job("f", 100);
  s.add_job(retried);
  std::vector<ScheduledDocument> docs;
  for (int i = 0; i < 3; ++i) docs.push_back(*s.next());
  s.add_job(fresh);
  REQUIRE(s.retry(docs[0], 50ms));  // due at 50 ms
  REQUIRE(s.retry(docs[1], 10ms));  // due at 10 ms
  clock.advance(5ms);
  REQUIRE(s.retry(docs[2], 10ms));  // due at 15 ms: the delay counts from the retry
  auto next_path = [&] {
    std::optional<ScheduledDocument> d = s.next();
    REQUIRE(d);
    return d->doc.relative_path + "#" + std::to_string(d->attempt);
  };
  CHECK(next_path() == "f-0#1");  // nothing due: new documents
  clock.advance(4ms);             // 9 ms
  CHECK(next_path() == "f-1#1");
  clock.advance(1ms);  // 10 ms
  CHECK(next_path() == "r-1#2");
  CHECK(next_path() == "f-2#1");
  clock.advance(4ms);  // 14 ms
  CHECK(next_path() == "f-3#1");
  clock.advance(36ms);  // 50 ms: both others are due, the earlier one first
  CHECK(next_path() == "r-2#2");
  CHECK(next_path() == "r-0#2");
  CHECK(next_path() == "f-4#1");
  CHECK(s.documents_in_flight() == 8);
}

TEST_CASE("scheduler: cancel hands a pending retry back at once, marked cancelled") {
  test::FakeClock clock;  // never advanced: only the cancel can bring the retry back
  Scheduler s(clock);
  auto job = counted_job("rc", 1);
  s.add_job(job);
  auto d = s.next();
  REQUIRE(s.retry(*d, std::chrono::hours(1)));
  REQUIRE(s.cancel("rc"));
  auto back = s.next();
  REQUIRE(back);
  CHECK(back->cancelled);
  CHECK(back->doc.relative_path == "rc-0");
  ScheduledDocument again = *back;
  CHECK_FALSE(s.retry(again, 1ms));  // a cancelled job is not retried
  s.complete(back->job, outcome_for(*back));
  CHECK(job->finished_calls() == 1);
  CHECK(job->cancelled());
}

TEST_CASE("scheduler: wait_drained ends at the last completion or at its deadline by the clock") {
  test::FakeClock clock;
  Scheduler s(clock);
  auto job = counted_job("w", 2);
  s.add_job(job);
  auto a = s.next();
  auto b = s.next();
  REQUIRE(a);
  REQUIRE(b);
  s.stop();
  std::atomic<int> drained{-1};
  {
    std::thread waiter([&] { drained = s.wait_drained(clock.now() + 1s); });
    EndThread end{clock, s, waiter};
    REQUIRE(clock.await_blocked(1));
    clock.advance(999ms);
    REQUIRE(clock.await_blocked(2));  // woken, not yet at the deadline, waiting again
    CHECK(drained.load() == -1);
    clock.advance(1ms);
    waiter.join();
    CHECK(drained.load() == 0);  // two documents still in flight
  }
  drained = -1;
  {
    std::thread waiter([&] { drained = s.wait_drained(clock.now() + 1s); });
    EndThread end{clock, s, waiter};
    REQUIRE(clock.await_blocked(3));
    s.complete(a->job, outcome_for(*a));
    CHECK(drained.load() == -1);  // not woken: one is left
    s.complete(b->job, outcome_for(*b));
    waiter.join();  // woken by the completion: the clock has not moved
    CHECK(drained.load() == 1);
  }
  CHECK(s.wait_drained(clock.now()));  // nothing in flight: at once
}

}  // namespace
}  // namespace docpipe
