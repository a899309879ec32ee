#pragma once
// What the job table's tests drive it with (ninja's PlanTest): a fake work queue that records
// add/cancel and lets the test finish documents and jobs, an executor run by hand, a FakeClock
// with a retry timer fired by hand, and a real Spool in a temp folder. Nothing waits on time.

#include <doctest/doctest.h>
#include <prometheus/registry.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/daemon_config.h"
#include "core/spool.h"
#include "daemon/daemon_job.h"
#include "daemon/daemon_metrics.h"
#include "daemon/executor.h"
#include "daemon/intake.h"
#include "daemon/job_table.h"
#include "daemon/log.h"
#include "daemon/quota_ledger.h"
#include "daemon/retry_queue.h"
#include "pipeline/work_queue.h"
#include "tests/support/fake_clock.h"

namespace docpipe::test {

// Records what the table asks; the test plays the pipeline's part with finish().
class FakeWorkQueue final : public WorkQueue {
 public:
  void add_job(std::shared_ptr<PipelineJob> job) override {
    added.push_back(job->spec().id);
    jobs.push_back(std::move(job));
  }
  bool cancel_job(const std::string& id) override {
    cancelled.push_back(id);
    return true;
  }
  void stop(std::chrono::milliseconds) override { stopped = true; }
  void reconfigure(const WorkQueueLimits& l) override { limits = l; }
  size_t documents_in_flight() const override { return in_flight; }
  size_t buffer_bytes_in_use() const override { return 0; }

  std::shared_ptr<PipelineJob> job(const std::string& id) const {
    for (const auto& j : jobs)
      if (j->spec().id == id) return j;
    return nullptr;
  }
  // Processes every document the job still has (each succeeds), then ends the job, as the
  // pipeline would; `cancelled` ends it as a cancel does, without taking more documents.
  void finish(const std::string& id, bool cancelled = false) {
    std::shared_ptr<PipelineJob> j = job(id);
    REQUIRE(j != nullptr);
    while (!cancelled) {
      std::optional<DocumentRef> doc = j->next_document();
      if (!doc) break;
      DocumentOutcome o;
      o.doc = *doc;
      o.output_path = j->spec().output.dir + "/" + doc->relative_path;
      o.bytes_in = o.bytes_out = 6;
      j->document_finished(std::move(o));
    }
    j->job_finished(cancelled);
  }

  std::vector<std::shared_ptr<PipelineJob>> jobs;
  std::vector<std::string> added;
  std::vector<std::string> cancelled;
  std::optional<WorkQueueLimits> limits;
  size_t in_flight = 0;
  bool stopped = false;
};

// Work waits until the test runs it: run_all() runs each `work` and then its `after`.
class ManualExecutor final : public Executor {
 public:
  void run(std::function<void()> work, std::function<void()> after) override {
    pending.push_back({std::move(work), std::move(after)});
  }
  // Runs everything queued, including what the runs queue; returns how many ran.
  size_t run_all() {
    size_t n = 0;
    while (!pending.empty()) {
      auto [work, after] = std::move(pending.front());
      pending.pop_front();
      work();
      after();
      ++n;
    }
    return n;
  }
  std::deque<std::pair<std::function<void()>, std::function<void()>>> pending;
};

// A RetryTimer on the FakeClock: advance() moves time and fires the timer once it is due.
class ManualTimer final : public RetryTimer {
 public:
  explicit ManualTimer(FakeClock& clock) : clock_(clock) {}
  void arm(Clock::duration delay, std::function<void()> fire) override {
    due_ = clock_.now() + delay;
    fire_ = std::move(fire);
  }
  void disarm() override { fire_ = nullptr; }
  bool armed() const { return fire_ != nullptr; }
  void advance(Clock::duration d) {
    clock_.advance(d);
    while (fire_ && clock_.now() >= due_) {
      auto fire = std::move(fire_);
      fire_ = nullptr;
      fire();
    }
  }

 private:
  FakeClock& clock_;
  Clock::time_point due_{};
  std::function<void()> fire_;
};

inline ReopenedJob reopen_failed(std::string message) {
  ReopenedJob r;
  r.message = std::move(message);
  return r;
}

inline JobTableLimits limits(int64_t max_active_jobs, std::optional<gid_t> admin_gid) {
  JobTableLimits l;
  l.max_active_jobs = max_active_jobs;
  l.admin_gid = admin_gid;
  return l;
}

struct JobTableFixture {
  JobTableFixture(int64_t max_active_jobs = 16) {
    log_configure(LogLevel::kError, false);
    char tmpl[] = "/tmp/docpipe-job-table-XXXXXX";
    root = ::mkdtemp(tmpl);
    spool = std::make_unique<Spool>(root + "/spool", /*durable=*/false);
    REQUIRE(spool->create_layout());
    std::filesystem::create_directories(root + "/in");
    std::filesystem::create_directories(root + "/out");
    std::ofstream(root + "/in/a.txt") << "alpha\n";
    std::ofstream(root + "/in/b.txt") << "bravo\n";
    config = default_config(root);
    config.spool_dir = root + "/spool";
    table = std::make_unique<JobTable>(
        JobTable::Deps{.work = work,
                       .executor = executor,
                       .clock = clock,
                       .retry_timer = timer,
                       .spool = *spool,
                       .durable = false,
                       .metrics = metrics,
                       .reopen = [this](const std::string& id) { return reopen(id); },
                       .wake = [this] { ++wakes; },
                       .quotas = &quotas},
        limits(max_active_jobs, 4242));
  }
  ~JobTableFixture() {
    std::error_code ec;
    std::filesystem::permissions(root, std::filesystem::perms::owner_all, ec);
    std::filesystem::remove_all(root, ec);
  }

  // A job over in/ (two documents), admitted into active/ as the control socket does, with its
  // journal open; not yet in the table.
  std::shared_ptr<DaemonJob> make_job(const std::string& id, int priority = 0,
                                      std::optional<Credentials> submitter = std::nullopt) {
    std::string text = "{\"id\":\"" + id + "\",\"input\":{\"dir\":\"" + root +
                       "/in\"},\"output\":{\"dir\":\"" + root + "/out/" + id +
                       "\"},\"priority\":" + std::to_string(priority) + "}";
    std::filesystem::create_directories(root + "/out/" + id);
    FieldErrors errors;
    auto validated = validate_job_text(text, id, root, config, errors);
    REQUIRE_MESSAGE(validated, join_field_errors(errors));
    validated->spec.submitter = std::move(submitter);
    REQUIRE(spool->admit(id, text));
    JobTable* t = table.get();
    auto job = std::make_shared<DaemonJob>(std::move(validated->spec), validated->documents,
                                           clock.wall_ms(), &metrics, &progress,
                                           [t](DaemonJob* j) { t->post_finished(j); });
    REQUIRE(job->open(spool->active_journal(id), /*resume=*/false, /*durable=*/false));
    return job;
  }

  // The loop's part after the work queue ended jobs: finalise them (the executor runs the work).
  void drain() {
    table->drain_finished();
    executor.run_all();
  }

  // docpipe_jobs_total{outcome=...}.
  double jobs_total(const std::string& outcome) {
    for (const auto& family : registry.Collect()) {
      if (family.name != "docpipe_jobs_total") continue;
      for (const auto& m : family.metric) {
        for (const auto& label : m.label) {
          if (label.name == "outcome" && label.value == outcome) return m.counter.value;
        }
      }
    }
    return -1;
  }

  bool exists(const std::string& spool_path) const {
    return std::filesystem::exists(spool->root() + "/" + spool_path);
  }

  // Makes a spool folder unusable for finishing: a regular file where the folder was.
  void break_folder(const std::string& name) {
    std::filesystem::rename(spool->root() + "/" + name, spool->root() + "/" + name + ".saved");
    std::ofstream(spool->root() + "/" + name) << "not a folder\n";
  }
  void repair_folder(const std::string& name) {
    std::filesystem::remove(spool->root() + "/" + name);
    std::filesystem::rename(spool->root() + "/" + name + ".saved", spool->root() + "/" + name);
  }

  std::string root;
  std::unique_ptr<Spool> spool;
  DaemonConfig config;
  prometheus::Registry registry;
  DaemonMetrics metrics{registry};
  std::atomic<uint64_t> progress{0};
  FakeClock clock;
  ManualTimer timer{clock};
  FakeWorkQueue work;
  ManualExecutor executor;
  std::function<ReopenedJob(const std::string&)> reopen = [](const std::string&) {
    return reopen_failed("no reopen in this test");
  };
  int wakes = 0;
  QuotaLedger quotas;  // what the table counts per submitter
  std::unique_ptr<JobTable> table;
};

}  // namespace docpipe::test
