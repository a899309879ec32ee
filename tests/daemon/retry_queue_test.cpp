// RetryQueue on a FakeClock: each attempt runs once its own delay has passed, earliest first,
// and the one timer is always armed for the earliest attempt left.

#include "daemon/retry_queue.h"

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/daemon/job_table_fixture.h"

using std::chrono::milliseconds;

TEST_CASE("retry queue: attempts run in due order, each only once its delay has passed") {
  docpipe::test::FakeClock clock;
  docpipe::test::ManualTimer timer(clock);
  docpipe::RetryQueue retries(clock, timer);
  std::vector<std::string> ran;
  retries.add(milliseconds(500), [&] { ran.push_back("late"); });
  retries.add(milliseconds(100), [&] { ran.push_back("early"); });
  CHECK(retries.size() == 2);
  timer.advance(milliseconds(99));
  CHECK(ran.empty());
  timer.advance(milliseconds(1));
  CHECK(ran == std::vector<std::string>{"early"});
  CHECK(timer.armed());  // for the one left
  timer.advance(milliseconds(399));
  CHECK(ran.size() == 1);
  timer.advance(milliseconds(1));
  CHECK(ran == std::vector<std::string>{"early", "late"});
  CHECK(retries.size() == 0);
  CHECK_FALSE(timer.armed());
}

TEST_CASE("retry queue: an attempt may schedule the next, and clear drops everything") {
  docpipe::test::FakeClock clock;
  docpipe::test::ManualTimer timer(clock);
  docpipe::RetryQueue retries(clock, timer);
  int attempts = 0;
  std::function<void()> attempt = [&] {
    if (++attempts < 3) retries.add(milliseconds(10), attempt);
  };
  retries.add(milliseconds(10), attempt);
  for (int i = 0; i < 5; ++i) timer.advance(milliseconds(10));
  CHECK(attempts == 3);
  retries.add(milliseconds(10), [&] { attempts = 100; });
  retries.clear();
  CHECK(retries.size() == 0);
  CHECK_FALSE(timer.armed());
  timer.advance(milliseconds(50));
  CHECK(attempts == 3);
}
