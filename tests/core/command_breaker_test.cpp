// The breaker's state machine on a FakeClock: no test waits on the wall clock.
#include "core/command_breaker.h"

#include <doctest/doctest.h>

#include <chrono>
#include <vector>

#include "tests/support/fake_clock.h"

namespace docpipe {
namespace {

using std::chrono::milliseconds;
using test::FakeClock;

struct Fixture {
  FakeClock clock;
  CommandBreakers breakers{clock};
  std::vector<BreakerTransition> seen;
  uint64_t handle = 0;

  explicit Fixture(BreakerConfig config = {.failures = 3, .open_ms = 1000, .max_open_ms = 5000}) {
    breakers.configure({{"conv", config}});
    handle = breakers.subscribe([this](const BreakerTransition& t) { seen.push_back(t); });
  }
  ~Fixture() { breakers.unsubscribe(handle); }

  BreakerState state() { return breakers.snapshot("conv")->state; }

  void fail(int n) {
    for (int i = 0; i < n; ++i) {
      CommandAdmission a = breakers.admit("conv");
      REQUIRE(a.admitted);
      a.run.failed(CommandFailure::kExited, "exited with status 1");
    }
  }
};

TEST_CASE("breaker: consecutive failures open it and a success resets the count") {
  Fixture f;
  f.fail(2);
  CHECK(f.breakers.snapshot("conv")->consecutive_failures == 2);
  {
    CommandAdmission a = f.breakers.admit("conv");
    REQUIRE(a.admitted);
    CHECK(a.run.watched());
    CHECK_FALSE(a.run.probe());
    a.run.succeeded();
  }
  CHECK(f.breakers.snapshot("conv")->consecutive_failures == 0);
  f.fail(2);
  CHECK(f.state() == BreakerState::kClosed);
  CHECK_FALSE(f.breakers.blocked_until("conv"));
  f.fail(1);
  CHECK(f.state() == BreakerState::kOpen);
  REQUIRE(f.seen.size() == 1);
  CHECK(f.seen[0].to == BreakerState::kOpen);
  CHECK(f.seen[0].consecutive_failures == 3);
  CHECK(f.seen[0].open_ms == 1000);
  CHECK(f.seen[0].detail == "exited non-zero: exited with status 1");
  const BreakerSnapshot s = *f.breakers.snapshot("conv");
  CHECK(s.opened_at_ms == f.clock.wall_ms());
  CHECK(s.next_probe_ms == f.clock.wall_ms() + 1000);
  CHECK(s.last_failure == "exited non-zero: exited with status 1");
}

TEST_CASE("breaker: while open nobody is admitted until the open period is over") {
  Fixture f;
  f.fail(3);
  const Clock::time_point opened = f.clock.now();
  CommandAdmission a = f.breakers.admit("conv");
  CHECK_FALSE(a.admitted);
  CHECK(a.retry_at == opened + milliseconds(1000));
  CHECK(a.reason.find("open after 3 consecutive failures") != std::string::npos);
  CHECK(f.breakers.blocked_until("conv") == opened + milliseconds(1000));
  f.clock.advance(milliseconds(999));
  CHECK_FALSE(f.breakers.admit("conv").admitted);
  f.clock.advance(milliseconds(1));
  // Due: the gate lets documents go, and blocked_until() changed nothing.
  CHECK_FALSE(f.breakers.blocked_until("conv"));
  CHECK(f.state() == BreakerState::kOpen);
}

TEST_CASE("breaker: exactly one probe runs while half-open and its success closes it") {
  Fixture f;
  f.fail(3);
  f.clock.advance(milliseconds(1000));
  CommandAdmission probe = f.breakers.admit("conv");
  REQUIRE(probe.admitted);
  CHECK(probe.run.probe());
  CHECK(f.state() == BreakerState::kHalfOpen);
  CHECK(f.breakers.snapshot("conv")->probe_running);
  CommandAdmission other = f.breakers.admit("conv");
  CHECK_FALSE(other.admitted);
  CHECK(other.retry_at == Clock::time_point::max());
  CHECK(f.breakers.blocked_until("conv") == Clock::time_point::max());
  probe.run.succeeded();
  CHECK(f.state() == BreakerState::kClosed);
  CHECK(f.breakers.snapshot("conv")->consecutive_failures == 0);
  CHECK(f.breakers.snapshot("conv")->opened_at_ms == 0);
  CHECK(f.breakers.admit("conv").admitted);
  REQUIRE(f.seen.size() == 3);
  CHECK(f.seen[1].to == BreakerState::kHalfOpen);
  CHECK(f.seen[2].to == BreakerState::kClosed);
  CHECK(f.breakers.snapshot("conv")->transitions == 3);
}

TEST_CASE("breaker: failed probes double the open period up to its cap and then it closes") {
  Fixture f;
  f.fail(3);
  const int64_t opened_at = f.breakers.snapshot("conv")->opened_at_ms;
  std::vector<int64_t> periods;
  for (int i = 0; i < 5; ++i) {
    f.clock.advance(milliseconds(f.breakers.snapshot("conv")->open_ms));
    CommandAdmission probe = f.breakers.admit("conv");
    REQUIRE(probe.admitted);
    REQUIRE(probe.run.probe());
    probe.run.failed(CommandFailure::kCrashed, "killed by signal 11");
    CHECK(f.state() == BreakerState::kOpen);
    periods.push_back(f.breakers.snapshot("conv")->open_ms);
  }
  CHECK(periods == std::vector<int64_t>{2000, 4000, 5000, 5000, 5000});
  CHECK(f.breakers.snapshot("conv")->failed_probes == 5);
  CHECK(f.breakers.snapshot("conv")->consecutive_failures == 8);
  CHECK(f.breakers.snapshot("conv")->opened_at_ms == opened_at);  // first opened, not re-opened
  CHECK(f.seen.back().open_ms == 5000);
  f.clock.advance(milliseconds(5000));
  CommandAdmission probe = f.breakers.admit("conv");
  probe.run.succeeded();
  CHECK(f.state() == BreakerState::kClosed);
  // The next time it opens, it starts from open_ms again.
  f.fail(3);
  CHECK(f.breakers.snapshot("conv")->open_ms == 1000);
  CHECK(f.breakers.snapshot("conv")->failed_probes == 0);
}

TEST_CASE("breaker: an abandoned probe frees its place for another without a verdict") {
  Fixture f;
  f.fail(3);
  f.clock.advance(milliseconds(1000));
  {
    CommandAdmission probe = f.breakers.admit("conv");
    REQUIRE(probe.run.probe());
    f.seen.clear();
  }  // dropped: cancelled, the document's own timeout, the output side failing
  CHECK(f.state() == BreakerState::kHalfOpen);
  REQUIRE(f.seen.size() == 1);
  CHECK(f.seen[0].from == f.seen[0].to);  // no state change, but waiters may go
  CHECK_FALSE(f.breakers.blocked_until("conv"));
  CHECK(f.breakers.snapshot("conv")->consecutive_failures == 3);
  CommandAdmission next = f.breakers.admit("conv");
  REQUIRE(next.admitted);
  CHECK(next.run.probe());
}

TEST_CASE("breaker: outcomes of runs admitted before it opened are ignored") {
  Fixture f;
  CommandAdmission early = f.breakers.admit("conv");
  REQUIRE(early.admitted);
  f.fail(3);
  early.run.succeeded();  // started before the outage was seen: says nothing about now
  CHECK(f.state() == BreakerState::kOpen);
  f.clock.advance(milliseconds(1000));
  CommandAdmission probe = f.breakers.admit("conv");
  {
    // A run admitted while closed and failing while half-open does not re-open it either.
    Fixture g;
    CommandAdmission run = g.breakers.admit("conv");
    g.fail(3);
    g.clock.advance(milliseconds(1000));
    CommandAdmission p = g.breakers.admit("conv");
    run.run.failed(CommandFailure::kTimedOut, "timed out after 10 ms");
    CHECK(g.state() == BreakerState::kHalfOpen);
    CHECK(g.breakers.snapshot("conv")->consecutive_failures == 3);
  }
  probe.run.succeeded();
  CHECK(f.state() == BreakerState::kClosed);
}

TEST_CASE("breaker: failures 0 turns it off and unknown commands always run") {
  Fixture f({.failures = 0, .open_ms = 1000, .max_open_ms = 1000});
  for (int i = 0; i < 10; ++i) {
    CommandAdmission a = f.breakers.admit("conv");
    REQUIRE(a.admitted);
    CHECK_FALSE(a.run.watched());
    a.run.failed(CommandFailure::kExited, "exited with status 1");
  }
  CHECK(f.state() == BreakerState::kClosed);
  CHECK(f.seen.empty());
  CommandAdmission unknown = f.breakers.admit("other");
  CHECK(unknown.admitted);
  CHECK_FALSE(unknown.run.watched());
  CHECK_FALSE(f.breakers.blocked_until("other"));
}

TEST_CASE("breaker: a reload keeps its state, and turning it off closes it") {
  Fixture f;
  f.fail(3);
  f.breakers.configure({{"conv", {.failures = 4, .open_ms = 2000, .max_open_ms = 8000}}});
  CHECK(f.state() == BreakerState::kOpen);
  CHECK(f.breakers.snapshot("conv")->config.failures == 4);
  f.breakers.configure({{"conv", {.failures = 0, .open_ms = 2000, .max_open_ms = 8000}}});
  CHECK(f.state() == BreakerState::kClosed);
  REQUIRE_FALSE(f.seen.empty());
  CHECK(f.seen.back().to == BreakerState::kClosed);
  CHECK(f.breakers.admit("conv").admitted);
  f.breakers.configure({});
  CHECK_FALSE(f.breakers.snapshot("conv"));
  CHECK(f.breakers.snapshot().empty());
}

}  // namespace
}  // namespace docpipe
