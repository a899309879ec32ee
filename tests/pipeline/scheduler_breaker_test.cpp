// The scheduler and the commands' circuit breakers on a FakeClock: a job whose command's breaker
// is open yields nothing, a refused document waits without being charged an attempt, and
// cancel, stop and the breaker's own changes all end the wait.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

#include "core/command_breaker.h"
#include "pipeline/scheduler.h"
#include "tests/pipeline/scheduler_test_support.h"
#include "tests/support/fake_clock.h"

namespace docpipe {
namespace {

using namespace std::chrono_literals;
using testing::FakeJob;
using testing::outcome_for;

// A step that says it runs the command "conv" (the scheduler never runs it).
class ConvStep : public TransformStep {
 public:
  std::unique_ptr<DocumentTransform> begin(const DocumentContext&) const override {
    return nullptr;
  }
  std::vector<std::string> commands() const override { return {"conv"}; }
};

std::shared_ptr<FakeJob> conv_job(const std::string& id, size_t count) {
  auto chain = testing::chain_of({std::make_shared<ConvStep>()});
  return std::make_shared<FakeJob>(testing::make_spec(id, "/out", chain),
                                   [id, count](size_t i) -> std::optional<DocumentRef> {
                                     if (i >= count) return std::nullopt;
                                     std::string rel = id + "-" + std::to_string(i);
                                     return DocumentRef{"/in/" + rel, rel};
                                   });
}

struct Fixture {
  test::FakeClock clock;
  CommandBreakers breakers{clock};
  Scheduler s{clock, 1, &breakers};
  Fixture() {
    breakers.configure({{"conv", {.failures = 1, .open_ms = 1000, .max_open_ms = 1000}}});
  }
  ~Fixture() {
    clock.advance(24h);
    s.stop();
  }
  void open() {
    CommandAdmission a = breakers.admit("conv");
    REQUIRE(a.admitted);
    a.run.failed(CommandFailure::kExited, "exited with status 1");
    REQUIRE(breakers.snapshot("conv")->state == BreakerState::kOpen);
  }
  // `job` added, its first document handed out, then "conv"'s breaker opened under it.
  ScheduledDocument first_then_open(std::shared_ptr<FakeJob> job) {
    s.add_job(std::move(job));
    std::optional<ScheduledDocument> d = next_now();
    REQUIRE(d);
    open();
    return *d;
  }
  std::optional<ScheduledDocument> next_now() {
    bool would_wait = false;
    std::optional<ScheduledDocument> d = s.next(&would_wait);
    CHECK(d.has_value() != would_wait);
    return d;
  }
};

TEST_CASE("scheduler: a job whose command's breaker is open yields nothing until it may probe") {
  Fixture f;
  f.open();
  auto gated = conv_job("g", 2);
  auto other = testing::counted_job("o", 1);
  f.s.add_job(gated);
  f.s.add_job(other);
  // The other job goes on; the gated one is not even walked.
  std::optional<ScheduledDocument> d = f.next_now();
  REQUIRE(d);
  CHECK(d->doc.relative_path == "o-0");
  f.s.complete(d->job, outcome_for(*d));
  CHECK_FALSE(f.next_now());
  CHECK(gated->taken() == 0);
  f.clock.advance(999ms);
  CHECK_FALSE(f.next_now());
  f.clock.advance(1ms);  // the open period is over: a document may go and probe
  d = f.next_now();
  REQUIRE(d);
  CHECK(d->doc.relative_path == "g-0");
  CHECK(d->attempt == 1);
  f.s.complete(d->job, outcome_for(*d));
}

TEST_CASE("scheduler: a reader waiting on an open breaker wakes when its open period ends") {
  Fixture f;
  f.open();
  auto gated = conv_job("g", 1);
  f.s.add_job(gated);
  std::optional<ScheduledDocument> got;
  std::thread reader([&] { got = f.s.next(); });
  REQUIRE(f.clock.await_blocked(1));
  f.clock.advance(500ms);
  REQUIRE(f.clock.await_blocked(2));  // woken, still open, waiting again for the rest
  CHECK_FALSE(got);
  f.clock.advance(500ms);
  reader.join();
  REQUIRE(got);
  CHECK(got->doc.relative_path == "g-0");
  f.s.complete(got->job, outcome_for(*got));
}

TEST_CASE("scheduler: a refused document waits uncharged and goes when the breaker closes") {
  Fixture f;
  auto job = conv_job("w", 1);
  f.s.add_job(job);
  std::optional<ScheduledDocument> d = f.next_now();
  REQUIRE(d);
  f.open();  // while it was on its way: the command refuses it
  REQUIRE(f.s.wait_for_command(*d));
  CHECK_FALSE(f.next_now());
  CHECK(f.s.documents_waiting_for_commands() == 1);
  CHECK(f.s.documents_in_flight() == 1);  // still the job's: it cannot finish meanwhile

  // A probe (another job's document, here) runs; while it runs, nothing else goes, whatever the
  // time: the reader waits for the breaker's change, not for a time.
  f.clock.advance(1000ms);
  CommandAdmission probe = f.breakers.admit("conv");
  REQUIRE(probe.run.probe());
  f.clock.advance(10000ms);
  CHECK_FALSE(f.next_now());
  std::optional<ScheduledDocument> got;
  std::thread reader([&] { got = f.s.next(); });
  probe.run.succeeded();  // closes it: the waiting document goes at once
  reader.join();
  REQUIRE(got);
  CHECK(got->doc.relative_path == "w-0");
  CHECK(got->attempt == 1);  // waiting charged nothing
  CHECK_FALSE(got->cancelled);
  CHECK(f.s.documents_waiting_for_commands() == 0);
  f.s.complete(got->job, outcome_for(*got));
  CHECK_FALSE(f.next_now());  // the walk finds the job exhausted: it finishes
  CHECK(job->wait_finished());
}

TEST_CASE("scheduler: an abandoned probe lets a waiting document go and probe") {
  Fixture f;
  auto job = conv_job("a", 1);
  std::optional<ScheduledDocument> d = f.first_then_open(job);
  f.clock.advance(1000ms);
  std::optional<CommandAdmission> probe(f.breakers.admit("conv"));
  REQUIRE(probe->run.probe());
  REQUIRE(f.s.wait_for_command(*d));
  CHECK_FALSE(f.next_now());
  probe.reset();  // cancelled: no verdict, but the place is free
  d = f.next_now();
  REQUIRE(d);
  CHECK(d->attempt == 1);
  f.s.complete(d->job, outcome_for(*d));
}

TEST_CASE("scheduler: a reload that removes a half-open command lets its waiting documents go") {
  Fixture f;
  auto job = conv_job("a", 1);
  std::optional<ScheduledDocument> d = f.first_then_open(job);
  f.clock.advance(1000ms);
  CommandAdmission probe = f.breakers.admit("conv");  // the probe runs, elsewhere
  REQUIRE(probe.run.probe());
  REQUIRE(f.s.wait_for_command(*d));
  CHECK_FALSE(f.next_now());
  // The reload drops "conv": its probe's outcome would be reported into nothing, so the
  // document must not wait for it.
  f.breakers.configure({});
  d = f.next_now();
  REQUIRE(d);
  CHECK(d->attempt == 1);
  probe.run.succeeded();  // into a breaker that is gone: ignored
  f.s.complete(d->job, outcome_for(*d));
}

TEST_CASE("scheduler: cancel and stop hand out documents waiting on a breaker as cancelled") {
  Fixture f;
  auto job = conv_job("c", 3);
  std::optional<ScheduledDocument> d = f.first_then_open(job);
  REQUIRE(f.s.wait_for_command(*d));
  CHECK_FALSE(f.next_now());
  std::optional<ScheduledDocument> got;
  std::thread reader([&] { got = f.s.next(); });
  REQUIRE(f.clock.await_blocked(1));
  REQUIRE(f.s.cancel("c"));
  reader.join();
  REQUIRE(got);
  CHECK(got->cancelled);
  f.s.complete(got->job, outcome_for(*got));
  CHECK(job->wait_finished());
  CHECK(job->cancelled());
  CHECK(job->taken() == 1);  // the gated rest was never taken

  auto second = conv_job("s", 1);
  f.s.add_job(second);
  f.clock.advance(1000ms);
  d = f.next_now();  // the probe is due: it goes
  REQUIRE(d);
  f.open();  // (already open again by another document, say)
  REQUIRE(f.s.wait_for_command(*d));
  f.s.stop();
  std::optional<ScheduledDocument> cut = f.s.next();
  REQUIRE(cut);
  CHECK(cut->cancelled);
  CHECK_FALSE(f.s.wait_for_command(*cut));  // stopped: the caller completes it
  f.s.complete(cut->job, outcome_for(*cut));
  CHECK_FALSE(f.s.next());
}

}  // namespace
}  // namespace docpipe

namespace docpipe {
namespace {

// A job whose walk is done but whose documents a stop cut (a retry, or a document waiting on a
// breaker) must stay unfinished, to resume with them: finished, a daemon job would be reported
// as if those documents never existed.
TEST_CASE("scheduler: a stop that cuts waiting documents leaves their job unfinished") {
  Fixture f;
  auto job = conv_job("r", 2);
  f.s.add_job(job);
  std::optional<ScheduledDocument> a = f.next_now();
  std::optional<ScheduledDocument> b = f.next_now();
  REQUIRE(a);
  REQUIRE(b);
  CHECK_FALSE(f.next_now());  // its walk is done
  REQUIRE(f.s.retry(*a, 1h));
  f.open();
  REQUIRE(f.s.wait_for_command(*b));
  f.s.stop();
  for (int i = 0; i < 2; ++i) {
    std::optional<ScheduledDocument> cut = f.s.next();
    REQUIRE(cut);
    CHECK(cut->cancelled);
    DocumentOutcome o = outcome_for(*cut);
    o.state = DocumentState::kCancelled;  // as the pipeline completes a cut document
    f.s.complete(cut->job, std::move(o));
  }
  CHECK(f.s.documents_in_flight() == 0);
  CHECK(job->outcome_count() == 2);
  CHECK(job->finished_calls() == 0);
}

}  // namespace
}  // namespace docpipe
