#pragma once
// The spool folders (DESIGN.md "Spool") and the moves between them. Every move is a rename
// within one file system, so a job file is always in exactly one folder, whole.
// Synchronous: call from worker threads, never from the loop thread.

#include <string>
#include <string_view>

#include "core/field_error.h"
#include "core/result.h"

namespace docpipe {

class Spool {
 public:
  Spool(std::string root, bool durable);

  // Creates the spool and its folders if missing.
  Status create_layout() const;

  const std::string& root() const { return root_; }
  std::string incoming() const { return root_ + "/incoming"; }
  std::string active() const { return root_ + "/active"; }
  std::string done() const { return root_ + "/done"; }
  std::string failed() const { return root_ + "/failed"; }
  std::string rejected() const { return root_ + "/rejected"; }

  std::string active_job(std::string_view id) const;       // active/ID.json
  std::string active_manifest(std::string_view id) const;  // active/ID.manifest.jsonl
  std::string active_journal(std::string_view id) const;   // active/ID.journal
  // cluster/ID: the job is coordinated through a cluster (docs/design.md "Several nodes"); its
  // journal is rebuilt from the cluster's outcome stream when it resumes.
  std::string cluster_folder() const { return root_ + "/cluster"; }
  std::string cluster_marker(std::string_view id) const {
    return cluster_folder() + "/" + std::string(id);
  }

  // Removes temp files a crash may have left in the spool (".*.tmp.*", ".*.submitted.*").
  void remove_stale_temp_files() const;

  // True for names the watch folder takes: "*.json" not starting with '.'.
  static bool is_job_file_name(std::string_view name);

  // Claims incoming/NAME as active/ID.json. Never replaces an existing active job
  // (ErrorCode::kExists), and fails with kExists if a finished job with this id is in done/ or
  // failed/, so reports are never overwritten.
  // `moved` (optional) tells whether the job file reached active/: when the rename succeeded but
  // the fsync of the folders after it failed (no descriptors, EIO), the error comes back with
  // *moved true, and the job IS active: the caller must run or resume it, never forget it.
  Status claim(std::string_view incoming_name, std::string_view id, bool* moved = nullptr) const;

  // Writes a job handed over the control socket straight to active/ID.json, with the same
  // refusals as claim() (an active or finished job with this id: kExists) and the same `moved`.
  Status admit(std::string_view id, std::string_view job_text, bool* moved = nullptr) const;

  // Writes rejected/NAME.error.json listing every problem, then moves incoming/NAME to
  // rejected/NAME (replacing an older rejected file of the same name).
  Status reject(std::string_view incoming_name, const FieldErrors& errors) const;

  // Moves a finished job out of active/: manifest, then report (written atomically), then the
  // job file, so a job is either still active or complete in its final folder; then drops the
  // journal. Idempotent: after a failure (a full spool), calling it again completes the move.
  Status finish(std::string_view id, bool succeeded, std::string_view report_json) const;

 private:
  Status check_not_finished(std::string_view id) const;
  Status move_into_active(const std::string& from, std::string_view id, const std::string& from_dir,
                          bool* moved) const;

  std::string root_;
  bool durable_;
};

}  // namespace docpipe
