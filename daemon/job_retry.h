#pragma once
// `docpipe retry JOB_ID` (docs/design.md "Retry"): a new job of the documents a finished job did
// not finish well (failed, or cancelled before they ran), with the same chain, output and
// options, linked to the original in both reports ("retry_of" in the new one, "retried_by" in
// the original's).
//
// Cancelled documents are never journalled, so the manifest alone cannot name them: the retry
// walks the original's input again, exactly as the original did (same globs, same confinement,
// the same submitter's rights), and keeps every document the original's manifest records as
// failed, and, when the original did not finish every document it matched (cancelled, stopped
// early), every document the manifest does not name at all. Documents are told apart by their
// output path (input.dir jobs: a symlink and its target are two documents) or their input path
// (input.files jobs), as the manifest records them. The result is pinned in the new job's file:
// input.only (input.dir jobs: the exact relative paths, so outputs land where the original would
// have put them) or input.files (a subset of the original's files).
//
// Blocking file work: call these off the loop thread.

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

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
  // Opened with the rest, so that retention removing it meanwhile cannot make the retry take
  // it for "no document finished"; null when the job has none.
  std::shared_ptr<std::FILE> manifest;
  nlohmann::json report;  // ID.report.json (an object)
};

// kNotFound when `id` is in neither folder; another error when its files cannot be read.
Result<FinishedJob> load_finished_job(const Spool& spool, const std::string& id);

// The newest job the report names in "retried_by", or "".
std::string latest_retry(const nlohmann::json& report);
// Whether the report names `id` in "retried_by".
bool named_as_retry(const nlohmann::json& report, const std::string& id);

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
  // Failed documents the walk does not find now (moved, deleted, or unreadable: see warnings).
  uint64_t gone = 0;
  // Documents the walk finds that the original never knew of, left out: it finished every
  // document it matched, so these came since.
  uint64_t new_since = 0;
  std::vector<std::string> warnings;  // what the walk left out, and names a job cannot hold
};

// Builds the retry of `original` as job `new_id`: validates the original's job against `config`
// as `submitter` would now, walks its inputs and keeps those not done (see above). Fails with a
// message for the operator: the job no longer validates, the walk failed, the manifest is
// unreadable, nothing is left to retry, or the list would not fit in a job file.
Result<RetryDraft> draft_retry(const FinishedJob& original, const std::string& new_id,
                               const DaemonConfig& config,
                               const std::optional<Credentials>& submitter);

// Adds `retry_id` to the "retried_by" list of `original_id`'s report, once, unless that report
// is of a job that finished after `retry_submitted_at` (format_utc): its id was reused by a later
// job once the original was pruned. kNotFound when the original is no longer in the spool.
Status link_retry(FinishedReports& reports, const std::string& original_id,
                  const std::string& retry_id, const std::string& retry_submitted_at);

// The credentials a retry acts with: `recorded`'s uid, with only the groups it had then that
// the user database still gives it now (`current`, credentials_for_uid), so that a retry never
// has a group its submitter has lost since, nor one it did not have then.
Credentials retry_credentials(const Credentials& recorded, const Credentials& current);

}  // namespace docpipe
