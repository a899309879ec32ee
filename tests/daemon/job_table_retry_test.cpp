// The job table's retries, on a FakeClock advanced by hand: a finish that failed is tried again
// only once its backoff has passed, jobs whose file cannot be resumed end in failed/, a job that
// could not be opened is reopened later, and stopping admits nothing and drops the retries.

#include <doctest/doctest.h>

#include <chrono>

#include "core/fs_util.h"
#include "tests/daemon/job_table_fixture.h"

using docpipe::Credentials;
using docpipe::JobTable;
using docpipe::ReopenedJob;
using docpipe::test::JobTableFixture;
using std::chrono::milliseconds;

namespace {
const Credentials kRoot{};
}  // namespace

TEST_CASE("job table: the finish retry delay doubles from 250 ms up to 5 s") {
  CHECK(JobTable::finish_retry_delay_ms(1) == 250);
  CHECK(JobTable::finish_retry_delay_ms(2) == 500);
  CHECK(JobTable::finish_retry_delay_ms(3) == 1000);
  CHECK(JobTable::finish_retry_delay_ms(5) == 4000);
  CHECK(JobTable::finish_retry_delay_ms(6) == 5000);
  CHECK(JobTable::finish_retry_delay_ms(100) == 5000);
}

TEST_CASE("job table: a finish that failed is retried only once the backoff has passed") {
  JobTableFixture f;
  f.table->enqueue(f.make_job("full"));
  f.break_folder("done");
  f.work.finish("full");
  f.drain();
  nlohmann::json status = f.table->status_of("full", kRoot).value();
  CHECK(status["state"] == "finishing");
  CHECK(status.contains("error"));
  CHECK(f.jobs_total("succeeded") == 0);  // not recorded, so not counted
  CHECK(f.table->running() == 1);
  CHECK(f.table->pending_retries() == 1);
  CHECK(f.timer.armed());

  f.timer.advance(milliseconds(249));
  CHECK(f.executor.pending.empty());  // not yet due
  f.timer.advance(milliseconds(1));
  REQUIRE(f.executor.pending.size() == 1);
  f.executor.run_all();  // still broken: the second attempt fails, next in 500 ms
  CHECK(f.table->pending_retries() == 1);
  f.timer.advance(milliseconds(499));
  CHECK(f.executor.pending.empty());

  f.repair_folder("done");
  f.timer.advance(milliseconds(1));
  CHECK(f.executor.run_all() == 1);
  CHECK(f.exists("done/full.report.json"));
  CHECK(f.exists("done/full.manifest.jsonl"));
  CHECK(f.jobs_total("succeeded") == 1);
  CHECK_FALSE(f.table->status_of("full", kRoot).has_value());
  CHECK(f.table->running() == 0);
  CHECK(f.table->pending_retries() == 0);
  CHECK_FALSE(f.timer.armed());
}

TEST_CASE("job table: a job whose file cannot be resumed ends in failed/ with the reason") {
  JobTableFixture f;
  REQUIRE(docpipe::write_file_atomic(f.spool->active_job("broken"), "{not json", false));
  f.table->finish_unresumable("broken", {{"input.dir", "no such folder"}});
  CHECK(f.executor.run_all() == 1);
  auto text = docpipe::read_file(f.spool->failed() + "/broken.report.json");
  REQUIRE(text);
  auto report = nlohmann::json::parse(*text);
  CHECK(report["id"] == "broken");
  CHECK(report["state"] == "failed");
  CHECK(report["reason"].get<std::string>().find("cannot resume: input.dir: no such folder") == 0);
  CHECK(f.exists("failed/broken.json"));
  CHECK_FALSE(f.exists("active/broken.json"));
  CHECK(f.jobs_total("failed") == 1);
}

TEST_CASE("job table: moving an unresumable job to failed/ is retried after the backoff") {
  JobTableFixture f;
  REQUIRE(docpipe::write_file_atomic(f.spool->active_job("stuck"), "{}", false));
  f.break_folder("failed");
  f.table->finish_unresumable("stuck", {{"id", "bad"}});
  f.executor.run_all();
  CHECK(f.jobs_total("failed") == 0);
  CHECK(f.table->pending_retries() == 1);
  f.repair_folder("failed");
  f.timer.advance(milliseconds(249));
  CHECK(f.executor.pending.empty());
  f.timer.advance(milliseconds(1));
  CHECK(f.executor.run_all() == 1);
  CHECK(f.exists("failed/stuck.report.json"));
  CHECK(f.jobs_total("failed") == 1);
}

TEST_CASE("job table: a job that could not be opened is reopened after a growing backoff") {
  JobTableFixture f;
  int calls = 0;
  std::shared_ptr<docpipe::DaemonJob> later = f.make_job("later");
  f.reopen = [&](const std::string& id) {
    ++calls;
    CHECK(id == "later");
    if (calls < 3) return docpipe::test::reopen_failed("Too many open files");
    ReopenedJob r;
    r.job = later;
    return r;
  };
  f.table->resume_later("later", 1);
  f.timer.advance(milliseconds(249));
  CHECK(f.executor.run_all() == 0);
  f.timer.advance(milliseconds(1));
  CHECK(f.executor.run_all() == 1);  // attempt 1 fails: next in 500 ms
  CHECK(calls == 1);
  f.timer.advance(milliseconds(499));
  CHECK(f.executor.run_all() == 0);
  f.timer.advance(milliseconds(1));
  CHECK(f.executor.run_all() == 1);  // attempt 2 fails: next in 1 s
  CHECK(f.work.added.empty());
  f.timer.advance(milliseconds(1000));
  CHECK(f.executor.run_all() == 1);
  CHECK(calls == 3);
  CHECK(f.work.added == std::vector<std::string>{"later"});
  CHECK(f.table->pending_retries() == 0);
}

TEST_CASE("job table: a reopened job file found invalid is finished as failed") {
  JobTableFixture f;
  REQUIRE(docpipe::write_file_atomic(f.spool->active_job("gone-bad"), "{}", false));
  f.reopen = [](const std::string&) {
    ReopenedJob r;
    r.unresumable = true;
    r.errors = {{"input", "missing"}};
    return r;
  };
  f.table->resume_later("gone-bad", 1);
  f.timer.advance(milliseconds(250));
  CHECK(f.executor.run_all() == 2);  // the reopen, then the move to failed/
  CHECK(f.exists("failed/gone-bad.report.json"));
  CHECK(f.jobs_total("failed") == 1);
}

TEST_CASE("job table: stopping admits nothing more, and drops the pending retries") {
  JobTableFixture f(/*max_active_jobs=*/1);
  f.table->enqueue(f.make_job("running"));
  f.table->enqueue(f.make_job("waiting"));
  f.table->resume_later("elsewhere", 1);
  CHECK(f.table->pending_retries() == 1);

  f.table->begin_stopping();
  CHECK(f.table->stopping());
  f.table->resume_later("ignored", 1);  // stays in active/ for the next start
  CHECK(f.table->pending_retries() == 1);
  f.work.finish("running");
  f.drain();
  CHECK(f.exists("done/running.report.json"));
  CHECK(f.work.added == std::vector<std::string>{"running"});  // "waiting" is not admitted
  CHECK(f.table->queued() == 1);

  f.table->finish_stopping();
  CHECK(f.table->pending_retries() == 0);
  CHECK_FALSE(f.timer.armed());
  f.timer.advance(std::chrono::seconds(10));
  CHECK(f.executor.run_all() == 0);
}

TEST_CASE("job table: a finish that fails while stopping is left for the next start") {
  JobTableFixture f;
  f.table->enqueue(f.make_job("late"));
  f.table->begin_stopping();
  f.break_folder("done");
  f.work.finish("late");
  f.table->finish_stopping();  // drains the finished job
  CHECK(f.executor.run_all() == 1);
  CHECK(f.table->pending_retries() == 0);
  CHECK(f.exists("active/late.json"));
  CHECK(f.jobs_total("succeeded") == 0);
}
