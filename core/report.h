#pragma once
// The job report (DESIGN.md "Report and manifest"): ID.report.json in done/ or failed/.

#include <cstdint>
#include <string>
#include <vector>

namespace docpipe {

enum class JobState { kSucceeded, kFailed, kCancelled };
const char* job_state_name(JobState s);

struct JobCounts {
  uint64_t total = 0;  // documents the job matched
  uint64_t succeeded = 0;
  uint64_t failed = 0;
  uint64_t skipped = 0;
  uint64_t cancelled = 0;  // matched but not processed because the job stopped early
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
};

struct FailedDocumentEntry {
  std::string input;
  std::string error;
};

// input.after_success / after_failure (core/input_actions.h): what was done to the inputs.
struct InputActionCounts {
  bool used = false;  // the job has an action other than "keep"; reported only then
  uint64_t done = 0;
  uint64_t failed = 0;
  std::vector<FailedDocumentEntry> failures = {};  // at most JobReport::kMaxFailedListed
};

struct JobReport {
  static constexpr size_t kMaxFailedListed = 100;

  std::string id;
  JobState state = JobState::kSucceeded;
  std::string reason;  // why the job failed or was cancelled; empty on success
  std::string input;   // input dir, or "N files"
  std::string output;  // output dir
  std::vector<std::string> transforms;
  int64_t submitted_at_ms = 0;  // when the daemon claimed it
  int64_t started_at_ms = 0;    // when its first document was admitted
  int64_t finished_at_ms = 0;
  JobCounts counts;
  std::vector<FailedDocumentEntry> failed_documents;  // at most kMaxFailedListed
  std::vector<std::string> warnings;  // what the input walk left out (unreadable folders, ...)
  InputActionCounts input_actions;
  // docpipe retry (docs/design.md "Retry"): the job this one retried, and the jobs that retried
  // this one, oldest first (added to a finished report by link_retry, daemon/job_retry.h).
  std::string retry_of;
  std::vector<std::string> retried_by;
  // False when the job may not have met every document it was to do: its walk was cut short,
  // it stopped early or was cancelled, its journal failed, or it could not be resumed.
  // `docpipe retry` then takes a document its manifest does not name as never finished, not as
  // one that came since. Written to the report only when false.
  bool all_documents_seen = true;
};

// Pretty JSON with a trailing newline.
std::string report_to_json(const JobReport& report);

}  // namespace docpipe
