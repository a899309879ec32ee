#pragma once
// How jobs enter the job table: claimed from incoming/ (on_job_file_ready), submitted through
// the control socket (submit, the blocking part), or resumed from active/ at start-up
// (resume_active_jobs) and after a passing failure (reopen, the JobTable's Reopen). File work
// runs on the executor; results are handed to the table on the loop thread.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "config/daemon_config.h"
#include "core/clock.h"
#include "core/spool.h"
#include "daemon/daemon_job.h"
#include "daemon/daemon_metrics.h"
#include "daemon/executor.h"
#include "daemon/intake.h"
#include "daemon/job_table.h"
#include "daemon/submitter_store.h"

namespace docpipe {

class JobIntake {
 public:
  struct Deps {
    Executor& executor;
    const Clock& clock;
    const Spool& spool;
    bool durable;
    SubmitterStore& submitters;
    JobTable& table;
    DaemonMetrics& metrics;
    std::atomic<uint64_t>& progress;  // documents finished, for the watchdog
    // Jobs counted per submitter for "quotas" (docs/design.md "Quotas per submitter"); nullptr:
    // no queued-jobs cap is enforced (priority caps still are).
    QuotaLedger* quotas = nullptr;
    // if_exists "unchanged" jobs check against and record into it (null: not available; such
    // jobs then do every document).
    LineageStore* lineage = nullptr;
  };

  JobIntake(Deps deps, const DaemonConfig& config);

  // What blocking work reads: a snapshot replaced whole on reload, never changed in place.
  // Any thread.
  std::shared_ptr<const DaemonConfig> config() const;
  void set_config(const DaemonConfig& config);

  // The intake is done with a name in incoming/ (the watch folder forgets it). Loop thread.
  void set_forget(std::function<void(const std::string&)> forget) { forget_ = std::move(forget); }

  // Jobs an earlier run left in active/ go first; `then` runs after (intake starts there), so
  // that an incoming job with the same id is refused rather than racing the resumed one.
  void resume_active_jobs(std::function<void()> then);

  // incoming/NAME looks complete: take it (validate, claim or reject) and queue it. While intake
  // is paused (JobTable::paused) it is left there untouched, logged once, and taken at the
  // rescan that resuming starts.
  void on_job_file_ready(const std::string& name);

  // Blocking (executor): a job handed over the socket, validated, its submitter recorded and
  // admitted into active/, its journal opened. `job` set: accepted; else `errors` (invalid) or
  // `failure` (a passing error).
  struct Submitted {
    std::shared_ptr<DaemonJob> job;
    FieldErrors errors;
    std::string failure;
    // Accepted into active/ but not opened (no descriptors, a full spool): `failure` says why;
    // the caller has it resumed later (JobTable::resume_later).
    std::string unopened_id;
    uint64_t documents = 0;
    // Refused for the submitter's quota: kQueuedJobs with `failure` the reason, or kPriority
    // with the reason among `errors` (on "priority").
    QuotaRefusal quota_refused = QuotaRefusal::kNone;
  };
  // `daemon_written`: a retry the daemon built (validate_job_text).
  Submitted submit(const std::string& text, const std::string& default_id,
                   const std::string& base_dir, const std::optional<Credentials>& submitter,
                   const DaemonConfig& config, bool daemon_written = false);

  // Blocking (executor): reopens active/ID.json as a resumed job (JobTable::Reopen), checked
  // against the config of now.
  ReopenedJob reopen(const std::string& id);

  // A cluster job this node took over from a silent coordinator (docs/design.md "Several
  // nodes"): its pinned text and submitter record go into active/ (unless there already), then it
  // resumes like a job of an earlier run. `done(false)` when it cannot (the lease is then given
  // up for another node). Loop thread.
  void adopt(std::string id, std::string text, std::string submitter,
             std::function<void(bool)> done);

 private:
  // Creates the job and its journal (resume: replays an existing journal). Blocking.
  std::shared_ptr<DaemonJob> make_job(ValidatedJob validated, bool resume, Status& opened);
  // Reads active/ID.json and whom it acts for (its submitter record, or the job file's owner),
  // and removes the temp files a crash left in its output folder. A job whose submitter cannot
  // be told is kFailed (tried again later), never run with the daemon's rights. Blocking.
  IntakeResult load_resumable(const std::string& id, const DaemonConfig& config);
  void on_intake_result(IntakeResult result, std::shared_ptr<DaemonJob> job);

  Deps deps_;
  mutable std::mutex config_mu_;  // reload replaces config_ while pool threads read it
  std::shared_ptr<const DaemonConfig> config_;
  std::function<void(const std::string&)> forget_;
  // Names already logged as waiting in the current pause (at most kMaxWaitingLogged).
  static constexpr size_t kMaxWaitingLogged = 1000;
  std::set<std::string> waiting_logged_;
  int64_t waiting_since_ms_ = -1;  // the pause they were logged in
};

}  // namespace docpipe
