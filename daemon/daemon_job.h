#pragma once
// A job as the daemon runs it: feeds its documents to the pipeline, journals one record per
// finished document (core/journal.h), keeps the counts for the report, and stops taking documents
// once more than max_failed_documents have failed. A resumed job replays its journal first: its
// counts cover the whole job, and documents already done (whose output still exists) are skipped.
// Pipeline threads call into it concurrently (guarded by mu_); the loop thread reads the final
// state only after job_finished().

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "core/document_source.h"
#include "core/journal.h"
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

  // Creates the journal, or with `resume` replays and reopens an existing one (a missing journal
  // starts afresh). Blocking: call off the loop thread.
  Status open(const std::string& journal_path, bool resume, bool durable);

  const JobSpec& spec() const override { return spec_; }
  std::optional<DocumentRef> next_document() override;
  void document_finished(DocumentOutcome outcome) override;
  void job_finished(bool cancelled) override;

  // Asks the job to take no more documents (user cancel). Thread-safe.
  void request_cancel(std::string reason);

  // Flushes and closes the journal. Blocking: call off the loop thread, after job_finished().
  Status close_journal();

  // Writes the manifest (one line per document, in journal order) from the journal, streaming,
  // atomically (temp file + rename). Call after close_journal().
  Status write_manifest(const std::string& journal_path, const std::string& manifest_path) const;

  // The report; complete once job_finished() has run.
  JobReport report() const;
  void mark_started(int64_t unix_ms);
  uint64_t resumed_documents() const { return resumed_; }

 private:
  struct Done {
    DocumentState state;
    uint64_t bytes_in;
    uint64_t bytes_out;
    std::string output;
  };
  void count(DocumentState state, uint64_t bytes_in, uint64_t bytes_out, int sign);
  void note_failure(const std::string& input, const std::string& error);

  JobSpec spec_;
  DaemonMetrics* metrics_;
  std::atomic<uint64_t>* progress_;
  FinishedFn on_finished_;
  std::unique_ptr<DocumentSource> source_;
  bool durable_ = true;
  uint64_t resumed_ = 0;

  mutable std::mutex mu_;
  JobJournal journal_;
  uint64_t unsynced_records_ = 0;
  std::string journal_error_;  // first journal write error, reported in the job's reason
  JobReport report_;
  // Documents a resumed job's journal records as finished, by input path; drained as the walk
  // meets them. Only the scheduler (next_document) touches it.
  std::unordered_map<std::string, Done> done_before_;
  // Inputs with more than one journal record (done again after a restart because their output
  // had vanished): the manifest lists only their last record.
  std::unordered_set<std::string> superseded_;
  bool source_done_ = false;
  bool stop_taking_ = false;
  bool user_cancelled_ = false;
};


}  // namespace docpipe
