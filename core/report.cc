#include "core/report.h"

#include <nlohmann/json.hpp>

#include "core/time_util.h"

namespace docpipe {

const char* job_state_name(JobState s) {
  switch (s) {
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    case JobState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

std::string report_to_json(const JobReport& r) {
  nlohmann::ordered_json j;
  j["id"] = r.id;
  j["state"] = job_state_name(r.state);
  if (!r.reason.empty()) j["reason"] = r.reason;
  j["input"] = r.input;
  j["output"] = r.output;
  j["transforms"] = r.transforms;
  if (!r.retry_of.empty()) j["retry_of"] = r.retry_of;
  if (!r.retried_by.empty()) j["retried_by"] = r.retried_by;
  if (!r.all_documents_seen) j["all_documents_seen"] = false;
  j["submitted_at"] = format_utc(r.submitted_at_ms);
  j["started_at"] = format_utc(r.started_at_ms ? r.started_at_ms : r.submitted_at_ms);
  j["finished_at"] = format_utc(r.finished_at_ms);
  int64_t start = r.started_at_ms ? r.started_at_ms : r.submitted_at_ms;
  j["duration_seconds"] = static_cast<double>(r.finished_at_ms - start) / 1000.0;
  j["counts"] = {{"total", r.counts.total},
                 {"succeeded", r.counts.succeeded},
                 {"failed", r.counts.failed},
                 {"skipped", r.counts.skipped},
                 {"cancelled", r.counts.cancelled}};
  j["bytes"] = {{"in", r.counts.bytes_in}, {"out", r.counts.bytes_out}};
  nlohmann::ordered_json failed = nlohmann::ordered_json::array();
  for (const auto& f : r.failed_documents) {
    failed.push_back({{"input", f.input}, {"error", f.error}});
  }
  j["failed_documents"] = std::move(failed);
  j["failed_documents_truncated"] = r.counts.failed > r.failed_documents.size();
  if (!r.warnings.empty()) j["warnings"] = r.warnings;
  if (r.input_actions.used) {
    nlohmann::ordered_json failures = nlohmann::ordered_json::array();
    for (const auto& f : r.input_actions.failures) {
      failures.push_back({{"input", f.input}, {"error", f.error}});
    }
    j["input_actions"] = {
        {"done", r.input_actions.done},
        {"failed", r.input_actions.failed},
        {"failures", std::move(failures)},
        {"failures_truncated", r.input_actions.failed > r.input_actions.failures.size()}};
  }
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace docpipe
