#include "daemon/daemon_job.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/time_util.h"
#include "daemon/log.h"

namespace docpipe {

DaemonJob::DaemonJob(JobSpec spec, uint64_t expected_total, int64_t submitted_at_ms,
                     DaemonMetrics* metrics, std::atomic<uint64_t>* progress,
                     FinishedFn on_finished)
    : spec_(std::move(spec)),
      metrics_(metrics),
      progress_(progress),
      on_finished_(std::move(on_finished)) {
  report_.id = spec_.id;
  report_.input = spec_.input.dir.empty()
                      ? std::to_string(spec_.input.files.size()) + " files"
                      : spec_.input.dir;
  report_.output = spec_.output.dir;
  report_.transforms = spec_.transform_ops;
  report_.submitted_at_ms = submitted_at_ms;
  report_.counts.total = expected_total;
}

DaemonJob::~DaemonJob() {
  if (manifest_ != nullptr) std::fclose(manifest_);
}

Status DaemonJob::open(const std::string& manifest_path) {
  manifest_ = std::fopen(manifest_path.c_str(), "we");
  if (manifest_ == nullptr) return errno_error("open manifest " + manifest_path, errno);
  // Lines are small and many: buffer them; close_manifest() flushes.
  std::setvbuf(manifest_, nullptr, _IOFBF, 1 << 16);
  source_ = make_document_source(spec_);
  return ok();
}

void DaemonJob::mark_started(int64_t unix_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  report_.started_at_ms = unix_ms;
}

std::optional<DocumentRef> DaemonJob::next_document() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_taking_ || source_done_) return std::nullopt;
  }
  // Only the scheduler calls this, never concurrently for one job, so source_ needs no lock.
  std::optional<DocumentRef> doc = source_->next();
  std::lock_guard<std::mutex> lock(mu_);
  if (!doc) {
    source_done_ = true;
    report_.warnings = source_->errors();
    for (const auto& w : report_.warnings) log_warn("input left out", {{"job", spec_.id}, {"problem", w}});
  } else {
    ++taken_;
  }
  return doc;
}

void DaemonJob::document_finished(DocumentOutcome o) {
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
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  text += '\n';

  if (o.state == DocumentState::kFailed) {
    log_warn("document failed", {{"job", spec_.id}, {"input", o.doc.input_path}, {"error", o.error}});
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (o.state != DocumentState::kCancelled && manifest_ != nullptr &&
      std::fwrite(text.data(), 1, text.size(), manifest_) != text.size() &&
      manifest_error_.empty()) {
    manifest_error_ = std::string("manifest write failed: ") + std::strerror(errno);
  }
  JobCounts& c = report_.counts;
  c.bytes_in += o.bytes_in;
  c.bytes_out += o.bytes_out;
  switch (o.state) {
    case DocumentState::kSucceeded: ++c.succeeded; break;
    case DocumentState::kSkipped: ++c.skipped; break;
    case DocumentState::kCancelled: ++c.cancelled; break;
    case DocumentState::kFailed:
      ++c.failed;
      if (report_.failed_documents.size() < JobReport::kMaxFailedListed) {
        report_.failed_documents.push_back({o.doc.input_path, o.error});
      }
      if (static_cast<int64_t>(c.failed) > spec_.limits.max_failed_documents && !stop_taking_) {
        stop_taking_ = true;
        report_.reason = std::to_string(c.failed) + " document(s) failed, more than " +
                         "limits.max_failed_documents (" +
                         std::to_string(spec_.limits.max_failed_documents) +
                         "); remaining documents were not processed";
      }
      break;
  }
}

void DaemonJob::request_cancel(std::string reason) {
  std::lock_guard<std::mutex> lock(mu_);
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
    if (user_cancelled_ || (cancelled && report_.reason.empty())) {
      report_.state = JobState::kCancelled;
      if (report_.reason.empty()) report_.reason = "cancelled";
    } else if (static_cast<int64_t>(c.failed) > spec_.limits.max_failed_documents) {
      report_.state = JobState::kFailed;
    } else {
      report_.state = JobState::kSucceeded;
    }
    report_.finished_at_ms = wall_clock_ms();
  }
  on_finished_(this);
}

Status DaemonJob::close_manifest(bool durable) {
  std::lock_guard<std::mutex> lock(mu_);
  if (manifest_ == nullptr) return ok();
  Status st;
  if (std::fflush(manifest_) != 0) st = errno_error("flush manifest of " + spec_.id, errno);
  if (st && durable && ::fsync(fileno(manifest_)) != 0) {
    st = errno_error("fsync manifest of " + spec_.id, errno);
  }
  std::fclose(manifest_);
  manifest_ = nullptr;
  if (st && !manifest_error_.empty()) return make_error(ErrorCode::kIo, manifest_error_);
  return st;
}

JobReport DaemonJob::report() const {
  std::lock_guard<std::mutex> lock(mu_);
  return report_;
}

}  // namespace docpipe
