#pragma once
// The daemon's job and intake stats, declared in one place (the pipeline declares its own in
// pipeline/pipeline_metrics.h). All on one registry that the exposer serves at /metrics.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>

#include "core/report.h"
#include "daemon/quota_ledger.h"
#include "pipeline/pipeline_job.h"

namespace docpipe {

enum class IntakeSource { kWatch = 0, kRescan = 1, kSocket = 2 };

// What the daemon measured of its own speed since it started, read back from its metrics: `docpipe
// plan` divides the bytes (or documents) a job would process by it (daemon/plan.h).
struct MeasuredThroughput {
  double job_seconds = 0;  // sum of docpipe_job_duration_seconds
  double bytes_in = 0;     // docpipe_document_bytes_total{direction="in"}
  double documents = 0;    // docpipe_documents_total, all outcomes
};

class DaemonMetrics {
 public:
  explicit DaemonMetrics(prometheus::Registry& registry);

  void job_finished(JobState state, double duration_seconds);
  void job_rejected() { jobs_rejected_->Increment(); }
  MeasuredThroughput measured() const;
  void document_finished(const DocumentOutcome& outcome);
  void intake_event(IntakeSource source) { intake_[int(source)]->Increment(); }
  // The kernel's inotify queue overflowed and events were lost (the watch folder rescans).
  void intake_overflow() { intake_overflows_->Increment(); }
  prometheus::Counter& intake_overflows() { return *intake_overflows_; }
  prometheus::Gauge& jobs_active() { return *jobs_active_; }
  prometheus::Gauge& jobs_queued() { return *jobs_queued_; }
  // The spool's folders, measured at each retention pass: incoming, active, done, failed,
  // rejected (kSpoolFolders order).
  static constexpr const char* kSpoolFolders[5] = {"incoming", "active", "done", "failed",
                                                   "rejected"};
  void spool_usage(size_t folder, uint64_t files, uint64_t bytes) {
    spool_files_[folder]->Set(static_cast<double>(files));
    spool_bytes_[folder]->Set(static_cast<double>(bytes));
  }
  // Jobs retention removed from done (0), failed (1), rejected (2).
  void retention_removed(size_t folder, uint64_t jobs) {
    retention_removed_[folder]->Increment(static_cast<double>(jobs));
  }
  // An input action (core/input_actions.h) ran: `move` false for a delete.
  void input_action(bool move, bool done) {
    input_actions_[move ? 1 : 0][done ? 0 : 1]->Increment();
  }
  // 1 while intake is paused (docpipe pause), else 0.
  prometheus::Gauge& intake_paused() { return *intake_paused_; }
  // A submit or a dropped job file refused for its submitter's quota.
  void quota_refused(QuotaRefusal reason) {
    if (reason == QuotaRefusal::kQueuedJobs) quota_refusals_[0]->Increment();
    if (reason == QuotaRefusal::kPriority) quota_refusals_[1]->Increment();
  }

 private:
  prometheus::Counter* jobs_[3];  // docpipe_jobs_total{outcome=succeeded|failed|cancelled}
  prometheus::Counter* jobs_rejected_;
  prometheus::Gauge* jobs_active_;
  prometheus::Gauge* jobs_queued_;
  prometheus::Gauge* intake_paused_;           // docpipe_intake_paused
  prometheus::Counter* quota_refusals_[2];     // docpipe_quota_refusals_total{queued_jobs|priority}
  prometheus::Gauge* spool_files_[5];          // docpipe_spool_files{folder}
  prometheus::Gauge* spool_bytes_[5];          // docpipe_spool_bytes{folder}
  prometheus::Counter* retention_removed_[3];  // docpipe_retention_removed_jobs_total{folder}
  prometheus::Counter* input_actions_[2][2];   // docpipe_input_actions_total{action,outcome}
  prometheus::Counter* documents_[3];  // docpipe_documents_total{outcome=succeeded|failed|skipped}
  prometheus::Counter* bytes_in_;
  prometheus::Counter* bytes_out_;
  prometheus::Counter* retries_;  // docpipe_document_retries_total, in document_finished()
  prometheus::Histogram* job_duration_;
  prometheus::Counter* intake_[3];
  prometheus::Counter* intake_overflows_;  // docpipe_intake_overflows_total
};

// Standard process_* metrics read from /proc at scrape time.
std::shared_ptr<prometheus::Collectable> make_process_collector();

}  // namespace docpipe
