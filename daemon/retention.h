#pragma once
// Retention (issue 14, "Keep the house clean"): finished jobs (done/, failed/) and rejected job
// files (rejected/) are removed once older than the config's max_age_days, or beyond its
// max_jobs (oldest first), so that a spool does not grow forever. docs/design.md "Retention".
//
// prune_folder() is plain blocking file work (the daemon runs it on its executor, never on the
// loop thread), judged against a `now` it is given, so that tests drive it with a fake clock.
//
// A finished job is the files of one id: ID.report.json, ID.manifest.jsonl and ID.json (with
// SPOOL/submitters/ID.submitter, removed along); a rejected one is NAME and NAME.error.json. Its
// age is the mtime of the file the daemon wrote when it ended (the report, the error file), else
// the newest of its files. The marker goes last: ID.json (done/, failed/), which makes the id used
// (Spool::check_not_finished), or NAME.error.json; a crash or a file that cannot be removed
// leaves the marker, and the next pass sees the rest of the group again.

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace docpipe {

struct PruneRule {
  int64_t max_age_ms = 0;  // 0: no age limit
  int64_t max_jobs = 0;    // 0: no count limit
};

enum class SpoolFolder { kDone, kFailed, kRejected };

// The rest of the spool a pass of done/ or failed/ must respect ("" : none).
struct PruneContext {
  std::string active;      // a group without its marker whose ID.json is here is being finished
  std::string submitters;  // ID.submitter goes with its finished job, before the marker
  // A finished job whose completion notification is pending (ID.json here) is kept: its report
  // is still being rewritten and its id must stay used (daemon/notifier.h).
  std::string notify;
  const std::atomic<bool>* stop = nullptr;  // set: the pass ends after the current job
  // Held from the check that a job's files are unchanged through their removal, so that a report
  // rewritten meanwhile (FinishedReports::lock) keeps its job for this pass; null: none.
  std::mutex* group_lock = nullptr;
  size_t max_removals = 10000;  // jobs removed per pass, at most
};

struct PruneResult {
  uint64_t jobs_removed = 0;
  uint64_t files_removed = 0;
  uint64_t bytes_removed = 0;
  uint64_t files_left = 0;  // entries left in the folder (not counting temp files and folders)
  uint64_t bytes_left = 0;
  bool more = false;                // stopped or capped with jobs still to remove: run again soon
  std::vector<std::string> errors;  // "remove PATH: reason", at most kMaxPruneErrors
  uint64_t errors_dropped = 0;      // beyond kMaxPruneErrors
};

inline constexpr size_t kMaxPruneErrors = 10;

// Removes from `dir` the jobs `rule` no longer keeps, as of `now_ms` (wall clock). Folders, temp
// files (".NAME...") and names of no job are never touched; neither is a group whose files
// changed since they were listed (a job finished or rejected again under the same name).
PruneResult prune_folder(const std::string& dir, SpoolFolder kind, const PruneRule& rule,
                         int64_t now_ms, const PruneContext& context = {});

// Files (entries that are not folders) and their bytes in `dir`, for docpipe_spool_files and
// docpipe_spool_bytes; nullopt if it cannot be listed.
struct FolderUsage {
  uint64_t files = 0;
  uint64_t bytes = 0;
};
std::optional<FolderUsage> folder_usage(const std::string& dir);

}  // namespace docpipe
