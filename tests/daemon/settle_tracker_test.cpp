// SettleTracker's rules on a FakeClock, without a loop or a disk: when a job file in incoming/ is
// taken, when it is stat'ed again, and what an event for a name the intake holds does.

#include "daemon/settle_tracker.h"

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/support/fake_clock.h"

namespace docpipe {
namespace {

using Action = SettleTracker::Action;
using Event = SettleTracker::Event;
using Facts = SettleTracker::Facts;
using std::chrono::milliseconds;

const Facts kTen{.regular = true, .size = 10, .mtime_ns = 1000};
const Facts kTwenty{.regular = true, .size = 20, .mtime_ns = 2000};

TEST_CASE("settle tracker: a renamed-in name is taken at once and held until forget") {
  test::FakeClock clock;
  SettleTracker t(clock, 500);
  CHECK(t.on_event("a.json", Event::kRenamedIn) == Action::kTake);
  // Held: neither events nor scans hand it out again.
  CHECK(t.on_event("a.json", Event::kScanned) == Action::kNone);
  CHECK(t.forget("a.json") == Action::kNone);  // a scan while held is no news
  CHECK(t.on_event("a.json", Event::kRenamedIn) == Action::kTake);
  CHECK(t.on_event("a.json", Event::kRenamedIn) == Action::kNone);
  CHECK(t.forget("a.json") == Action::kTake);  // renamed over while held: taken again at once
  CHECK_FALSE(t.settling());
}

TEST_CASE(
    "settle tracker: a written file is taken after settle_ms of unchanged stats, not before") {
  test::FakeClock clock;
  SettleTracker t(clock, 500);
  REQUIRE(t.on_event("w.json", Event::kWritten) == Action::kStat);
  CHECK(t.on_stat("w.json", kTen) == Action::kNone);  // first sight: the wait starts
  CHECK(t.settling());
  clock.advance(milliseconds(400));
  CHECK(t.due().empty());
  // It grew: the wait starts again from now.
  REQUIRE(t.on_event("w.json", Event::kWritten) == Action::kStat);
  CHECK(t.on_stat("w.json", kTwenty) == Action::kNone);
  clock.advance(milliseconds(499));
  CHECK(t.due().empty());
  REQUIRE(t.on_event("w.json", Event::kScanned) == Action::kStat);  // a scan stats it early
  CHECK(t.on_stat("w.json", kTwenty) == Action::kNone);
  clock.advance(milliseconds(1));
  REQUIRE(t.due() == std::vector<std::string>{"w.json"});
  CHECK(t.due().empty());  // being stat'ed: not asked twice
  CHECK(t.on_stat("w.json", kTwenty) == Action::kTake);
  CHECK_FALSE(t.settling());
}

TEST_CASE("settle tracker: a write while the stat runs asks for one more stat") {
  test::FakeClock clock;
  SettleTracker t(clock, 500);
  REQUIRE(t.on_event("w.json", Event::kWritten) == Action::kStat);
  CHECK(t.on_event("w.json", Event::kWritten) == Action::kNone);  // the stat is pending
  CHECK(t.on_stat("w.json", kTen) == Action::kStat);              // it may be stale: again
  CHECK(t.on_stat("w.json", kTen) == Action::kNone);
  clock.advance(milliseconds(500));
  REQUIRE(t.due().size() == 1);
  CHECK(t.on_stat("w.json", kTen) == Action::kTake);
}

TEST_CASE(
    "settle tracker: a name that is not a regular file is taken at once - a gone one dropped") {
  test::FakeClock clock;
  SettleTracker t(clock, 500);
  REQUIRE(t.on_event("fifo.json", Event::kScanned) == Action::kStat);
  CHECK(t.on_stat("fifo.json", Facts{.regular = false}) == Action::kTake);
  REQUIRE(t.on_event("gone.json", Event::kWritten) == Action::kStat);
  CHECK(t.on_stat("gone.json", std::nullopt) == Action::kNone);
  CHECK_FALSE(t.settling());
  clock.advance(milliseconds(1000));
  CHECK(t.due().empty());
  CHECK(t.on_stat("never-asked.json", kTen) == Action::kNone);
}

TEST_CASE("settle tracker: after an overflow settling names wait again, held ones are re-read") {
  test::FakeClock clock;
  SettleTracker t(clock, 500);
  REQUIRE(t.on_event("w.json", Event::kWritten) == Action::kStat);
  CHECK(t.on_stat("w.json", kTen) == Action::kNone);
  REQUIRE(t.on_event("held.json", Event::kRenamedIn) == Action::kTake);
  clock.advance(milliseconds(400));
  t.on_overflow();  // a write to w.json may have been lost
  clock.advance(milliseconds(499));
  CHECK(t.due().empty());
  clock.advance(milliseconds(1));
  CHECK(t.due() == std::vector<std::string>{"w.json"});
  // A rename over held.json may have been lost too: looked at again once the intake lets go.
  CHECK(t.forget("held.json") == Action::kStat);
}

}  // namespace
}  // namespace docpipe
