#include "daemon/daemon_job.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_set>

#include "core/fs_util.h"
#include "core/leftover_temps.h"
#include "core/path_util.h"
#include "core/time_util.h"
#include "daemon/log.h"
#include "pipeline/output_file.h"
#include "pipeline/sha256.h"

namespace docpipe {

namespace {

// Journal records are synced in batches: a record lost in an OS crash only means its document
// is done again after the restart (outputs are replaced whole), so per-record fsyncs would buy
// nothing but latency.
constexpr uint64_t kSyncEvery = 256;

// Whether a recorded output still exists, looked up beneath the job's open output folder.
bool output_present(const JobSpec& spec, const DocumentRef& doc, const std::string& output) {
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

DocumentState parse_state(const std::string& s) {
  if (s == "succeeded") return DocumentState::kSucceeded;
  if (s == "skipped") return DocumentState::kSkipped;
  return DocumentState::kFailed;
}

}  // namespace

DaemonJob::DaemonJob(JobSpec spec, uint64_t expected_total, int64_t submitted_at_ms,
                     DaemonMetrics* metrics, std::atomic<uint64_t>* progress,
                     FinishedFn on_finished)
    : spec_(std::move(spec)),
      metrics_(metrics),
      progress_(progress),
      on_finished_(std::move(on_finished)) {
  report_.id = spec_.id;
  report_.input = spec_.input.dir.empty() ? std::to_string(spec_.input.files.size()) + " files"
                                          : spec_.input.dir;
  report_.output = spec_.output.dir;
  report_.transforms = spec_.transform_ops;
  report_.submitted_at_ms = submitted_at_ms;
  report_.counts.total = expected_total;
}

Status DaemonJob::open(const std::string& journal_path, bool resume, bool durable) {
  durable_ = durable;
  source_ = make_document_source(spec_);
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
      resumed_ = done_before_.size();
      return st;
    }
    // Unreadable: start over with clean counts.
    done_before_.clear();
    superseded_.clear();
    pending_intents_.clear();
    report_.counts = JobCounts{report_.counts.total};
    report_.failed_documents.clear();
    report_.reason.clear();
    stop_taking_ = false;
    if (scanned.error().code != ErrorCode::kNotFound) {
      log_warn("cannot read journal; the job restarts from the beginning",
               {{"job", spec_.id}, {"error", scanned.error().message}});
    }
  }
  return journal_.create(journal_path, spec_.id, report_.submitted_at_ms);
}

Result<JournalScan> DaemonJob::replay(const std::string& journal_path) {
  return JobJournal::scan(journal_path,
                          [this](std::string_view payload) { replay_record(payload); });
}

void DaemonJob::replay_record(std::string_view payload) {
  nlohmann::json r = nlohmann::json::parse(payload, nullptr, false);
  if (!r.is_object()) return;
  std::string input = r.value("input", std::string());
  if (JobJournal::is_intent(payload)) {
    pending_intents_[input] =
        Intent{r.value("output", std::string()), r.value("sha256", std::string()),
               r.value("bytes_in", uint64_t{0}), r.value("bytes_out", uint64_t{0}),
               r.value("attempts", 1)};
    return;
  }
  pending_intents_.erase(input);
  Done d{parse_state(r.value("state", std::string())), r.value("bytes_in", uint64_t{0}),
         r.value("bytes_out", uint64_t{0}), r.value("output", std::string())};
  auto [it, inserted] = done_before_.try_emplace(input, d);
  if (!inserted) {  // a later record for the same input supersedes the earlier one
    count(it->second.state, it->second.bytes_in, it->second.bytes_out, -1);
    it->second = d;
    superseded_.insert(input);
  }
  count(d.state, d.bytes_in, d.bytes_out, +1);
  if (d.state == DocumentState::kFailed) note_failure(input, r.value("error", std::string()));
}

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

Status DaemonJob::settle_intents() {
  // Each intent left over was written just before a rename that a crash may or may not have let
  // happen. The output holding exactly the bytes the intent names was renamed by this job; an
  // output with other bytes is someone else's, and no output means the rename never happened:
  // both are processed as usual.
  std::unordered_map<std::string, Intent> intents;
  intents.swap(pending_intents_);  // replay_record() below erases from pending_intents_
  for (auto& [input, intent] : intents) {
    std::optional<std::string> sha = file_sha256(intent.output);
    if (!sha || intent.sha256.empty() || *sha != intent.sha256) continue;
    nlohmann::ordered_json line;
    line["input"] = input;
    line["output"] = intent.output;
    line["state"] = document_state_name(DocumentState::kSucceeded);
    line["bytes_in"] = intent.bytes_in;
    line["bytes_out"] = intent.bytes_out;
    line["sha256"] = intent.sha256;
    line["attempts"] = intent.attempts;
    line["duration_seconds"] = 0.0;
    line["error"] = "";
    Status st =
        journal_.append(line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    if (!st) return st;
    replay_record(line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
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
                                        std::string& note) {
  JobSpec spec;
  spec.id = id;
  spec.limits.max_failed_documents = INT64_MAX;  // only counting here
  DaemonJob job(std::move(spec), 0, wall_clock_ms(), nullptr, nullptr, nullptr);
  job.durable_ = durable;
  Result<JournalScan> scanned = [&] {
    std::lock_guard<std::mutex> lock(job.mu_);
    return job.replay(journal_path);
  }();
  JobReport report = job.report();
  report.state = JobState::kFailed;
  report.finished_at_ms = wall_clock_ms();
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

void DaemonJob::count(DocumentState state, uint64_t bytes_in, uint64_t bytes_out, int sign) {
  JobCounts& c = report_.counts;
  c.bytes_in += sign * bytes_in;
  c.bytes_out += sign * bytes_out;
  switch (state) {
    case DocumentState::kSucceeded:
      c.succeeded += sign;
      break;
    case DocumentState::kSkipped:
      c.skipped += sign;
      break;
    case DocumentState::kFailed:
      c.failed += sign;
      break;
    case DocumentState::kCancelled:
      c.cancelled += sign;
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
    // Only the scheduler calls this, never concurrently for one job: source_ and done_before_
    // need no lock.
    std::optional<DocumentRef> doc = source_->next();
    std::lock_guard<std::mutex> lock(mu_);
    if (!doc) {
      source_done_ = true;
      done_before_.clear();
      report_.warnings = source_->errors();
      for (const auto& w : report_.warnings) {
        log_warn("input left out", {{"job", spec_.id}, {"problem", w}});
      }
      return std::nullopt;
    }
    auto it = done_before_.find(doc->input_path);
    if (it == done_before_.end()) return doc;
    // Done in an earlier run: skip it, unless its output has vanished since.
    bool output_gone = it->second.state == DocumentState::kSucceeded &&
                       !output_present(spec_, *doc, it->second.output);
    if (!output_gone) {
      done_before_.erase(it);
      continue;
    }
    count(it->second.state, it->second.bytes_in, it->second.bytes_out, -1);
    superseded_.insert(it->first);
    done_before_.erase(it);
    return doc;
  }
}

Status DaemonJob::document_committing(const PendingOutput& p) {
  // With replace, an output renamed before its record is simply done again on resume.
  if (spec_.output.if_exists == IfExists::kReplace) return ok();
  nlohmann::ordered_json line;
  line["intent"] = "commit";
  line["input"] = p.doc.input_path;
  line["output"] = p.output_path;
  line["sha256"] = p.sha256;
  line["bytes_in"] = p.bytes_in;
  line["bytes_out"] = p.bytes_out;
  line["attempts"] = p.attempts;
  std::string payload = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  uint64_t seq = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Not done because the job stops: cancelled, not failed (and not retried).
    const Error stopped =
        make_error(ErrorCode::kCancelled, "cancelled: the job's journal cannot be written");
    if (!journal_error_.empty()) return stopped;
    Status st = journal_.append(payload);
    if (!st) {
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
  if (o.state == DocumentState::kCancelled) {
    // Not processed: it is done on resume (shutdown) or counted as cancelled at the end.
    std::lock_guard<std::mutex> lock(mu_);
    ++report_.counts.cancelled;
    return;
  }
  if (metrics_ != nullptr) metrics_->document_finished(o);
  if (progress_ != nullptr) progress_->fetch_add(1, std::memory_order_relaxed);
  nlohmann::ordered_json line;
  line["input"] = o.doc.input_path;
  line["output"] = o.output_path;
  line["state"] = document_state_name(o.state);
  line["bytes_in"] = o.bytes_in;
  line["bytes_out"] = o.bytes_out;
  line["sha256"] = o.sha256;
  line["attempts"] = o.attempts;
  line["duration_seconds"] = o.duration_seconds;
  line["error"] = o.error;
  std::string payload = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (o.state == DocumentState::kFailed) {
    log_warn("document failed",
             {{"job", spec_.id}, {"input", o.doc.input_path}, {"error", o.error}});
  }

  std::lock_guard<std::mutex> lock(mu_);
  Status st = journal_error_.empty()
                  ? journal_.append(payload)
                  : make_error(ErrorCode::kIo, "journal not writable");  // already reported
  if (st && ++unsynced_records_ >= kSyncEvery) {
    st = journal_.sync(durable_);
    unsynced_records_ = 0;
  }
  if (!st) journal_failed(st.error());
  count(o.state, o.bytes_in, o.bytes_out, +1);
  if (o.state == DocumentState::kFailed) note_failure(o.doc.input_path, o.error);
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
    if (source_done_ && !stop_taking_ && !cancelled) {
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
    report_.finished_at_ms = wall_clock_ms();
  }
  // Temp files an earlier failure could not remove (read-only folder): try again now.
  LeftoverTemps::global().retry();
  on_finished_(this);
}

Status DaemonJob::close_journal() {
  std::lock_guard<std::mutex> lock(mu_);
  // A write error earlier is already the job's failure reason (journal_failed).
  return journal_.close(durable_);
}

JobReport DaemonJob::report() const {
  std::lock_guard<std::mutex> lock(mu_);
  return report_;
}

Status DaemonJob::write_manifest(const std::string& journal_path,
                                 const std::string& manifest_path) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto input_of = [](std::string_view payload) {
    nlohmann::json r = nlohmann::json::parse(payload, nullptr, false);
    return r.is_object() ? r.value("input", std::string()) : std::string();
  };
  // Intent records are not manifest lines. Records of a superseded input to skip: all but its last.
  // Counted in a first pass, which only runs (and only remembers anything) when some input was done
  // twice.
  std::unordered_map<std::string, uint64_t> skip;
  if (!superseded_.empty()) {
    Result<JournalScan> counted = JobJournal::scan(journal_path, [&](std::string_view payload) {
      if (JobJournal::is_intent(payload)) return;
      std::string input = input_of(payload);
      if (superseded_.count(input) != 0) ++skip[input];
    });
    if (!counted) return counted.error();
    for (auto& [input, n] : skip) --n;
  }
  const std::string tmp = temp_path_for(parent_path(manifest_path), base_name(manifest_path));
  FILE* out = std::fopen(tmp.c_str(), "wxe");
  if (out == nullptr) return errno_error("create manifest " + tmp, errno);
  std::setvbuf(out, nullptr, _IOFBF, 1 << 16);
  bool write_failed = false;
  Result<JournalScan> scanned = JobJournal::scan(journal_path, [&](std::string_view payload) {
    if (JobJournal::is_intent(payload)) return;
    if (!skip.empty()) {
      auto it = skip.find(input_of(payload));
      if (it != skip.end() && it->second > 0) {
        --it->second;
        return;
      }
    }
    if (std::fwrite(payload.data(), 1, payload.size(), out) != payload.size() ||
        std::fputc('\n', out) == EOF) {
      write_failed = true;
    }
  });
  Status st;
  if (!scanned) st = scanned.error();
  if (st && (write_failed || std::fflush(out) != 0))
    st = errno_error("write manifest " + tmp, errno);
  if (st && durable_ && ::fsync(fileno(out)) != 0) st = errno_error("fsync manifest " + tmp, errno);
  std::fclose(out);
  if (st && ::rename(tmp.c_str(), manifest_path.c_str()) != 0) {
    st = errno_error("rename manifest to " + manifest_path, errno);
  }
  if (!st) ::unlink(tmp.c_str());
  return st;
}

}  // namespace docpipe
