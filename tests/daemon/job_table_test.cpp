// The job table driven by hand (ninja's PlanTest): admission, cancel, finalise, status and
// visibility over a fake work queue, a hand-run executor and a FakeClock. Finishing retries,
// unresumable jobs, resume_later and stopping are in job_table_retry_test.cpp.

#include <doctest/doctest.h>

#include <chrono>

#include "core/fs_util.h"
#include "tests/daemon/job_table_fixture.h"

using docpipe::Credentials;
using docpipe::JobTable;
using docpipe::test::JobTableFixture;

namespace {

Credentials user(uid_t uid, std::vector<gid_t> groups = {}) {
  Credentials c;
  c.uid = uid;
  c.gid = uid;
  c.groups = std::move(groups);
  return c;
}

const Credentials kRoot = user(0);

}  // namespace

TEST_CASE("job table: admits the highest priority first, then in arrival order") {
  JobTableFixture f(/*max_active_jobs=*/1);
  f.table->enqueue(f.make_job("first", 0));
  f.table->enqueue(f.make_job("low", 0));
  f.table->enqueue(f.make_job("high", 5));
  f.table->enqueue(f.make_job("high-later", 5));
  CHECK(f.work.added == std::vector<std::string>{"first"});
  CHECK(f.table->running() == 1);
  CHECK(f.table->queued() == 3);
  CHECK(f.metrics.jobs_active().Value() == 1);
  CHECK(f.metrics.jobs_queued().Value() == 3);

  for (const char* id : {"first", "high", "high-later"}) {
    f.work.finish(id);
    f.drain();
  }
  CHECK(f.work.added == std::vector<std::string>{"first", "high", "high-later", "low"});
  CHECK(f.table->queued() == 0);
  CHECK(f.metrics.jobs_queued().Value() == 0);
}

TEST_CASE("job table: a reload that grows max_active_jobs admits waiting jobs at once") {
  JobTableFixture f(/*max_active_jobs=*/1);
  f.table->enqueue(f.make_job("a"));
  f.table->enqueue(f.make_job("b"));
  f.table->enqueue(f.make_job("c"));
  CHECK(f.work.added.size() == 1);
  f.table->set_limits(docpipe::test::limits(2, 4242));
  CHECK(f.work.added == std::vector<std::string>{"a", "b"});
  CHECK(f.table->running() == 2);
  CHECK(f.table->queued() == 1);
}

TEST_CASE("job table: a finished job's report goes to done/, and it leaves the table") {
  JobTableFixture f;
  f.table->enqueue(f.make_job("ok"));
  f.work.finish("ok");
  CHECK(f.wakes == 1);                           // the loop is asked to drain
  CHECK_FALSE(f.exists("done/ok.report.json"));  // not before the loop finalises it
  f.table->drain_finished();
  CHECK(f.table->status_of("ok", kRoot).value()["state"] == "finishing");
  CHECK(f.executor.run_all() == 1);
  CHECK(f.exists("done/ok.report.json"));
  CHECK(f.exists("done/ok.json"));
  CHECK(f.exists("done/ok.manifest.jsonl"));
  CHECK_FALSE(f.exists("active/ok.json"));
  auto report =
      nlohmann::json::parse(docpipe::read_file(f.spool->done() + "/ok.report.json").value());
  CHECK(report["state"] == "succeeded");
  CHECK(report["counts"]["succeeded"] == 2);
  CHECK(f.jobs_total("succeeded") == 1);
  CHECK_FALSE(f.table->status_of("ok", kRoot).has_value());
  CHECK(f.table->running() == 0);
  CHECK(f.metrics.jobs_active().Value() == 0);
}

TEST_CASE("job table: a job with failed documents over its limit goes to failed/") {
  JobTableFixture f;
  f.table->enqueue(f.make_job("bad"));
  auto job = f.work.job("bad");
  while (auto doc = job->next_document()) {
    docpipe::DocumentOutcome o;
    o.doc = *doc;
    o.state = docpipe::DocumentState::kFailed;
    o.error = "read: broken";
    job->document_finished(std::move(o));
  }
  job->job_finished(false);
  f.drain();
  CHECK(f.exists("failed/bad.report.json"));
  CHECK(f.exists("failed/bad.json"));
  CHECK_FALSE(f.exists("done/bad.json"));
  CHECK(f.jobs_total("failed") == 1);
}

TEST_CASE("job table: cancelling a queued job finishes it at once as cancelled") {
  JobTableFixture f(/*max_active_jobs=*/1);
  f.table->enqueue(f.make_job("running"));
  f.table->enqueue(f.make_job("waiting"));
  CHECK(f.table->cancel("waiting", kRoot) == JobTable::CancelOutcome::kCancelled);
  CHECK(f.work.cancelled.empty());  // never reached the work queue
  CHECK(f.table->queued() == 0);
  CHECK(f.metrics.jobs_queued().Value() == 0);
  f.drain();
  auto report =
      nlohmann::json::parse(docpipe::read_file(f.spool->failed() + "/waiting.report.json").value());
  CHECK(report["state"] == "cancelled");
  CHECK(report["reason"] == "cancelled by request");
  CHECK(f.jobs_total("cancelled") == 1);
  CHECK(f.work.added == std::vector<std::string>{"running"});
}

TEST_CASE("job table: cancelling a running job asks the work queue and ends when it says so") {
  JobTableFixture f;
  f.table->enqueue(f.make_job("busy"));
  CHECK(f.table->cancel("busy", kRoot) == JobTable::CancelOutcome::kCancelling);
  CHECK(f.work.cancelled == std::vector<std::string>{"busy"});
  f.table->drain_finished();
  CHECK(f.executor.run_all() == 0);  // nothing to finish until the work queue ends the job
  CHECK(f.table->status_of("busy", kRoot).value()["state"] == "running");
  f.work.finish("busy", /*cancelled=*/true);
  f.drain();
  CHECK(f.exists("failed/busy.report.json"));
  CHECK(f.jobs_total("cancelled") == 1);
  CHECK(f.table->running() == 0);
}

TEST_CASE("job table: cancel of an unknown job, or of someone else's, says there is none") {
  JobTableFixture f;
  f.table->enqueue(f.make_job("mine", 0, user(1000)));
  CHECK(f.table->cancel("nope", kRoot) == JobTable::CancelOutcome::kNoSuchJob);
  CHECK(f.table->cancel("mine", user(1001)) == JobTable::CancelOutcome::kNoSuchJob);
  CHECK(f.work.cancelled.empty());
  CHECK(f.table->cancel("mine", user(1000)) == JobTable::CancelOutcome::kCancelling);
}

TEST_CASE("job table: status shows each job's state, counts and submitter") {
  JobTableFixture f(/*max_active_jobs=*/1);
  f.table->enqueue(f.make_job("run", 3));
  f.clock.advance(std::chrono::seconds(2));
  f.table->enqueue(f.make_job("wait", 7, user(1000)));
  nlohmann::json running = f.table->status_of("run", kRoot).value();
  CHECK(running["state"] == "running");
  CHECK(running["priority"] == 3);
  CHECK(running["total"] == 2);
  CHECK(running["done"] == 0);
  CHECK(running["succeeded"] == 0);
  CHECK(running["failed"] == 0);
  CHECK(running["skipped"] == 0);
  CHECK(running["bytes_in"] == 0);
  CHECK(running["bytes_out"] == 0);
  CHECK(running["documents_per_second"] == 0.0);
  CHECK(running["submitted_at"] == "2025-12-01T01:00:00.000Z");
  CHECK(running["submitter_uid"] == 0);  // root's job
  CHECK_FALSE(running.contains("eta_seconds"));
  CHECK_FALSE(running.contains("error"));

  // One document done in the 4 s since it started: 0.25 documents/s, one more to go.
  auto job = f.work.job("run");
  auto doc = job->next_document();
  REQUIRE(doc);
  docpipe::DocumentOutcome o;
  o.doc = *doc;
  o.bytes_in = 6;
  o.bytes_out = 4;
  job->document_finished(std::move(o));
  f.clock.advance(std::chrono::seconds(2));
  running = f.table->status_of("run", kRoot).value();
  CHECK(running["done"] == 1);
  CHECK(running["succeeded"] == 1);
  CHECK(running["bytes_in"] == 6);
  CHECK(running["bytes_out"] == 4);
  CHECK(running["documents_per_second"] == doctest::Approx(0.25));
  CHECK(running["eta_seconds"] == doctest::Approx(4.0));

  nlohmann::json waiting = f.table->status_of("wait", kRoot).value();
  CHECK(waiting["state"] == "queued");
  CHECK(waiting["submitter_uid"] == 1000);
  CHECK(f.table->visible_jobs(kRoot).size() == 2);
}

TEST_CASE("job table: a job is visible to its submitter, root and admin_group only") {
  JobTableFixture f;  // admin_group 4242
  f.table->enqueue(f.make_job("alice", 0, user(1000)));
  f.table->enqueue(f.make_job("roots", 0, std::nullopt));
  auto ids = [&](const Credentials& peer) {
    std::vector<std::string> out;
    for (const auto& j : f.table->visible_jobs(peer)) out.push_back(j["id"]);
    return out;
  };
  CHECK(ids(user(1000)) == std::vector<std::string>{"alice"});
  CHECK(ids(user(1001)).empty());
  CHECK(ids(kRoot) == std::vector<std::string>{"alice", "roots"});
  CHECK(ids(user(1002, {4242})) == std::vector<std::string>{"alice", "roots"});
  CHECK_FALSE(f.table->status_of("alice", user(1001)).has_value());
  CHECK(f.table->status_of("alice", user(1000)).has_value());
  CHECK_FALSE(f.table->status_of("roots", user(1000)).has_value());
  // A reload that drops admin_group takes the rights away.
  f.table->set_limits(docpipe::test::limits(16, std::nullopt));
  CHECK(ids(user(1002, {4242})).empty());
}

TEST_CASE("job table: busy while a job waits for the work queue, not while it only finishes") {
  JobTableFixture f;
  CHECK_FALSE(f.table->busy());
  auto job = f.make_job("slow");
  f.table->enqueue(job);
  CHECK(f.table->busy());
  CHECK(f.table->longest_document_timeout_ms() == job->spec().limits.document_timeout_ms);
  f.break_folder("done");
  f.work.finish("slow");
  f.drain();  // finishing failed: it waits for the spool, not for documents
  CHECK(f.table->status_of("slow", kRoot).value()["state"] == "finishing");
  CHECK_FALSE(f.table->busy());
}
