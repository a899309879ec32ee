#pragma once
// Taking a job file from incoming/: read, validate, then claim it into active/ or reject it with
// an error file. Blocking file work: runs on the libuv threadpool, never on the loop thread.
//
// incoming/ is written by producers, so a name there is not trusted to be a regular file: it is
// opened with O_NOFOLLOW | O_NONBLOCK (a symlink is never followed, a FIFO cannot block a pool
// thread), the descriptor is fstat'ed, and only a regular file of at most max_job_file_bytes is
// read, through that same descriptor. Anything else is recorded once in rejected/ with a reason.

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "config/daemon_config.h"
#include "core/job_spec.h"
#include "core/spool.h"
#include "daemon/quota_ledger.h"

namespace docpipe {

// A job file the daemon wrote itself (active/, done/, failed/: pinned texts, retries) is read up
// to this size, looser than max_job_file_bytes.
inline constexpr int64_t kMaxActiveJobFileBytes = int64_t{64} << 20;

struct ValidatedJob {
  JobSpec spec;
  uint64_t documents = 0;  // matching documents counted at validation
};

// Parses and checks a job's text (both the pure checks and the file-system ones). On failure
// returns nullopt with the problems in `errors`, capped at kMaxReportedFieldErrors plus one entry
// counting the rest.
// With `submitter`, its rights to read the inputs and write the output are checked too.
// `shortage`: as check_job_inputs says; set, the failure is the daemon's (out of descriptors or
// memory), and the job is to be tried again, not rejected.
// `quota` (new jobs only: a submit or a dropped file, never a resume): a priority above its
// max_priority is an error on "priority", and `quota->refused` says so.
// `daemon_written`: the text is the daemon's own (a job in active/, a retry it built): the
// fields only `docpipe retry` writes ("retry_of", "input.only") are allowed.
struct QuotaCheck {
  ResolvedQuota quota;
  QuotaRefusal refused = QuotaRefusal::kNone;
};
std::optional<ValidatedJob> validate_job_text(
    const std::string& text, const std::string& default_id, const std::string& base_dir,
    const DaemonConfig& config, FieldErrors& errors,
    const std::optional<Credentials>& submitter = std::nullopt, bool count_documents = true,
    std::optional<Error>* shortage = nullptr, QuotaCheck* quota = nullptr,
    bool daemon_written = false);

// The quota of a new job of `submitter` (nullopt: root) before it is validated: a submitter who
// has max_queued_jobs counted already is refused at once, without the cost of walking the
// job's inputs. Returns the refusal's text, or "" (go on; reserve_quota decides for good).
std::string quota_precheck(const QuotaLedger& ledger, const std::optional<Credentials>& submitter,
                           QuotaCheck& check);

// Counts the valid job `id` of `submitter` in `ledger` before its file is written to active/.
// "" if counted (the caller releases it if the job is not accepted after all); else why not,
// with `check.refused` set for a cap, and `id_taken` set for an id that is counted already.
std::string reserve_quota(QuotaLedger& ledger, const std::string& id,
                          const std::optional<Credentials>& submitter, QuotaCheck& check,
                          bool& id_taken);

// Why a validation was cut short by `shortage`, for a log line or a reply.
std::string shortage_message(const Error& shortage);

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
  std::optional<ValidatedJob> job;
  FieldErrors errors;
  std::string message;
  // The job file's owner, from the fstat of the descriptor it was read through (set once the
  // file was opened): who dropped the job.
  // Whom a dropped job acts for. -1 (nobody) until the file was read: never root by default.
  uid_t owner_uid = static_cast<uid_t>(-1);
  gid_t owner_gid = static_cast<gid_t>(-1);
  // Rejected for the owner's quota (kRejected); an accepted job is counted in the ledger.
  QuotaRefusal quota_refused = QuotaRefusal::kNone;
};

// Reads a job file named by a user on the command line (`docpipe validate`, `docpipe submit`):
// symlinks are followed (the user chose the path), but at most `max_bytes` are read. A regular
// file is refused by its size before reading, anything else (a pipe) once it passes the limit.
// The kTooLarge message is the bare reason; callers name the file.
Result<std::string> read_job_file(const std::string& path, int64_t max_bytes);

// The same size refusal from a stat alone (kTooLarge, bare reason), for a caller that reads the
// file later; ok for anything but a regular file over `max_bytes`, including a missing file.
Status check_job_file_size(const std::string& path, int64_t max_bytes);

// A job whose priority is above its owner's max_priority (config.quotas) is rejected with the
// reason. With `quotas`, so is one whose owner has max_queued_jobs counted already, and an
// accepted job is counted in `quotas` before it is claimed (docs/design.md "Quotas per
// submitter").
IntakeResult take_job_file(const Spool& spool, const std::string& name, const DaemonConfig& config,
                           QuotaLedger* quotas = nullptr);

// Jobs an earlier run left in active/ (crash or shutdown), to be resumed.
std::vector<std::string> list_active_job_ids(const Spool& spool);

// Re-validates active/ID.json. On failure the caller finishes the job as failed.
IntakeResult load_active_job(const Spool& spool, const std::string& id, const DaemonConfig& config);

}  // namespace docpipe
