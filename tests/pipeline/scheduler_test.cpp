#include "pipeline/scheduler.h"

#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "tests/pipeline/pipeline_test_support.h"

namespace docpipe {
namespace {

using namespace std::chrono_literals;
using testing::FakeJob;
using testing::make_spec;

std::shared_ptr<FakeJob> counted_job(const std::string& id, size_t count, int priority = 0) {
  return std::make_shared<FakeJob>(make_spec(id, "/out", nullptr, priority),
                                   [id, count](size_t i) -> std::optional<DocumentRef> {
                                     if (i >= count) return std::nullopt;
                                     std::string rel = id + "-" + std::to_string(i);
                                     return DocumentRef{"/in/" + rel, rel};
                                   });
}

DocumentOutcome outcome_for(const ScheduledDocument& d) {
  DocumentOutcome o;
  o.doc = d.doc;
  return o;
}

TEST_CASE("scheduler: a one-document job added behind a 10,000-document job goes next") {
  Scheduler s;
  auto big = counted_job("big", 10000);
  auto small = counted_job("small", 1);
  s.add_job(big);
  for (int i = 0; i < 3; ++i) CHECK(s.next()->doc.relative_path == "big-" + std::to_string(i));
  s.add_job(small);
  // Round-robin: at most one more document of the big job before the small one's.
  CHECK(s.next()->doc.relative_path == "big-3");
  auto mine = s.next();
  REQUIRE(mine);
  CHECK(mine->doc.relative_path == "small-0");
  CHECK(s.next()->doc.relative_path == "big-4");
  CHECK(s.next()->doc.relative_path == "big-5");  // the small job was found exhausted on the way
  CHECK(small->finished_calls() == 0);            // but its document is still in flight
  s.complete(mine->job, outcome_for(*mine));
  CHECK(small->finished_calls() == 1);
  CHECK_FALSE(small->cancelled());
  CHECK(big->finished_calls() == 0);
  CHECK(s.documents_in_flight() == 6);
  CHECK(s.job_count() == 1);
}

TEST_CASE("scheduler: equal priorities take turns, a higher priority goes first") {
  Scheduler s;
  s.add_job(counted_job("a", 2));
  s.add_job(counted_job("b", 2));
  s.add_job(counted_job("low", 1, -1));
  s.add_job(counted_job("high", 2, 5));
  std::vector<std::string> order;
  for (int i = 0; i < 7; ++i) order.push_back(s.next()->doc.relative_path);
  CHECK(order == std::vector<std::string>{"high-0", "high-1", "a-0", "b-0", "a-1", "b-1", "low-0"});
  CHECK(s.documents_in_flight() == 7);
}

TEST_CASE("scheduler: a job with zero documents finishes without anything in flight") {
  Scheduler s;
  auto empty = counted_job("empty", 0);
  auto one = counted_job("one", 1);
  s.add_job(empty);
  s.add_job(one);
  CHECK(empty->finished_calls() == 0);  // add_job never calls into the job
  auto d = s.next();
  REQUIRE(d);
  CHECK(d->doc.relative_path == "one-0");
  CHECK(empty->finished_calls() == 1);
  CHECK_FALSE(empty->cancelled());
  CHECK(empty->taken() == 0);
}

TEST_CASE("scheduler: next blocks while no job has documents and wakes for add_job and stop") {
  Scheduler s;
  std::optional<ScheduledDocument> got;
  std::thread reader([&] { got = s.next(); });
  auto job = counted_job("late", 1);
  s.add_job(job);
  reader.join();
  REQUIRE(got);
  CHECK(got->doc.relative_path == "late-0");

  auto other = counted_job("other", 1);
  s.add_job(other);
  CHECK(s.next()->doc.relative_path == "other-0");  // "late" is found exhausted on the way

  bool ended = false;
  std::thread waiting([&] { ended = !s.next().has_value(); });  // nothing left: blocks
  s.stop();
  waiting.join();
  CHECK(ended);
  // The job ran out of documents on its own: its last completion finishes it even when stopped.
  CHECK(job->finished_calls() == 0);
  s.complete(got->job, outcome_for(*got));
  CHECK(job->finished_calls() == 1);
}

TEST_CASE("scheduler: job_finished comes once, after the last document in flight completes") {
  Scheduler s;
  auto job = counted_job("two", 2);
  auto other = counted_job("other", 100);
  s.add_job(job);
  s.add_job(other);
  std::vector<ScheduledDocument> mine;
  for (int i = 0; i < 6; ++i) {
    auto d = s.next();
    REQUIRE(d);
    if (d->doc.relative_path.rfind("two-", 0) == 0) mine.push_back(std::move(*d));
  }
  REQUIRE(mine.size() == 2);
  s.complete(mine[0].job, outcome_for(mine[0]));
  CHECK(job->finished_calls() == 0);
  s.complete(mine[1].job, outcome_for(mine[1]));
  CHECK(job->finished_calls() == 1);
  CHECK(job->outcome_count() == 2);
  s.next();
  CHECK(job->finished_calls() == 1);
}

TEST_CASE("scheduler: cancel takes no more documents and finishes after those in flight") {
  Scheduler s;
  auto job = counted_job("c", 10);
  auto other = counted_job("o", 100);
  s.add_job(job);
  s.add_job(other);
  auto d1 = s.next();
  CHECK(s.next()->doc.relative_path == "o-0");
  auto d2 = s.next();
  REQUIRE(d1);
  REQUIRE(d2);
  CHECK(d2->doc.relative_path == "c-1");
  CHECK(s.cancel("c"));
  CHECK(s.cancel("c"));  // still in the pipeline until its documents are done
  for (int i = 0; i < 5; ++i) CHECK(s.next()->doc.relative_path.rfind("o-", 0) == 0);
  CHECK(job->taken() == 2);
  s.complete(d1->job, outcome_for(*d1));
  CHECK(job->finished_calls() == 0);
  s.complete(d2->job, outcome_for(*d2));
  CHECK(job->finished_calls() == 1);
  CHECK(job->cancelled());
  CHECK_FALSE(s.cancel("c"));
  CHECK_FALSE(s.cancel("nope"));
}

TEST_CASE("scheduler: cancelling a job with nothing in flight finishes it on a stage thread") {
  Scheduler s;
  auto job = counted_job("idle", 10);
  auto other = counted_job("busy", 10);
  s.add_job(job);
  s.add_job(other);
  auto d = s.next();  // idle-0
  s.complete(d->job, outcome_for(*d));
  CHECK(s.cancel("idle"));
  CHECK(job->finished_calls() == 0);  // not on the caller's (the loop's) thread
  auto next = s.next();
  CHECK(next->doc.relative_path == "busy-0");
  CHECK(job->finished_calls() == 1);
  CHECK(job->cancelled());
}

TEST_CASE("scheduler: a retry comes back after its delay with the next attempt number") {
  Scheduler s;
  auto job = counted_job("r", 1);
  s.add_job(job);
  auto d = s.next();
  REQUIRE(d);
  auto start = std::chrono::steady_clock::now();
  REQUIRE(s.retry(*d, 30ms));
  auto again = s.next();  // blocks until the retry is due: the job has nothing else
  CHECK(std::chrono::steady_clock::now() - start >= 30ms);
  REQUIRE(again);
  CHECK(again->doc.relative_path == "r-0");
  CHECK(again->attempt == 2);
  CHECK_FALSE(again->cancelled);
  CHECK(s.documents_in_flight() == 1);
  s.complete(again->job, outcome_for(*again));
  CHECK(job->finished_calls() == 1);
}

TEST_CASE("scheduler: cancel hands a pending retry back at once, marked cancelled") {
  Scheduler s;
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

TEST_CASE("scheduler: stop ends next, drops unfinished jobs and refuses retries and cancels") {
  Scheduler s;
  auto job = counted_job("s", 100);
  s.add_job(job);
  auto d = s.next();
  auto pending = s.next();
  REQUIRE(s.retry(*pending, std::chrono::hours(1)));
  s.stop();
  auto back = s.next();  // the pending retry still needs an outcome
  REQUIRE(back);
  CHECK(back->cancelled);
  CHECK_FALSE(s.next().has_value());
  CHECK_FALSE(s.retry(*d, 1ms));
  CHECK_FALSE(s.cancel("s"));
  s.complete(d->job, outcome_for(*d));
  s.complete(back->job, outcome_for(*back));
  CHECK(job->outcome_count() == 2);
  CHECK(job->finished_calls() == 0);
  s.add_job(counted_job("after", 1));
  CHECK(s.job_count() == 1);
  CHECK_FALSE(s.next().has_value());
}

}  // namespace
}  // namespace docpipe
