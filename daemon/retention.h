#pragma once
// Retention (issue 14, "Keep the house clean"): finished jobs (done/, failed/) and rejected job
// files (rejected/) are removed once older than the config's max_age_days, or beyond its
// max_jobs (oldest first), so that a spool does not grow forever. docs/design.md "Retention".
//
// prune_folder() is plain blocking file work (the daemon runs it on its executor, never on the
// loop thread), judged against a `now` it is given, so that tests drive it with a fake clock.
//
// A finished job is the files of one id: ID.report.json, ID.manifest.jsonl and ID.json; a
// rejected one is NAME and NAME.error.json. Its age is the newest mtime of its files (the report
// or the error file is written when it ends). The job file (done/, failed/) and the error file
// (rejected/) are removed last, since they mark the id as used (Spool::check_not_finished) and the
// rejection as recorded: a crash in between leaves a smaller group that the next pass removes.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace docpipe {

struct PruneRule {
  int64_t max_age_ms = 0;  // 0: no age limit
  int64_t max_jobs = 0;    // 0: no count limit
};

enum class SpoolFolder { kDone, kFailed, kRejected };

struct PruneResult {
  uint64_t jobs_removed = 0;
  uint64_t files_removed = 0;
  uint64_t bytes_removed = 0;
  uint64_t files_left = 0;  // entries left in the folder (not counting temp files)
  uint64_t bytes_left = 0;
  std::vector<std::string> errors;  // "PATH: reason", at most kMaxPruneErrors
};

inline constexpr size_t kMaxPruneErrors = 10;

// Removes from `dir` the jobs `rule` no longer keeps, as of `now_ms` (wall clock). Folders, temp
// files (".NAME...") and names of no job are never touched.
PruneResult prune_folder(const std::string& dir, SpoolFolder kind, const PruneRule& rule,
                         int64_t now_ms);

// Files (entries that are not folders) and their bytes in `dir`, for docpipe_spool_files and
// docpipe_spool_bytes; nullopt if it cannot be listed.
struct FolderUsage {
  uint64_t files = 0;
  uint64_t bytes = 0;
};
std::optional<FolderUsage> folder_usage(const std::string& dir);

}  // namespace docpipe
