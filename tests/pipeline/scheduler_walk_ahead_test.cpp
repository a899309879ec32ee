// The scheduler's walk-ahead: a reader takes up to walk_ahead documents from a job's walk at once
// (issue 12: one document per walk made readers sharing a job wake each other per document).
// Documents walked ahead are handed out in turn with other jobs exactly as before, and a cancel
// or stop hands them out as cancelled, so that every document taken still gets its outcome.
// Each scheduler runs on a FakeClock that stands still: the walk's 2 ms cap is on that clock, so
// a busy machine cannot cut a walk short (with the system clock it did, "taken 9 == 16").
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/scheduler.h"
#include "tests/pipeline/scheduler_test_support.h"
#include "tests/support/fake_clock.h"

namespace docpipe {
namespace {

using namespace std::chrono_literals;
using testing::counted_job;
using testing::FakeJob;
using testing::make_spec;
using testing::outcome_for;

TEST_CASE(
    "scheduler walk-ahead: one walk takes up to 16 documents, handed out in turn with other jobs") {
  test::FakeClock clock;
  Scheduler s(clock);
  auto big = counted_job("big", 100);
  s.add_job(big);
  auto first = s.next();
  REQUIRE(first);
  CHECK(first->doc.relative_path == "big-0");
  CHECK(big->taken() == Scheduler::kWalkAhead);
  CHECK(s.documents_in_flight() == 1);  // walked ahead is not in flight

  // A job added now still gets its turn after at most one more document of the big job.
  auto small = counted_job("small", 1);
  s.add_job(small);
  CHECK(s.next()->doc.relative_path == "big-1");
  CHECK(s.next()->doc.relative_path == "small-0");
  // The rest of the walk comes out in order before the big job is walked again.
  for (size_t i = 2; i < Scheduler::kWalkAhead; ++i) {
    auto d = s.next();
    REQUIRE(d);
    CHECK(d->doc.relative_path == "big-" + std::to_string(i));
    CHECK_FALSE(d->cancelled);
  }
  CHECK(big->taken() == Scheduler::kWalkAhead);
  CHECK(s.next()->doc.relative_path == "big-16");
  CHECK(big->taken() == 2 * Scheduler::kWalkAhead);
  CHECK(s.documents_in_flight() == Scheduler::kWalkAhead + 2);
}

TEST_CASE("scheduler walk-ahead: a job of fewer documents finishes after its last completes") {
  test::FakeClock clock;
  Scheduler s(clock);
  auto job = counted_job("three", 3);
  s.add_job(job);
  std::vector<ScheduledDocument> got;
  for (int i = 0; i < 3; ++i) {
    auto d = s.next();
    REQUIRE(d);
    got.push_back(std::move(*d));
  }
  CHECK(got[2].doc.relative_path == "three-2");
  CHECK(job->taken() == 3);
  for (auto& d : got) {
    CHECK(job->finished_calls() == 0);
    s.complete(d.job, outcome_for(d));
  }
  CHECK(job->finished_calls() == 1);
  CHECK_FALSE(job->cancelled());
  CHECK(s.job_count() == 0);
}

TEST_CASE("scheduler walk-ahead: a cancel hands out the documents walked ahead as cancelled") {
  test::FakeClock clock;
  Scheduler s(clock);
  auto job = counted_job("c", 100);
  auto other = counted_job("o", 100);
  s.add_job(job);
  s.add_job(other);
  auto d = s.next();
  REQUIRE(d);
  CHECK(d->doc.relative_path == "c-0");
  REQUIRE(job->taken() == Scheduler::kWalkAhead);
  CHECK(s.cancel("c"));

  // Every other document taken from the job comes out, marked cancelled, before new documents.
  std::vector<ScheduledDocument> cut;
  for (size_t i = 1; i < Scheduler::kWalkAhead; ++i) {
    auto c = s.next();
    REQUIRE(c);
    CHECK(c->cancelled);
    CHECK(c->doc.relative_path.rfind("c-", 0) == 0);
    cut.push_back(std::move(*c));
  }
  auto o = s.next();
  REQUIRE(o);
  CHECK(o->doc.relative_path == "o-0");
  CHECK(job->taken() == Scheduler::kWalkAhead);  // nothing walked after the cancel

  for (auto& c : cut) s.complete(c.job, outcome_for(c));
  CHECK(job->finished_calls() == 0);  // c-0 is still in flight
  s.complete(d->job, outcome_for(*d));
  CHECK(job->finished_calls() == 1);
  CHECK(job->cancelled());
  CHECK(job->outcome_count() == job->taken());
}

TEST_CASE(
    "scheduler walk-ahead: stop hands out the documents walked ahead as cancelled, then ends") {
  test::FakeClock clock;
  Scheduler s(clock);
  auto job = counted_job("s", 100);
  s.add_job(job);
  auto d = s.next();
  REQUIRE(d);
  s.stop();
  size_t cut = 0;
  while (auto c = s.next()) {
    CHECK(c->cancelled);
    ++cut;
    s.complete(c->job, outcome_for(*c));
  }
  CHECK(cut == Scheduler::kWalkAhead - 1);
  s.complete(d->job, outcome_for(*d));
  CHECK(job->outcome_count() == job->taken());
  CHECK(job->finished_calls() == 0);  // dropped unfinished, as every job of a stopped scheduler
  CHECK(s.documents_in_flight() == 0);
}

// A job that stops taking documents of its own accord (as a daemon job does past
// max_failed_documents, or when its journal fails): its next_document() yields nothing more.
class StoppingJob : public FakeJob {
 public:
  explicit StoppingJob(size_t count)
      : FakeJob(make_spec("stop", "/out", nullptr), [this, count](size_t i) {
          std::optional<DocumentRef> doc;
          if (taking && i < count) doc = DocumentRef{"/in/" + std::to_string(i), std::to_string(i)};
          return doc;
        }) {}
  bool taking_documents() const override { return taking; }
  std::atomic<bool> taking{true};
};

TEST_CASE("scheduler walk-ahead: a job that stops taking documents gets the rest back cancelled") {
  test::FakeClock clock;
  Scheduler s(clock);
  auto job = std::make_shared<StoppingJob>(100);
  s.add_job(job);
  auto d = s.next();
  REQUIRE(d);
  CHECK_FALSE(d->cancelled);
  REQUIRE(job->taken() == Scheduler::kWalkAhead);
  job->taking = false;  // e.g. too many documents failed
  std::vector<ScheduledDocument> rest;
  for (size_t i = 1; i < Scheduler::kWalkAhead; ++i) {
    auto c = s.next();
    REQUIRE(c);
    CHECK(c->cancelled);  // walked before the stop, never processed after it
    rest.push_back(std::move(*c));
  }
  s.complete(d->job, outcome_for(*d));
  for (auto& c : rest) s.complete(c.job, outcome_for(c));
  CHECK(job->taken() == Scheduler::kWalkAhead);
  CHECK(job->outcome_count() == job->taken());
  CHECK(job->finished_calls() == 1);
  CHECK(s.job_count() == 0);
}

TEST_CASE("scheduler walk-ahead: a slow walk stops walking ahead after 2 ms") {
  test::FakeClock clock;
  Scheduler s(clock);
  // Each document costs the walk 1 ms of the scheduler's clock.
  auto job = std::make_shared<FakeJob>(make_spec("slow", "/out", nullptr),
                                       [&clock](size_t i) -> std::optional<DocumentRef> {
                                         clock.advance(1ms);
                                         std::string rel = "slow-" + std::to_string(i);
                                         return DocumentRef{"/in/" + rel, rel};
                                       });
  s.add_job(job);
  auto d = s.next();
  REQUIRE(d);
  CHECK(job->taken() == 2);
  CHECK(s.next()->doc.relative_path == "slow-1");
  CHECK(job->taken() == 2);
  CHECK(s.next()->doc.relative_path == "slow-2");
  CHECK(job->taken() == 4);
}

}  // namespace
}  // namespace docpipe
