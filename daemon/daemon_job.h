#pragma once
// A job as the daemon runs it: feeds its documents to the pipeline, journals one record per
// finished document (core/journal.h), keeps the counts for the report, and stops taking documents
// once more than max_failed_documents have failed, or once its journal cannot be written (the
// job then fails with that reason). A resumed job replays its journal first: its counts cover the
// whole job, and documents already done (whose output still exists) are skipped.
//
// With if_exists skip or fail, an intent record (output path and sha256) is journalled before
// each output is renamed into place; resume takes an output with an intent record and no
// document record, whose content has that sha256, as the job's own: done and succeeded. Without
// it, a kill -9 between the rename and the document record made the job fail (fail) or count its
// own output as skipped (skip). See docs/design.md "Crash and fault windows".
// Pipeline threads call into it concurrently (guarded by mu_, the journal by journal_mu_); the
// loop thread reads the final state only after job_finished(). Resume (open, replay, intents, the
// unresumable report) lives in daemon_job_resume.cc; the record format in core/journal_record.h.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "core/clock.h"
#include "core/document_source.h"
#include "core/fs_util.h"
#include "core/input_actions.h"
#include "core/journal.h"
#include "core/journal_record.h"
#include "core/report.h"
#include "daemon/daemon_metrics.h"
#include "pipeline/pipeline_job.h"

namespace docpipe {

class DaemonJob : public PipelineJob {
 public:
  // Called from a pipeline thread when the job is over; must only hand the job to the loop.
  using FinishedFn = std::function<void(DaemonJob*)>;

  // `progress` (may be null) counts finished documents across jobs, for the watchdog. `clock`
  // stamps the report (finished_at_ms); it must outlive the job.
  DaemonJob(JobSpec spec, uint64_t expected_total, int64_t submitted_at_ms, DaemonMetrics* metrics,
            std::atomic<uint64_t>* progress, FinishedFn on_finished,
            const Clock& clock = system_clock());

  // How the walk of a resumed job tells whether a document done before still has its output
  // (`output`, the path its record names; `doc` holds the job's open output folder). The default
  // looks it up beneath the output folder (a stat). Called from the walk holding no lock of the
  // job's; tests replace it to see that, or to pause the walk. Set before the job starts.
  using OutputProbe = std::function<bool(const DocumentRef& doc, const std::string& output)>;
  void set_output_probe(OutputProbe probe) { output_probe_ = std::move(probe); }
  // The default probe: `output` looked up beneath the job's open output folder, symlinks not
  // followed (OutputFile::exists).
  static bool output_exists(const JobSpec& spec, const DocumentRef& doc, const std::string& output);

  // Creates the journal, or with `resume` replays and reopens an existing one (a missing journal
  // starts afresh). Blocking: call off the loop thread.
  //
  // `manifest_path` (the spool's active/ID.manifest.jsonl; empty: none) lets a job whose journal
  // starts afresh stream its manifest as it goes: each batch of document records goes to the
  // journal and then, the same bytes, to a temp file beside the manifest (AtomicFileWriter::
  // write_through: one write(2) per batch, no buffer kept), which write_manifest() only commits.
  // Without it the manifest is written at the end from a scan of the whole journal: a serial
  // pass over every record (CRCs, parses) between the last document and the report, 4 % of a
  // 20,000-document job's time on tmpfs (issue 12). A resumed job, whose journal holds records
  // of earlier runs, always scans.
  Status open(const std::string& journal_path, bool resume, bool durable,
              const std::string& manifest_path = {});

  const JobSpec& spec() const override { return spec_; }
  std::optional<DocumentRef> next_document() override;
  Status document_committing(const PendingOutput& pending) override;
  void document_finished(DocumentOutcome outcome) override;
  void documents_finished(std::vector<DocumentOutcome> outcomes) override;
  void job_finished(bool cancelled) override;
  bool taking_documents() const override { return !stop_taking_; }
  LineageStore* lineage() const override { return lineage_; }
  // The lineage store of an if_exists "unchanged" job: its documents are checked against it, and
  // its outputs recorded in it when it finishes (record_lineage). Set before the job starts.
  void set_lineage(LineageStore* store) { lineage_ = store; }

  // Writes the lineage rows of the job's succeeded documents (and refreshes the input stat of
  // those found unchanged by their hash) from its manifest, in one transaction: called at the
  // finish, after the manifest is written and before the job leaves active/, so that a crash
  // before it resumes the job and writes them again. Blocking. Nothing without a lineage store.
  Status record_lineage(const std::string& manifest_path);

  // Asks the job to take no more documents (user cancel). Thread-safe.
  void request_cancel(std::string reason);

  // Flushes and closes the journal. Blocking: call off the loop thread, after job_finished().
  Status close_journal();

  // Writes the manifest from the journal (core/manifest_writer.h: one line per document, in
  // journal order, a superseded input by its last record). Call after close_journal(). A job that
  // streamed its manifest (see open) commits that instead: the same lines, as the journal holds
  // them. Should the stream have failed (a full spool), the journal is scanned as before.
  Status write_manifest(const std::string& journal_path, const std::string& manifest_path);

  // The report; complete once job_finished() has run.
  JobReport report() const;
  void mark_started(int64_t unix_ms);
  uint64_t resumed_documents() const { return resumed_; }
  // Outputs found renamed into place with an intent record but no document record, taken as done.
  uint64_t recognised_outputs() const { return recognised_; }
  // What the journal scan at resume could not read ("" if nothing); see JournalDamage::describe.
  const std::string& journal_damage() const { return journal_damage_; }

  // The report of a job whose job file cannot be resumed (damaged, invalid), with what its
  // journal knew: counts and failed documents; its manifest is written to `manifest_path`.
  // `note` says what was read. Blocking.
  static JobReport unresumable_report(const std::string& id, const std::string& journal_path,
                                      const std::string& manifest_path, bool durable,
                                      std::string& note, const Clock& clock = system_clock());

  // Finishing (report, manifest, moves out of active/): loop thread only. A finish that fails
  // (a full spool, no descriptors) is retried; the job stays visible meanwhile.
  struct FinishState {
    bool finishing = false;
    bool manifest_written = false;
    int attempts = 0;
    std::string last_error;
  };
  FinishState& finish_state() { return finish_; }
  const FinishState& finish_state() const { return finish_; }

 private:
  // A document a resumed job's journal records as finished.
  struct Done {
    RecordState state;
    uint64_t bytes_in;
    uint64_t bytes_out;
    std::string output;
  };
  // Reads the journal into the counts and done_before_; intents without a document record are
  // left in pending_intents_. Call with mu_ held. (daemon_job_resume.cc)
  Result<JournalScan> replay(const std::string& journal_path);
  void replay_record(std::string_view payload);
  void replay_document(const DocumentRecord& record);
  // After reopen: outputs of pending intents whose content matches are recorded as succeeded.
  Status settle_intents();
  // After settle_intents: input actions begun before a crash and not recorded as done or failed
  // are completed (exactly once: InputActor::apply with `resuming`) and recorded.
  Status settle_input_actions();
  void replay_input_action(InputActionRecord record);
  // The action input.after_success / after_failure names for a document's outcome, or null.
  const InputAction* input_action_for(RecordState state) const;
  // Counts an action's outcome in the report (call with mu_ held) and, when `live`, the metrics.
  void count_input_action(const std::string& input, bool move, const InputActionResult& r,
                          bool live);
  // Whether a document done before must be done again because its output has vanished. Takes no
  // lock: it may stat (walk thread only).
  bool redo_done(const DocumentRef& doc, const Done& done) const;
  void count(RecordState state, uint64_t bytes_in, uint64_t bytes_out, int sign);
  void note_failure(const std::string& input, const std::string& error);
  // The journal cannot be written: the job takes no more documents and ends failed. Call with
  // journal_mu_ and mu_ held.
  void journal_failed(const Error& error);

  JobSpec spec_;
  LineageStore* lineage_ = nullptr;
  const Clock* clock_;
  OutputProbe output_probe_;
  DaemonMetrics* metrics_;
  std::atomic<uint64_t>* progress_;
  FinishedFn on_finished_;
  std::unique_ptr<DocumentSource> source_;
  bool durable_ = true;
  uint64_t resumed_ = 0;
  uint64_t recognised_ = 0;
  std::string journal_damage_;
  FinishState finish_;

  // Group commit of intent records (document_committing): sync_mu_ is taken without the others.
  std::mutex sync_mu_;
  std::atomic<uint64_t> intents_appended_{0};  // written under journal_mu_
  uint64_t intents_synced_ = 0;                // under sync_mu_

  // The journal has a lock of its own, so that a writer's journal write(2) never holds up the
  // walk or the counts (mu_): with both under one lock, the readers' next_document() waited on
  // the writers' journal writes, a futex sleep and wake per document (issue 12's profile).
  // Order: journal_mu_ before mu_, never the other way round.
  std::mutex journal_mu_;
  JobJournal journal_;             // under journal_mu_
  uint64_t unsynced_records_ = 0;  // under journal_mu_
  // Set (under both locks) by journal_failed(); read under either.
  std::atomic<bool> journal_broken_{false};
  // The manifest as it is streamed (see open), under journal_mu_. `manifest_path_` is empty when
  // the job does not stream (resumed, not asked to, or the stream failed); the stream is created
  // at the first record and dropped (its temp file removed) at its first failure, for the
  // end-of-job scan.
  std::string manifest_path_;
  std::optional<AtomicFileWriter> manifest_stream_;
  // Appends the records just journalled to the streamed manifest. Call with journal_mu_ held.
  void stream_manifest(const std::vector<std::string>& payloads);

  mutable std::mutex mu_;
  std::string journal_error_;  // first journal write error, reported in the job's reason
  JobReport report_;
  // Documents a resumed job's journal records as finished, by input path; drained as the walk
  // meets them. Filled by open() before the job is admitted, then touched only by the walk
  // (next_document, never concurrent for one job), so it needs no lock: the stat that checks a
  // done document's output runs holding none (mu_ is also the writers' lock).
  std::unordered_map<std::string, Done> done_before_;
  // Inputs with more than one journal record (done again after a restart because their output
  // had vanished): the manifest lists only their last record.
  std::unordered_set<std::string> superseded_;
  // Intent records of a resumed job not (yet) followed by their document record; open() only.
  std::unordered_map<std::string, IntentRecord> pending_intents_;
  // Input actions begun and not finished, by input; open() only.
  std::unordered_map<std::string, InputActionRecord> pending_actions_;
  // Carries out input.after_success / after_failure; null for jobs that keep their inputs.
  std::unique_ptr<InputActor> actor_;
  bool source_done_ = false;
  std::atomic<bool> stop_taking_{false};  // written under mu_; read lock-free by the scheduler
  bool user_cancelled_ = false;
  bool finished_ = false;  // job_finished() ran: the report is final
};

}  // namespace docpipe
