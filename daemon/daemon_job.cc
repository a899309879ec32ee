#include "daemon/daemon_job.h"

#include <algorithm>
#include <optional>

#include "core/leftover_temps.h"
#include "core/manifest_writer.h"
#include "daemon/log.h"

namespace docpipe {

namespace {

// Journal records are synced in batches: a record lost in an OS crash only means its document
// is done again after the restart (outputs are replaced whole), so per-record fsyncs would buy
// nothing but latency.
constexpr uint64_t kSyncEvery = 256;

// The journalled state of a finished document (never kCancelled: those are not journalled).
RecordState record_state_of(DocumentState s) {
  switch (s) {
    case DocumentState::kSucceeded:
      return RecordState::kSucceeded;
    case DocumentState::kSkipped:
      return RecordState::kSkipped;
    case DocumentState::kFailed:
    case DocumentState::kCancelled:
      break;
  }
  return RecordState::kFailed;
}

}  // namespace

DaemonJob::DaemonJob(JobSpec spec, uint64_t expected_total, int64_t submitted_at_ms,
                     DaemonMetrics* metrics, std::atomic<uint64_t>* progress,
                     FinishedFn on_finished, const Clock& clock)
    : spec_(std::move(spec)),
      clock_(&clock),
      metrics_(metrics),
      progress_(progress),
      on_finished_(std::move(on_finished)) {
  report_.id = spec_.id;
  report_.input = spec_.input.dir.empty() ? std::to_string(spec_.input.files.size()) + " files"
                                          : spec_.input.dir;
  report_.output = spec_.output.dir;
  report_.transforms = spec_.transform_ops;
  report_.retry_of = spec_.retry_of;
  report_.submitted_at_ms = submitted_at_ms;
  report_.counts.total = expected_total;
  if (spec_.input.acts()) {
    actor_ = std::make_unique<InputActor>(spec_);
    report_.input_actions.used = true;
  }
}

const InputAction* DaemonJob::input_action_for(RecordState state) const {
  const InputAction* a = state == RecordState::kSucceeded ? &spec_.input.after_success
                         : state == RecordState::kFailed  ? &spec_.input.after_failure
                                                          : nullptr;  // skipped: kept
  return a != nullptr && a->acts() ? a : nullptr;
}

void DaemonJob::count_input_action(const std::string& input, bool move, const InputActionResult& r,
                                   bool live) {
  InputActionCounts& c = report_.input_actions;
  if (r.done) {
    ++c.done;
  } else {
    ++c.failed;
    if (c.failures.size() < JobReport::kMaxFailedListed) c.failures.push_back({input, r.error});
  }
  if (!live) return;
  if (metrics_ != nullptr) metrics_->input_action(move, r.done);
  if (!r.done) log_warn("input action failed", {{"job", spec_.id}, {"error", r.error}});
}

void DaemonJob::count(RecordState state, uint64_t bytes_in, uint64_t bytes_out, int sign) {
  JobCounts& c = report_.counts;
  c.bytes_in += sign * bytes_in;
  c.bytes_out += sign * bytes_out;
  switch (state) {
    case RecordState::kSucceeded:
      c.succeeded += sign;
      break;
    case RecordState::kSkipped:
      c.skipped += sign;
      break;
    case RecordState::kFailed:
      c.failed += sign;
      break;
  }
}

void DaemonJob::note_failure(const std::string& input, const std::string& error) {
  if (report_.failed_documents.size() < JobReport::kMaxFailedListed) {
    report_.failed_documents.push_back({input, error});
  }
  if (static_cast<int64_t>(report_.counts.failed) > spec_.limits.max_failed_documents &&
      !stop_taking_) {
    stop_taking_ = true;
    report_.reason = std::to_string(report_.counts.failed) +
                     " document(s) failed, more than limits.max_failed_documents (" +
                     std::to_string(spec_.limits.max_failed_documents) +
                     "); remaining documents were not processed";
  }
}

void DaemonJob::journal_failed(const Error& error) {
  if (!journal_error_.empty()) return;
  journal_error_ = error.message;
  journal_broken_.store(true, std::memory_order_release);
  stop_taking_ = true;
  report_.reason = "the job's journal cannot be written (" + error.message +
                   "); remaining documents were not processed";
  log_error("journal write failed; the job takes no more documents",
            {{"job", spec_.id}, {"error", error.message}});
}

void DaemonJob::mark_started(int64_t unix_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  report_.started_at_ms = unix_ms;
}

std::optional<DocumentRef> DaemonJob::next_document() {
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_taking_ || source_done_) return std::nullopt;
    }
    // Only the walk calls this, never concurrently for one job: source_ and done_before_ need no
    // lock, and neither the walk nor the "already done" check below holds one (the check may
    // stat; mu_ is also what this job's writers take to record their documents).
    std::optional<DocumentRef> doc = source_->next();
    if (!doc) {
      done_before_.clear();
      std::lock_guard<std::mutex> lock(mu_);
      source_done_ = true;
      report_.warnings = source_->errors();
      for (const auto& w : report_.warnings) {
        log_warn("input left out", {{"job", spec_.id}, {"problem", w}});
      }
      return std::nullopt;
    }
    auto it = done_before_.find(doc->input_path);
    if (it == done_before_.end()) return doc;
    const Done done = std::move(it->second);
    done_before_.erase(it);
    // Done in an earlier run: skip it, unless its output has vanished since.
    if (!redo_done(*doc, done)) continue;
    std::lock_guard<std::mutex> lock(mu_);
    count(done.state, done.bytes_in, done.bytes_out, -1);
    superseded_.insert(doc->input_path);
    return doc;
  }
}

Status DaemonJob::document_committing(const PendingOutput& p) {
  // With replace, an output renamed before its record is simply done again on resume.
  if (!keeps_existing_outputs(spec_.output.if_exists)) return ok();
  const std::string payload = IntentRecord{.input = p.doc.input_path,
                                           .output = p.output_path,
                                           .sha256 = p.sha256,
                                           .bytes_in = p.bytes_in,
                                           .bytes_out = p.bytes_out,
                                           .attempts = p.attempts,
                                           .metadata = p.metadata}
                                  .to_json();
  uint64_t seq = 0;
  {
    std::lock_guard<std::mutex> journal_lock(journal_mu_);
    // Not done because the job stops: cancelled, not failed (and not retried).
    const Error stopped =
        make_error(ErrorCode::kCancelled, "cancelled: the job's journal cannot be written");
    if (journal_broken_.load(std::memory_order_acquire)) return stopped;
    Status st = journal_.append(payload);
    if (!st) {
      std::lock_guard<std::mutex> lock(mu_);
      journal_failed(st.error());
      return stopped;
    }
    seq = ++intents_appended_;
  }
  // With durability fsync the intent reaches the disk before the rename can: after a power loss
  // an output that survived has its intent too. Group commit: one fdatasync covers every intent
  // appended before it, so writers that wait here while another syncs need no sync of their own.
  if (durable_) {
    std::lock_guard<std::mutex> sync_lock(sync_mu_);
    if (intents_synced_ < seq) {
      const uint64_t upto = intents_appended_.load();
      Status st = journal_.datasync();
      if (!st) {
        std::lock_guard<std::mutex> journal_lock(journal_mu_);
        std::lock_guard<std::mutex> lock(mu_);
        journal_failed(st.error());
        return make_error(ErrorCode::kCancelled, "cancelled: the job's journal cannot be synced");
      }
      intents_synced_ = upto;
    }
  }
  return ok();
}

void DaemonJob::document_finished(DocumentOutcome o) {
  std::vector<DocumentOutcome> one;
  one.push_back(std::move(o));
  documents_finished(std::move(one));
}

// One journal write for all the records (a writer's batch), then the counts. A cancelled document
// was not processed: it is not journalled, it is done on resume (shutdown) or counted as
// cancelled at the end.
void DaemonJob::documents_finished(std::vector<DocumentOutcome> outcomes) {
  std::vector<std::string> payloads;
  payloads.reserve(outcomes.size());
  // Input actions of this batch: begun in the journal with their documents' records, run once
  // those are synced, then recorded as done or failed.
  struct Act {
    const InputAction* action;
    InputActionRecord record;
    InputActionResult result;
  };
  std::vector<Act> acts;
  for (DocumentOutcome& o : outcomes) {
    if (o.state == DocumentState::kCancelled) continue;
    if (metrics_ != nullptr) metrics_->document_finished(o);
    if (progress_ != nullptr) progress_->fetch_add(1, std::memory_order_relaxed);
    // The record takes what only it needs from the outcome (moved, not copied: ~450 bytes of
    // strings per document, issue 12); the input path and the error are still read below.
    const bool chained = o.state == DocumentState::kSucceeded || !o.input_sha256.empty();
    payloads.push_back(DocumentRecord{.input = o.doc.input_path,
                                      .output = o.output_path,
                                      .state = record_state_of(o.state),
                                      .bytes_in = o.bytes_in,
                                      .bytes_out = o.bytes_out,
                                      .sha256 = o.sha256,
                                      .metadata = std::move(o.metadata),
                                      .attempts = o.attempts,
                                      .duration_seconds = o.duration_seconds,
                                      .error = o.error,
                                      .input_sha256 = std::move(o.input_sha256),
                                      .chain = chained ? spec_.chain_fingerprint : std::string(),
                                      .reason = std::move(o.skip_reason),
                                      .input_stat = o.input_stat,
                                      .output_stat = o.output_stat}
                           .to_json());
    if (const InputAction* action = actor_ ? input_action_for(record_state_of(o.state)) : nullptr) {
      InputLocation where = locate_input(spec_, o.doc);
      const bool succeeded = o.state == DocumentState::kSucceeded;
      InputActionRecord begin{.step = InputActionRecord::Step::kBegin,
                              .input = o.doc.input_path,
                              .action = input_action_name(action->kind),
                              .base = std::move(where.base),
                              .path = std::move(where.path),
                              .target = std::move(where.target),
                              .dev = where.dev,
                              .ino = where.ino,
                              .size = where.size,
                              .mtime_ns = where.mtime_ns,
                              .output = succeeded ? o.output_path : std::string(),
                              .sha256 = succeeded ? o.sha256 : std::string(),
                              .error = {}};
      payloads.push_back(begin.to_json());
      acts.push_back(Act{action, std::move(begin), {}});
    }
    if (o.state == DocumentState::kFailed) {
      log_warn("document failed",
               {{"job", spec_.id}, {"input", o.doc.input_path}, {"error", o.error}});
    }
  }

  if (!payloads.empty()) {
    std::lock_guard<std::mutex> journal_lock(journal_mu_);
    Status st = !journal_broken_.load(std::memory_order_acquire)
                    ? journal_.append_all(payloads)
                    : make_error(ErrorCode::kIo, "journal not writable");  // already reported
    unsynced_records_ += payloads.size();
    // An input is acted on only once its document's record (and the action's begin) is on
    // record: synced with durability fsync, in the kernel (safe from kill -9) without.
    if (st && (unsynced_records_ >= kSyncEvery || !acts.empty())) {
      st = journal_.sync(durable_);
      unsynced_records_ = 0;
    }
    if (!st) {
      acts.clear();  // the outcomes are not safely on record: inputs are kept
      std::lock_guard<std::mutex> lock(mu_);
      journal_failed(st.error());
    } else {
      stream_manifest(payloads);
    }
  }
  if (!acts.empty()) {
    std::vector<std::string> results;
    results.reserve(acts.size());
    for (Act& a : acts) {
      const InputLocation where{a.record.base, a.record.path, a.record.target,  a.record.dev,
                                a.record.ino,  a.record.size, a.record.mtime_ns};
      a.result = actor_->apply(*a.action, a.record.input, where, /*resuming=*/false);
      results.push_back(InputActionRecord::finished(a.record.input, a.record.action, a.result.done,
                                                    a.result.error)
                            .to_json());
    }
    // Not synced: a result lost in a crash is found again on resume (the action is idempotent).
    std::lock_guard<std::mutex> journal_lock(journal_mu_);
    if (!journal_broken_.load(std::memory_order_acquire)) {
      if (Status st = journal_.append_all(results); !st) {
        std::lock_guard<std::mutex> lock(mu_);
        journal_failed(st.error());
      }
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (const DocumentOutcome& o : outcomes) {
    if (o.state == DocumentState::kCancelled) {
      ++report_.counts.cancelled;
      continue;
    }
    const RecordState state = record_state_of(o.state);
    count(state, o.bytes_in, o.bytes_out, +1);
    if (state == RecordState::kFailed) note_failure(o.doc.input_path, o.error);
  }
  for (const Act& a : acts) {
    count_input_action(a.record.input, a.action->kind == InputActionKind::kMove, a.result, true);
  }
}

void DaemonJob::request_cancel(std::string reason) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;  // finishing: the report is final
  user_cancelled_ = true;
  stop_taking_ = true;
  report_.reason = std::move(reason);
}

void DaemonJob::job_finished(bool cancelled) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    JobCounts& c = report_.counts;
    uint64_t processed = c.succeeded + c.failed + c.skipped;
    // A walk stopped by a fatal error also ends with source_done_: its count is not the truth.
    const bool walk_failed = source_ && source_->fatal_error();
    report_.all_documents_seen =
        source_done_ && !stop_taking_ && !cancelled && !walk_failed && journal_error_.empty();
    if (source_done_ && !stop_taking_ && !cancelled && !walk_failed) {
      c.total = processed;  // the walk is the truth; validation counted earlier
      c.cancelled = 0;
    } else {
      c.total = std::max<uint64_t>(c.total, processed + c.cancelled);
      c.cancelled = c.total - processed;
    }
    finished_ = true;
    if (!journal_error_.empty()) {
      report_.state = JobState::kFailed;  // what was done is not all on record
    } else if (user_cancelled_ || (cancelled && report_.reason.empty())) {
      report_.state = JobState::kCancelled;
      if (report_.reason.empty()) report_.reason = "cancelled";
    } else if (source_ && source_->fatal_error()) {
      // The input or output folder could not be opened or walked: never "succeeded" with
      // the documents found before that.
      report_.state = JobState::kFailed;
      report_.reason = source_->fatal_error()->message;
    } else if (static_cast<int64_t>(c.failed) > spec_.limits.max_failed_documents) {
      report_.state = JobState::kFailed;
    } else {
      report_.state = JobState::kSucceeded;
    }
    report_.finished_at_ms = clock_->wall_ms();
  }
  // Temp files an earlier failure could not remove (read-only folder): try again now.
  LeftoverTemps::global().retry();
  on_finished_(this);
}

Status DaemonJob::close_journal() {
  std::lock_guard<std::mutex> lock(journal_mu_);
  // A write error earlier is already the job's failure reason (journal_failed).
  return journal_.close(durable_);
}

JobReport DaemonJob::report() const {
  std::lock_guard<std::mutex> lock(mu_);
  return report_;
}

void DaemonJob::stream_manifest(const std::vector<std::string>& payloads) {
  if (manifest_path_.empty()) return;
  if (!manifest_stream_) {
    Result<AtomicFileWriter> created = AtomicFileWriter::create(manifest_path_, durable_);
    if (!created) {
      manifest_path_.clear();  // not streamed: the end-of-job scan writes it
      return;
    }
    manifest_stream_.emplace(std::move(*created));
  }
  // One write(2) per batch, as for the journal, and no buffer kept: a running job holds the
  // stream's descriptor and nothing else (max_active_jobs has no upper bound).
  size_t bytes = 0;
  for (const std::string& payload : payloads) bytes += payload.size() + 1;
  std::string lines;
  lines.reserve(bytes);
  for (const std::string& payload : payloads) {
    lines.append(payload);
    lines.push_back('\n');
  }
  if (Status st = manifest_stream_->write_through(lines); !st) {
    // Not the job's failure: the journal has the records, and the end-of-job scan reads them.
    manifest_stream_.reset();  // removes the temp file
    manifest_path_.clear();
  }
}

Status DaemonJob::write_manifest(const std::string& journal_path,
                                 const std::string& manifest_path) {
  {
    std::lock_guard<std::mutex> journal_lock(journal_mu_);
    // Whole only if every record went to both: a journal that failed stopped taking them.
    const bool whole = manifest_stream_ && !journal_broken_.load(std::memory_order_acquire) &&
                       manifest_path == manifest_path_;
    std::optional<AtomicFileWriter> stream = std::exchange(manifest_stream_, std::nullopt);
    manifest_path_.clear();  // once: a retried finish scans
    if (whole) {
      Status committed = stream->commit();
      if (committed) return committed;
      // Failed (the temp file is gone): the scan below writes it from the journal, or says why
      // it cannot.
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  return docpipe::write_manifest(journal_path, manifest_path, superseded_, durable_,
                                 /*with_input_actions=*/actor_ != nullptr);
}

}  // namespace docpipe
