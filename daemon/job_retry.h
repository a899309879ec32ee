#pragma once
// `docpipe retry JOB_ID` (docs/design.md "Retry"): a new job of the documents a finished job did
// not finish well (failed, or cancelled before they ran), with the same chain, output and
// options, linked to the original in both reports ("retry_of" in the new one, "retried_by" in
// the original's).
//
// Cancelled documents are never journalled, so the manifest alone cannot name them: the retry
// walks the original's input again, exactly as the original did (same globs, same confinement,
// the same submitter's rights), and keeps every document the original's manifest does not record
// as succeeded or skipped. The result is pinned in the new job's file: input.only (input.dir
// jobs: the exact relative paths, so outputs land where the original would have put them) or
// input.files (a subset of the original's files).
//
// Blocking file work: call these off the loop thread.

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "config/daemon_config.h"
#include "core/credentials.h"
#include "core/result.h"
#include "core/spool.h"
#include "daemon/finished_reports.h"

namespace docpipe {

// What a finished job left in done/ or failed/.
struct FinishedJob {
  std::string id;
  std::string job_text;       // ID.json: the job as submitted, pinned
  std::string manifest_path;  // ID.manifest.jsonl
  nlohmann::json report;      // ID.report.json (an object)
};

// kNotFound when `id` is in neither folder; another error when its files cannot be read.
Result<FinishedJob> load_finished_job(const Spool& spool, const std::string& id);

// The newest job the report names in "retried_by", or "".
std::string latest_retry(const nlohmann::json& report);

// The id a retry of `id` gets: "ID-retry-1", or "BASE-retry-N+1" when `id` is "BASE-retry-N";
// the next number while `taken` says an id is used. "" when no such id is a valid job id (too
// long).
std::string next_retry_id(const std::string& id,
                          const std::function<bool(const std::string&)>& taken);

struct RetryDraft {
  std::string text;        // the new job's file
  uint64_t documents = 0;  // in it
  uint64_t failed = 0;     // of them, documents the original failed
  uint64_t cancelled = 0;  // of them, documents the original never finished
  uint64_t gone = 0;       // failed documents that the walk no longer finds (moved, deleted)
};

// Builds the retry of `original` as job `new_id`: validates the original's job against `config`
// as `submitter` would now, walks its inputs and keeps those not done (see above). Fails with a
// message for the operator: the job no longer validates, the walk failed, the manifest is
// unreadable, nothing is left to retry, or the list would not fit in a job file.
Result<RetryDraft> draft_retry(const FinishedJob& original, const std::string& new_id,
                               const DaemonConfig& config,
                               const std::optional<Credentials>& submitter);

// Adds `retry_id` to the "retried_by" list of `original_id`'s report, once. kNotFound when the
// original is no longer in the spool (pruned).
Status link_retry(FinishedReports& reports, const std::string& original_id,
                  const std::string& retry_id);

}  // namespace docpipe
