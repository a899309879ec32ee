#pragma once
// A job as the daemon runs it: feeds its documents to the pipeline, appends one manifest line per
// finished document, keeps the counts for the report, and stops taking documents once more than
// max_failed_documents have failed. Pipeline threads call into it concurrently (guarded by mu_);
// the loop thread reads the final state only after job_finished().

#include <atomic>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "core/document_source.h"
#include "core/report.h"
#include "daemon/daemon_metrics.h"
#include "pipeline/pipeline_job.h"

namespace docpipe {

class DaemonJob : public PipelineJob {
 public:
  // Called from a pipeline thread when the job is over; must only hand the job to the loop.
  using FinishedFn = std::function<void(DaemonJob*)>;

  // `progress` (may be null) counts finished documents across jobs, for the watchdog.
  DaemonJob(JobSpec spec, uint64_t expected_total, int64_t submitted_at_ms,
            DaemonMetrics* metrics, std::atomic<uint64_t>* progress, FinishedFn on_finished);
  ~DaemonJob() override;

  // Opens (truncates) the manifest and the document source. Blocking: call off the loop thread.
  Status open(const std::string& manifest_path);

  const JobSpec& spec() const override { return spec_; }
  std::optional<DocumentRef> next_document() override;
  void document_finished(DocumentOutcome outcome) override;
  void job_finished(bool cancelled) override;

  // Asks the job to take no more documents (user cancel). Thread-safe.
  void request_cancel(std::string reason);

  // Flushes and closes the manifest (fsync when durable). Blocking: call off the loop thread,
  // after job_finished().
  Status close_manifest(bool durable);

  // The report; complete once job_finished() has run.
  JobReport report() const;
  void mark_started(int64_t unix_ms);

 private:
  JobSpec spec_;
  DaemonMetrics* metrics_;
  std::atomic<uint64_t>* progress_;
  FinishedFn on_finished_;
  std::unique_ptr<DocumentSource> source_;

  mutable std::mutex mu_;
  FILE* manifest_ = nullptr;
  std::string manifest_error_;  // first manifest write error, reported in the job's reason
  JobReport report_;
  bool source_done_ = false;
  bool stop_taking_ = false;
  bool user_cancelled_ = false;
  uint64_t taken_ = 0;
};

}  // namespace docpipe
