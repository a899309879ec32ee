#pragma once
// Taking a job file from incoming/: read, validate, then claim it into active/ or reject it with
// an error file. Blocking file work: runs on the libuv threadpool, never on the loop thread.

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "config/daemon_config.h"
#include "core/job_spec.h"
#include "core/spool.h"

namespace docpipe {

struct ValidatedJob {
  JobSpec spec;
  uint64_t documents = 0;  // matching documents counted at validation
};

// Parses and checks a job's text (both the pure checks and the file-system ones). On failure
// returns nullopt with every problem in `errors`.
std::optional<ValidatedJob> validate_job_text(const std::string& text,
                                              const std::string& default_id,
                                              const std::string& base_dir,
                                              const DaemonConfig& config, FieldErrors& errors);

// The job's JSON with its id and paths pinned to what validation resolved (absolute), so that
// the stored job means the same thing whatever folder it is later read against (resume).
std::string pin_job_text(const std::string& text, const JobSpec& spec);

struct IntakeResult {
  enum class Kind {
    kAccepted,  // claimed into active/; `job` is set
    kRejected,  // moved to rejected/ with NAME.error.json; `errors` says why
    kGone,      // the file vanished before it could be read (taken by someone else)
    kFailed,    // an I/O error left the file where it was; `message` says why
  };
  Kind kind = Kind::kFailed;
  std::string name;
  // The job file's owner (fstat of the file that was read): whom a dropped job acts for.
  uid_t owner_uid;
  gid_t owner_gid;
  std::optional<ValidatedJob> job;
  FieldErrors errors;
  std::string message;
};

IntakeResult take_job_file(const Spool& spool, const std::string& name,
                           const DaemonConfig& config);

// Jobs an earlier run left in active/ (crash or shutdown), to be resumed.
std::vector<std::string> list_active_job_ids(const Spool& spool);

// Re-validates active/ID.json. On failure the caller finishes the job as failed.
IntakeResult load_active_job(const Spool& spool, const std::string& id,
                             const DaemonConfig& config);

}  // namespace docpipe
