#pragma once
// The job table (ninja's Plan beside its Builder): every job the daemon has accepted and not yet
// recorded as finished, and the transitions between its states:
//
//   enqueue -> queued --admit (priority, then arrival; max_active_jobs; not paused)--> running
//   running --work queue: job_finished--> finishing --report + moves out of active/--> gone
//   queued --cancel--> finishing (at once, as cancelled); running --cancel--> the work queue
//   finishing --a full spool, no descriptors--> finishing again after a backoff
//
// It reaches the pipeline only through the WorkQueue seam (pipeline/work_queue.h), does blocking
// work through an Executor and waits out retry delays on a Clock with a RetryTimer, so that unit
// tests drive it by hand (tests/daemon/job_table_test.cpp). It knows nothing of libuv.
// Loop thread only, except post_finished().

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/credentials.h"
#include "core/field_error.h"
#include "core/spool.h"
#include "daemon/daemon_job.h"
#include "daemon/daemon_metrics.h"
#include "daemon/executor.h"
#include "daemon/finished_reports.h"
#include "daemon/intake_pause.h"
#include "daemon/notify_record.h"
#include "daemon/quota_ledger.h"
#include "daemon/retry_queue.h"
#include "pipeline/work_queue.h"

namespace docpipe {

// What reopening active/ID.json gave (JobTable::Reopen): `job` set (resumed); or `unresumable`
// (the job file is invalid: finished as failed, `errors` say why); or neither (a passing failure
// such as no descriptors, said in `message`: tried again later).
struct ReopenedJob {
  std::shared_ptr<DaemonJob> job;
  bool unresumable = false;
  FieldErrors errors;
  std::string message;
};

struct JobTableLimits {
  int64_t max_active_jobs = 16;
  std::optional<gid_t> admin_gid;  // members see and cancel every job, as root does
};

class JobTable {
 public:
  // Reopens active/ID.json as a resumed job. Blocking: runs on the executor.
  using Reopen = std::function<ReopenedJob(const std::string& id)>;
  // Asks the loop thread to call drain_finished() soon (uv_async_send). Any thread.
  using Wake = std::function<void()>;

  struct Deps {
    WorkQueue& work;
    Executor& executor;
    const Clock& clock;
    RetryTimer& retry_timer;
    const Spool& spool;
    bool durable;
    DaemonMetrics& metrics;
    Reopen reopen;
    Wake wake;
    // Every job in the table is counted for its submitter's quota until it is forgotten
    // (daemon/quota_ledger.h); nullptr: nothing is counted.
    QuotaLedger* quotas = nullptr;
    // A finished job's completion notification, its record written (daemon/notifier.h); null:
    // records are written but nobody delivers them (unit tests that do not look).
    std::function<void(NotifyRecord)> notify = nullptr;
    // A finished retry links itself into its original's report (daemon/job_retry.h); null: not.
    FinishedReports* reports = nullptr;
  };

  JobTable(Deps deps, JobTableLimits limits);
  JobTable(const JobTable&) = delete;
  JobTable& operator=(const JobTable&) = delete;

  // A job accepted or resumed, its journal open: queued, then admitted when a slot is free.
  // Counted for its submitter's quota (a resumed job too, whatever the cap) until it is forgotten.
  void enqueue(std::shared_ptr<DaemonJob> job);

  // The work queue is done with `job` (its DaemonJob::FinishedFn). Any thread; the job is
  // finalised on the loop thread by drain_finished().
  void post_finished(DaemonJob* job);
  void drain_finished();

  enum class CancelOutcome { kNoSuchJob, kCancelled, kCancelling };
  // kCancelled: it was queued and finishes at once; kCancelling: the work queue winds it down.
  // kNoSuchJob also when `peer` may not see it (the same answer, so that nothing leaks).
  CancelOutcome cancel(const std::string& id, const Credentials& peer);

  // active/ID.json cannot be resumed (`errors` say why): failed/ with what its journal knew.
  void finish_unresumable(const std::string& id, const FieldErrors& errors, int attempts = 0);
  // Opening active/ID.json failed for a passing reason: tried again after a backoff.
  void resume_later(const std::string& id, int attempts);

  // A reload: max_active_jobs may have grown (admits at once) and admin_group changed.
  void set_limits(JobTableLimits limits);

  // Intake paused (docpipe pause; intake_pause.h): queued jobs stay queued, running ones go on.
  // Resuming (nullopt) admits at once. Sets docpipe_intake_paused.
  void set_pause(std::optional<IntakePause> pause);
  const std::optional<IntakePause>& pause() const { return pause_; }
  bool paused() const { return pause_.has_value(); }
  // Root or a member of admin_group: sees and touches every job, pauses and resumes intake.
  bool is_admin(const Credentials& peer) const;

  // Shutdown: no more admissions or new retries; finishing that fails stays for the next start.
  void begin_stopping();
  // After the work queue stopped: reports of jobs that finished meanwhile, pending retries dropped.
  void finish_stopping();
  bool stopping() const { return stopping_; }

  // Status (control socket): a caller sees only the jobs it submitted, unless it is an admin.
  bool can_see(const std::optional<Credentials>& submitter, const Credentials& peer) const;
  std::optional<nlohmann::json> status_of(const std::string& id, const Credentials& peer) const;
  // A queued, running or finishing job whose "retry_of" is `original`, if any (its id).
  std::optional<std::string> retry_in_table(const std::string& original) const;
  nlohmann::json visible_jobs(const Credentials& peer) const;
  size_t running() const { return running_.size(); }
  size_t queued() const { return queued_.size(); }
  size_t pending_retries() const { return retries_.size(); }

  // For the watchdog: some job waits for the work queue (not for space to finish, nor queued
  // while intake is paused), and the longest document_timeout_ms among the jobs.
  bool busy() const;
  int64_t longest_document_timeout_ms() const;

  // Finish retries: 250 ms, 500 ms, 1 s, ... at most 5 s apart.
  static constexpr uint64_t kFinishRetryBaseMs = 250;
  static constexpr uint64_t kFinishRetryMaxMs = 5000;
  static uint64_t finish_retry_delay_ms(int attempts);

 private:
  struct Finished;
  void admit();
  void update_gauges();
  void finalize(std::shared_ptr<DaemonJob> job);
  void finalized(const std::shared_ptr<DaemonJob>& job, const Finished& result);
  void reopen_now(const std::string& id, int attempts);
  void retry_later(uint64_t delay_ms, std::function<void()> attempt);
  nlohmann::json job_status(const DaemonJob& job) const;

  Deps deps_;
  JobTableLimits limits_;
  RetryQueue retries_;
  bool stopping_ = false;
  std::optional<IntakePause> pause_;

  std::map<std::string, std::shared_ptr<DaemonJob>> jobs_;  // queued, running or finishing, by id
  std::vector<std::shared_ptr<DaemonJob>> queued_;          // waiting for a slot, in arrival order
  std::set<std::string> running_;                           // ids handed to the work queue

  std::mutex finished_mu_;  // guards finished_ (work-queue threads push, the loop drains)
  std::vector<DaemonJob*> finished_;
};

}  // namespace docpipe
