// DaemonJob's resume side: replaying the journal of a job the daemon had started before a
// restart, settling its intent records, and the report of a job that cannot be resumed. See
// daemon_job.h for the whole; the record types are core/journal_record.h.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <optional>
#include <variant>

#include "core/path_util.h"
#include "daemon/daemon_job.h"
#include "daemon/log.h"
#include "pipeline/output_file.h"
#include "pipeline/sha256.h"

namespace docpipe {

namespace {

// The sha256 of a regular file, or nullopt if it is not one or cannot be read.
std::optional<std::string> file_sha256(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return std::nullopt;
  struct stat sb;
  Sha256 sha;
  bool good = ::fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sha.reset();
  std::string buf(1 << 16, '\0');
  while (good) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      good = n == 0;
      break;
    }
    good = static_cast<bool>(sha.update(std::string_view(buf.data(), static_cast<size_t>(n))));
  }
  ::close(fd);
  if (!good) return std::nullopt;
  Result<std::string> hex = sha.hex_digest();
  if (!hex) return std::nullopt;
  return *hex;
}

}  // namespace

bool DaemonJob::output_exists(const JobSpec& spec, const DocumentRef& doc,
                              const std::string& output) {
  std::string_view rel = output;
  if (doc.output == nullptr) {
    while (!rel.empty() && rel.front() == '/') rel.remove_prefix(1);
  } else if (path_is_within(output, spec.output.dir)) {
    rel = path_below(output, spec.output.dir);
  } else {
    return false;
  }
  return OutputFile::exists(OutputTarget{doc.output.get(), rel, nullptr});
}

Status DaemonJob::open(const std::string& journal_path, bool resume, bool durable,
                       const std::string& manifest_path) {
  durable_ = durable;
  source_ = make_document_source(spec_);
  // Before the job is admitted nothing else touches it; the locks keep that easy to check.
  std::lock_guard<std::mutex> journal_lock(journal_mu_);
  if (resume) {
    std::lock_guard<std::mutex> lock(mu_);
    Result<JournalScan> scanned = replay(journal_path);
    if (scanned) {
      journal_damage_ = scanned->damage.describe();
      if (scanned->damage.damaged()) {
        log_error("journal damaged; the documents whose records were lost are done again",
                  {{"job", spec_.id}, {"journal", journal_path}, {"damage", journal_damage_}});
      } else if (scanned->torn) {
        log_warn("journal had a torn last record (a crash while writing it); dropped it",
                 {{"job", spec_.id},
                  {"journal", journal_path},
                  {"bytes", std::to_string(scanned->damage.torn_bytes)}});
      }
      if (scanned->submitted_at_ms != 0) report_.submitted_at_ms = scanned->submitted_at_ms;
      Status st = journal_.reopen(journal_path, scanned->good_bytes);
      if (st) st = settle_intents();
      if (st) st = settle_input_actions();
      resumed_ = done_before_.size();
      return st;
    }
    // Unreadable: start over with clean counts.
    done_before_.clear();
    superseded_.clear();
    pending_intents_.clear();
    pending_actions_.clear();
    report_.input_actions = InputActionCounts{};
    report_.input_actions.used = actor_ != nullptr;
    report_.counts = JobCounts{report_.counts.total};
    report_.failed_documents.clear();
    report_.reason.clear();
    stop_taking_ = false;
    if (scanned.error().code != ErrorCode::kNotFound) {
      log_warn("cannot read journal; the job restarts from the beginning",
               {{"job", spec_.id}, {"error", scanned.error().message}});
    }
  }
  // Afresh: every record the journal will hold is this run's, so the manifest can be streamed
  // (not with input actions: their outcomes join each line when the manifest is written).
  if (!actor_) manifest_path_ = manifest_path;
  return journal_.create(journal_path, spec_.id, report_.submitted_at_ms);
}

Result<JournalScan> DaemonJob::replay(const std::string& journal_path) {
  return JobJournal::scan(journal_path,
                          [this](std::string_view payload) { replay_record(payload); });
}

void DaemonJob::replay_record(std::string_view payload) {
  Result<JournalRecord> record = parse_journal_record(payload);
  // A record that does not parse (hand-edited: its checksum matched) says nothing usable: its
  // document is done again.
  if (!record) return;
  if (IntentRecord* intent = std::get_if<IntentRecord>(&*record)) {
    std::string input = intent->input;
    pending_intents_[std::move(input)] = std::move(*intent);
  } else if (const DocumentRecord* done = std::get_if<DocumentRecord>(&*record)) {
    replay_document(*done);
  } else if (InputActionRecord* action = std::get_if<InputActionRecord>(&*record)) {
    replay_input_action(std::move(*action));
  }
}

void DaemonJob::replay_input_action(InputActionRecord r) {
  if (r.step == InputActionRecord::Step::kBegin) {
    std::string input = r.input;
    pending_actions_[std::move(input)] = std::move(r);
    return;
  }
  pending_actions_.erase(r.input);
  count_input_action(r.input, r.action == "move",
                     InputActionResult{r.step == InputActionRecord::Step::kDone, r.error}, false);
}

Status DaemonJob::settle_input_actions() {
  if (pending_actions_.empty()) return ok();
  std::unordered_map<std::string, InputActionRecord> pending;
  pending.swap(pending_actions_);
  // The document records these actions follow were read back from the journal: on disk before
  // anything is acted on, whatever happened to the daemon that wrote them.
  if (Status st = journal_.sync(durable_); !st) return st;
  std::vector<std::string> results;
  for (auto& [input, begin] : pending) {
    auto done = done_before_.find(input);
    if (done == done_before_.end()) continue;  // no outcome on record (cannot happen): kept
    const InputAction* action = actor_ ? input_action_for(done->second.state) : nullptr;
    InputActionResult result;
    if (action == nullptr || begin.action != input_action_name(action->kind)) {
      result.error = begin.action + " " + input + ": the job's input actions no longer say " +
                     begin.action + "; left in place";
    } else if (done->second.state == RecordState::kSucceeded &&
               (begin.sha256.empty() || file_sha256(begin.output) != begin.sha256)) {
      // The output is not (or no longer) the job's: the input is kept. An output that is gone
      // makes the walk do the document again, and a new action follows that.
      if (!file_sha256(begin.output)) {
        log_warn("input action dropped: its document's output is gone and is done again",
                 {{"job", spec_.id}, {"input", input}});
        continue;
      }
      result.error = begin.action + " " + input + ": its output " + begin.output +
                     " no longer holds what the job wrote; the input is left in place";
    } else {
      const InputLocation where{begin.base, begin.path, begin.target,  begin.dev,
                                begin.ino,  begin.size, begin.mtime_ns};
      result = actor_->apply(*action, input, where, /*resuming=*/true);
    }
    count_input_action(input, begin.action == "move", result, true);
    results.push_back(
        InputActionRecord::finished(input, begin.action, result.done, result.error).to_json());
  }
  if (results.empty()) return ok();
  log_info("input actions begun before a restart completed",
           {{"job", spec_.id}, {"actions", std::to_string(results.size())}});
  return journal_.append_all(results);
}

void DaemonJob::replay_document(const DocumentRecord& r) {
  pending_intents_.erase(r.input);
  Done d{r.state, r.bytes_in, r.bytes_out, r.output};
  auto [it, inserted] = done_before_.try_emplace(r.input, d);
  if (!inserted) {  // a later record for the same input supersedes the earlier one
    count(it->second.state, it->second.bytes_in, it->second.bytes_out, -1);
    it->second = d;
    superseded_.insert(r.input);
  }
  count(d.state, d.bytes_in, d.bytes_out, +1);
  if (d.state == RecordState::kFailed) note_failure(r.input, r.error);
}

bool DaemonJob::redo_done(const DocumentRef& doc, const Done& done) const {
  // Only a success has an output to lose; a failed or skipped document stays as recorded.
  if (done.state != RecordState::kSucceeded) return false;
  if (output_probe_) return !output_probe_(doc, done.output);
  return !output_exists(spec_, doc, done.output);
}

Status DaemonJob::settle_intents() {
  // Each intent left over was written just before a rename that a crash may or may not have let
  // happen. The output holding exactly the bytes the intent names was renamed by this job; an
  // output with other bytes is someone else's, and no output means the rename never happened:
  // both are processed as usual.
  std::unordered_map<std::string, IntentRecord> intents;
  intents.swap(pending_intents_);  // replay_document() erases from pending_intents_
  for (auto& [input, intent] : intents) {
    std::optional<std::string> sha = file_sha256(intent.output);
    if (!sha || intent.sha256.empty() || *sha != intent.sha256) continue;
    const DocumentRecord done{.input = input,
                              .output = intent.output,
                              .state = RecordState::kSucceeded,
                              .bytes_in = intent.bytes_in,
                              .bytes_out = intent.bytes_out,
                              .sha256 = intent.sha256,
                              .metadata = intent.metadata,
                              .attempts = intent.attempts,
                              .duration_seconds = 0.0,
                              .error = ""};
    Status st = journal_.append(done.to_json());
    if (!st) return st;
    replay_document(done);
    ++recognised_;
  }
  if (recognised_ > 0) {
    log_info("outputs renamed into place just before a crash recognised as the job's own",
             {{"job", spec_.id}, {"documents", std::to_string(recognised_)}});
  }
  return ok();
}

JobReport DaemonJob::unresumable_report(const std::string& id, const std::string& journal_path,
                                        const std::string& manifest_path, bool durable,
                                        std::string& note, const Clock& clock) {
  JobSpec spec;
  spec.id = id;
  spec.limits.max_failed_documents = INT64_MAX;  // only counting here
  DaemonJob job(std::move(spec), 0, clock.wall_ms(), nullptr, nullptr, nullptr, clock);
  job.durable_ = durable;
  Result<JournalScan> scanned = [&] {
    std::lock_guard<std::mutex> lock(job.mu_);
    return job.replay(journal_path);
  }();
  JobReport report = job.report();
  report.state = JobState::kFailed;
  report.all_documents_seen = false;  // what was never journalled is not known
  report.finished_at_ms = clock.wall_ms();
  if (!scanned) {
    note = scanned.error().code == ErrorCode::kNotFound ? "no journal" : scanned.error().message;
    return report;
  }
  if (scanned->submitted_at_ms != 0) report.submitted_at_ms = scanned->submitted_at_ms;
  JobCounts& c = report.counts;
  c.total = c.succeeded + c.failed + c.skipped;
  note = "its journal recorded " + std::to_string(c.total) + " document(s)";
  if (!scanned->damage.describe().empty()) note += " (" + scanned->damage.describe() + ")";
  Status st = job.write_manifest(journal_path, manifest_path);
  if (!st) note += "; manifest not written: " + st.error().message;
  return report;
}

}  // namespace docpipe
