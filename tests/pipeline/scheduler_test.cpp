#include "pipeline/scheduler.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "tests/pipeline/pipeline_test_support.h"
#include "tests/pipeline/scheduler_test_support.h"

namespace docpipe {
namespace {

using namespace std::chrono_literals;
using testing::counted_job;
using testing::FakeJob;
using testing::make_spec;
using testing::outcome_for;

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
  Scheduler s(system_clock(), 1);  // one document per walk: exact picks
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
  Scheduler s(system_clock(), 1);  // one document per walk: exact picks
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

TEST_CASE("scheduler: stop ends next, drops unfinished jobs and refuses retries and cancels") {
  Scheduler s(system_clock(), 1);  // one document per walk: exact picks
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

// A job whose walk blocks inside next_document() until the test releases it, like a readdir on a
// huge or hung folder, or a walk through hostile globs.
class SlowWalkJob : public PipelineJob {
 public:
  explicit SlowWalkJob(const std::string& id) : spec_(make_spec(id, "/out", nullptr)) {}
  const JobSpec& spec() const override { return spec_; }

  std::optional<DocumentRef> next_document() override {
    std::unique_lock lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
    if (yielded_) return std::nullopt;
    yielded_ = true;
    return DocumentRef{"/in/slow-0", "slow-0"};
  }
  void document_finished(DocumentOutcome) override {
    std::lock_guard lock(mu_);
    ++outcomes_;
  }
  void job_finished(bool cancelled) override {
    std::lock_guard lock(mu_);
    ++finished_calls_;
    cancelled_ = cancelled;
  }

  bool wait_entered(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return entered_; });
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  int finished_calls() const {
    std::lock_guard lock(mu_);
    return finished_calls_;
  }
  bool cancelled() const {
    std::lock_guard lock(mu_);
    return cancelled_;
  }

 private:
  JobSpec spec_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false;
  bool released_ = false;
  bool yielded_ = false;
  int outcomes_ = 0;
  int finished_calls_ = 0;
  bool cancelled_ = false;
};

// This is also the resume case: a resumed job's walk checks its done outputs (a stat each, 90,000
// for a 100,000-document job that is 90 % done) inside next_document(), which runs off the lock.
TEST_CASE("scheduler: a job whose walk is slow does not hold up other jobs, submits or cancels") {
  Scheduler s(system_clock(), 1);  // one document per walk: exact picks
  auto slow = std::make_shared<SlowWalkJob>("slow");
  auto fast = counted_job("fast", 3);
  s.add_job(slow);  // first in the ring: the first reader walks it
  s.add_job(fast);
  std::optional<ScheduledDocument> slow_doc;
  std::thread walker([&] { slow_doc = s.next(); });
  REQUIRE(slow->wait_entered(10s));

  // Everything else goes on while the slow walk is in progress; with the walk under the
  // scheduler's lock, each of these calls would wait for it.
  auto others = std::async(std::launch::async, [&] {
    std::vector<std::string> got;
    auto d = s.next();
    if (!d) return got;
    got.push_back(d->doc.relative_path);
    CHECK(s.documents_in_flight() == 1);  // the slow walk's document is not taken yet
    s.complete(d->job, outcome_for(*d));
    s.add_job(counted_job("late", 1));  // an unrelated submit
    CHECK(s.job_count() == 3);
    CHECK(s.cancel("fast"));
    auto l = s.next();
    if (!l) return got;
    got.push_back(l->doc.relative_path);
    s.complete(l->job, outcome_for(*l));
    CHECK(s.cancel("slow"));  // cancelling the job being walked does not wait for its walk
    return got;
  });
  const bool in_time = others.wait_for(5s) == std::future_status::ready;
  slow->release();  // unblock everything before checking, so that a failure cannot hang
  walker.join();
  REQUIRE(in_time);
  CHECK(others.get() == std::vector<std::string>{"fast-0", "late-0"});
  CHECK(fast->finished_calls() == 1);
  CHECK(fast->cancelled());

  // The walk's document was taken from the job: it comes out marked cancelled to be completed.
  REQUIRE(slow_doc);
  CHECK(slow_doc->doc.relative_path == "slow-0");
  CHECK(slow_doc->cancelled);
  CHECK(slow->finished_calls() == 0);
  s.complete(slow_doc->job, outcome_for(*slow_doc));
  CHECK(slow->finished_calls() == 1);
  CHECK(slow->cancelled());
  CHECK(s.job_count() == 1);  // "late": found exhausted only by a later next()
  CHECK(s.documents_in_flight() == 0);
}

TEST_CASE("scheduler: no two readers walk one job at once, and every document is taken once") {
  class CountingJob : public PipelineJob {
   public:
    CountingJob() : spec_(make_spec("walk", "/out", nullptr)) {}
    const JobSpec& spec() const override { return spec_; }
    std::optional<DocumentRef> next_document() override {
      const int inside = ++inside_;
      int seen = max_inside_.load();
      while (inside > seen && !max_inside_.compare_exchange_weak(seen, inside)) {
      }
      // Widen the window by spinning, not yielding: on a loaded machine each yield can give the
      // core away for a whole time slice, and 300 walks of 200 yields then outlast the deadline.
      for (int i = 0; i < 2000; ++i) spin_.fetch_add(1, std::memory_order_relaxed);
      std::optional<DocumentRef> doc;
      if (next_ < 300) doc = DocumentRef{"/in/" + std::to_string(next_), std::to_string(next_)};
      ++next_;  // unsynchronised on purpose: concurrent walks would lose counts
      --inside_;
      return doc;
    }
    void document_finished(DocumentOutcome) override {}
    void job_finished(bool) override {
      std::lock_guard lock(mu_);
      ++finished_;
      cv_.notify_all();
    }
    bool wait_finished() {
      std::unique_lock lock(mu_);
      return cv_.wait_for(lock, 20s, [&] { return finished_.load() > 0; });
    }
    JobSpec spec_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::atomic<int> inside_{0};
    std::atomic<int> max_inside_{0};
    std::atomic<int> spin_{0};
    int next_ = 0;
    std::atomic<int> finished_{0};
  };
  Scheduler s;
  auto job = std::make_shared<CountingJob>();
  s.add_job(job);
  std::atomic<int> taken{0};
  auto reader = [&] {
    while (auto d = s.next()) {
      ++taken;
      s.complete(d->job, outcome_for(*d));
      if (job->finished_.load() > 0) break;
    }
  };
  std::thread a(reader), b(reader), c(reader);
  // Readers still waiting once the job is done are woken by stop().
  job->wait_finished();
  s.stop();
  a.join();
  b.join();
  c.join();
  CHECK(job->max_inside_.load() == 1);
  CHECK(taken.load() == 300);
  CHECK(job->finished_.load() == 1);
}

}  // namespace
}  // namespace docpipe
