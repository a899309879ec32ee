#include "daemon/intake.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "core/fs_util.h"
#include "core/path_util.h"
#include "daemon/log.h"
#include "daemon/peer_credentials.h"

namespace docpipe {

std::optional<ValidatedJob> validate_job_text(
    const std::string& text, const std::string& default_id, const std::string& base_dir,
    const DaemonConfig& config, FieldErrors& errors, const std::optional<Credentials>& submitter,
    bool count_documents, std::optional<Error>* shortage, QuotaCheck* quota, bool daemon_written) {
  TransformEnv env{config.commands, config.allowed_input_roots};
  JobParseOptions options{default_id, base_dir, &env, daemon_written};
  std::optional<JobSpec> spec = parse_job(text, options, errors);
  if (!spec) {
    cap_field_errors(errors);
    return std::nullopt;
  }
  if (quota != nullptr && submitter && quota->quota.max_priority &&
      spec->priority > *quota->quota.max_priority) {
    // Reported with the rest: the submitter learns every problem at once.
    errors.push_back(
        {"priority", priority_over_cap_message(spec->priority, submitter->uid, quota->quota)});
    quota->refused = QuotaRefusal::kPriority;
  }
  if (config.cluster.enabled) {
    // Documents of a cluster job are read on other nodes, whose reads this node cannot vouch
    // for (docs/design.md "What happens to inputs").
    for (const auto& [field, action] :
         {std::pair{"input.after_success", &spec->input.after_success},
          std::pair{"input.after_failure", &spec->input.after_failure}}) {
      if (action->acts()) {
        errors.push_back({field,
                          "not available in cluster mode (this daemon's config has a "
                          "\"cluster\" section): inputs can only be kept"});
      }
    }
  }
  if (config.cluster.enabled && spec->output.if_exists == IfExists::kUnchanged) {
    // Each node's lineage store knows only the documents it wrote (docs/design.md "Redo only
    // what changed"): refused rather than redoing or skipping by a partial record.
    errors.push_back({"output.if_exists",
                      "\"unchanged\" is not available in cluster mode (the lineage store is per "
                      "node); use \"replace\" or \"skip\""});
    cap_field_errors(errors);
    return std::nullopt;
  }
  spec->submitter = submitter;  // checked here already, so a refusal is a clear rejection
  if (spec->notify) {
    check_notify(*spec->notify, config.allowed_webhook_hosts, config.commands, errors);
  }
  size_t n = check_job_inputs(*spec, config.allowed_input_roots, config.allowed_output_roots,
                              errors, count_documents, shortage);
  if (!errors.empty()) {
    cap_field_errors(errors);
    return std::nullopt;
  }
  return ValidatedJob{std::move(*spec), n};
}

std::string quota_precheck(const QuotaLedger& ledger, const std::optional<Credentials>& submitter,
                           QuotaCheck& check) {
  if (!submitter || !check.quota.max_queued_jobs) return {};
  const int64_t counted = ledger.count(submitter->uid);
  if (counted < *check.quota.max_queued_jobs) return {};
  check.refused = QuotaRefusal::kQueuedJobs;
  return queued_jobs_over_cap_message(submitter->uid, counted, check.quota);
}

std::string reserve_quota(QuotaLedger& ledger, const std::string& id,
                          const std::optional<Credentials>& submitter, QuotaCheck& check,
                          bool& id_taken) {
  const uid_t uid = submitter ? submitter->uid : 0;
  int64_t counted = 0;
  switch (ledger.reserve(id, uid, check.quota.max_queued_jobs, &counted)) {
    case QuotaLedger::Reserve::kReserved:
      return {};
    case QuotaLedger::Reserve::kOverCap:
      check.refused = QuotaRefusal::kQueuedJobs;
      return queued_jobs_over_cap_message(uid, counted, check.quota);
    case QuotaLedger::Reserve::kIdTaken:
      break;
  }
  // Another job of this id is queued or running, or being accepted at this moment: the answer
  // the spool gives when the id is in active/ (Spool::admit, Spool::claim).
  id_taken = true;
  return "job id \"" + id + "\" is already active";
}

std::string shortage_message(const Error& shortage) {
  return "the daemon is short of descriptors or memory and cannot check the job's inputs now (" +
         shortage.message + ")";
}

std::string pin_job_text(const std::string& text, const JobSpec& spec) {
  nlohmann::ordered_json doc = nlohmann::ordered_json::parse(text);
  doc["id"] = spec.id;
  if (!spec.input.dir.empty()) doc["input"]["dir"] = spec.input.dir;
  if (!spec.input.files.empty()) doc["input"]["files"] = spec.input.files;
  doc["output"]["dir"] = spec.output.dir;
  return doc.dump(2) + "\n";
}

namespace {

const char* file_type_name(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFLNK:
      return "a symbolic link";
    case S_IFIFO:
      return "a FIFO";
    case S_IFSOCK:
      return "a socket";
    case S_IFCHR:
      return "a character device";
    case S_IFBLK:
      return "a block device";
    case S_IFDIR:
      return "a directory";
    default:
      return "not a regular file";
  }
}

std::string not_regular_reason(const std::string& what) {
  // Nothing of the target or content is quoted: a link may point anywhere outside the spool.
  return "not a regular file (" + what +
         "): docpipe reads only regular job files from incoming/ and never follows links";
}

// `size` < 0: not known in advance (a pipe, or a file that grew while it was read).
std::string too_large_reason(int64_t size, int64_t max_bytes) {
  std::string limit = "max_job_file_bytes (" + std::to_string(max_bytes) + ")";
  if (size < 0) return "job file is larger than " + limit;
  return "job file is " + std::to_string(size) + " bytes, more than " + limit;
}

// Reads what `fd` holds; nullopt once it passes `max_bytes`, so that a file that grows after its
// fstat, or a pipe, never costs more than max_bytes plus one buffer.
Result<std::optional<std::string>> read_bounded(int fd, const std::string& path,
                                                int64_t max_bytes) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("read " + path, errno);
    }
    if (n == 0) return std::optional<std::string>(std::move(out));
    out.append(buf, static_cast<size_t>(n));
    if (static_cast<int64_t>(out.size()) > max_bytes) return std::optional<std::string>();
  }
}

// A job file in a spool folder: its text and owner, or `problem`, a reason to reject the file
// itself (not a regular file, too large) without reading it. An Error is an I/O failure
// (kNotFound: the file is gone).
struct SpoolFile {
  std::string text;
  std::string problem;
  uid_t uid = 0;
  gid_t gid = 0;
};

Result<SpoolFile> read_spool_job_file(const std::string& path, int64_t max_bytes) {
  SpoolFile f;
  // A device is refused from an lstat, never opened: opening one can have side effects (a tape
  // rewinds), and only root can create one here anyway. Everything else is judged by the fstat
  // of the descriptor, so that no swap of the name in between can fool the check.
  struct stat st;
  if (::fstatat(AT_FDCWD, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno_error("stat " + path, errno);
  }
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    f.problem = not_regular_reason(file_type_name(st.st_mode));
    return f;
  }
  // O_NOFOLLOW: a symlink fails with ELOOP; O_NONBLOCK: a FIFO opens at once instead of waiting
  // for a writer (which held a pool thread forever); a socket fails with ENXIO.
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err != ELOOP && err != ENXIO) return errno_error("open " + path, err);
    f.problem = not_regular_reason(err == ELOOP ? "a symbolic link" : "a socket");
    return f;
  }
  Result<std::optional<std::string>> text = std::optional<std::string>();
  if (::fstat(fd, &st) != 0) {
    text = errno_error("stat " + path, errno);
  } else if (!S_ISREG(st.st_mode)) {
    f.problem = not_regular_reason(file_type_name(st.st_mode));
  } else if (st.st_size > max_bytes) {
    // Decided from the size alone: a 4 GiB sparse file costs nothing to refuse.
    f.problem = too_large_reason(st.st_size, max_bytes);
  } else {
    f.uid = st.st_uid;
    f.gid = st.st_gid;
    text = read_bounded(fd, path, max_bytes);
    if (text && !*text) f.problem = too_large_reason(-1, max_bytes);
  }
  ::close(fd);
  if (!text) return text.error();
  if (*text) f.text = std::move(**text);
  return f;
}

}  // namespace

Result<std::string> read_job_file(const std::string& path, int64_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error("open " + path, errno);
  struct stat st;
  Result<std::optional<std::string>> text = std::optional<std::string>();
  int64_t size = -1;
  if (::fstat(fd, &st) != 0) {
    text = errno_error("stat " + path, errno);
  } else if (S_ISREG(st.st_mode) && st.st_size > max_bytes) {
    size = st.st_size;
  } else {
    text = read_bounded(fd, path, max_bytes);
  }
  ::close(fd);
  if (!text) return text.error();
  if (!*text) return make_error(ErrorCode::kTooLarge, too_large_reason(size, max_bytes));
  return std::move(**text);
}

Status check_job_file_size(const std::string& path, int64_t max_bytes) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > max_bytes) {
    return make_error(ErrorCode::kTooLarge, too_large_reason(st.st_size, max_bytes));
  }
  return ok();
}

IntakeResult take_job_file(const Spool& spool, const std::string& name, const DaemonConfig& config,
                           QuotaLedger* quotas) {
  IntakeResult r;
  r.name = name;
  Result<SpoolFile> file =
      read_spool_job_file(spool.incoming() + "/" + name, config.max_job_file_bytes);
  if (!file) {
    r.kind = file.error().code == ErrorCode::kNotFound ? IntakeResult::Kind::kGone
                                                       : IntakeResult::Kind::kFailed;
    r.message = file.error().message;
    return r;
  }
  r.owner_uid = file->uid;
  r.owner_gid = file->gid;
  std::optional<ValidatedJob> job;
  if (file->problem.empty()) {
    // A dropped job acts for its file's owner: check their rights at validation already (the
    // daemon records the same credentials once the job is claimed).
    Result<Credentials> owner = credentials_for_uid(file->uid);
    if (!owner && is_resource_shortage(owner.error().sys_errno)) {
      // Without the owner's groups the job would be judged with too few rights: try again.
      r.kind = IntakeResult::Kind::kFailed;
      r.message = shortage_message(owner.error());
      return r;
    }
    std::optional<Credentials> submitter =
        owner ? submitter_for(*owner)
              : submitter_for(Credentials{file->uid, static_cast<gid_t>(-1), {}});
    QuotaCheck quota{resolve_quota(config.quotas, submitter)};
    if (std::string over = quotas ? quota_precheck(*quotas, submitter, quota) : std::string();
        !over.empty()) {
      // Over the owner's cap: rejected unread by validation (its inputs are not walked).
      r.errors.push_back({"", over});
    } else {
      std::optional<Error> shortage;
      job = validate_job_text(file->text, job_file_stem(name), spool.incoming(), config, r.errors,
                              submitter, /*count_documents=*/true, &shortage, &quota);
      if (shortage) {
        // Left in incoming/, taken again at the next rescan.
        r.kind = IntakeResult::Kind::kFailed;
        r.message = shortage_message(*shortage);
        return r;
      }
    }
    if (job && quotas) {
      // Counted before the claim, so that concurrent takes cannot all pass the cap.
      bool id_taken = false;
      std::string refused = reserve_quota(*quotas, job->spec.id, submitter, quota, id_taken);
      if (!refused.empty()) {
        r.errors.push_back({id_taken ? "id" : "", refused});
        job.reset();
      }
    }
    r.quota_refused = quota.refused;
  } else {
    // Recorded once in rejected/ (the name itself moves there), never read, never retried.
    r.errors.push_back({"", file->problem});
  }
  if (job) {
    bool moved = false;
    Status claimed = spool.claim(name, job->spec.id, &moved);
    if (!claimed && moved) {
      // In active/ all the same: the job runs. Only the folder's fsync failed, so an OS crash
      // could undo the rename, which puts the file back in incoming/ to be taken again.
      log_warn("job claimed, but its folders could not be synced",
               {{"file", name}, {"job", job->spec.id}, {"error", claimed.error().message}});
      claimed = ok();
    }
    if (claimed) {
      r.kind = IntakeResult::Kind::kAccepted;
      r.job = std::move(job);
      return r;
    }
    if (quotas) quotas->release(job->spec.id);  // not accepted: no longer counted
    if (claimed.error().code == ErrorCode::kNotFound) {
      r.kind = IntakeResult::Kind::kGone;
      return r;
    }
    if (claimed.error().code != ErrorCode::kExists) {
      r.kind = IntakeResult::Kind::kFailed;
      r.message = claimed.error().message;
      return r;
    }
    r.errors.push_back({"id", claimed.error().message});
  }
  Status rejected = spool.reject(name, r.errors);
  if (!rejected) {
    r.kind = IntakeResult::Kind::kFailed;
    r.message = rejected.error().message;
    return r;
  }
  r.kind = IntakeResult::Kind::kRejected;
  return r;
}

std::vector<std::string> list_active_job_ids(const Spool& spool) {
  std::vector<std::string> ids;
  DIR* d = ::opendir(spool.active().c_str());
  if (d == nullptr) return ids;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    // active/ holds ID.json and ID.manifest.jsonl (and temp files starting with '.').
    if (Spool::is_job_file_name(name)) ids.push_back(job_file_stem(name));
  }
  ::closedir(d);
  std::sort(ids.begin(), ids.end());
  return ids;
}

IntakeResult load_active_job(const Spool& spool, const std::string& id,
                             const DaemonConfig& config) {
  IntakeResult r;
  r.name = id + ".json";
  // The same refusals as intake, so that a file swapped or grown in active/ cannot crash every
  // restart. The bound is looser than max_job_file_bytes: the daemon wrote this file itself,
  // pretty-printed and with absolute paths, from a job file or a control request (up to 4 MiB).
  const int64_t bound = std::max<int64_t>(config.max_job_file_bytes, kMaxActiveJobFileBytes);
  Result<SpoolFile> file = read_spool_job_file(spool.active_job(id), bound);
  if (!file) {
    r.kind = IntakeResult::Kind::kFailed;
    r.message = file.error().message;
    return r;
  }
  if (!file->problem.empty()) {
    r.kind = IntakeResult::Kind::kRejected;
    r.errors.push_back({"", file->problem});
    return r;
  }
  r.owner_uid = file->uid;
  r.owner_gid = file->gid;
  std::optional<Error> shortage;
  // The fields only `docpipe retry` writes are honoured in a file the daemon wrote itself (a
  // socket submit, a retry): a claimed drop stays its producer's, who could have edited it since
  // it was checked.
  const bool daemon_written = file->uid == ::geteuid();
  std::optional<ValidatedJob> job =
      validate_job_text(file->text, id, spool.incoming(), config, r.errors, std::nullopt, true,
                        &shortage, nullptr, daemon_written);
  if (shortage) {
    r.kind = IntakeResult::Kind::kFailed;  // resumed later, not ended as unresumable
    r.message = shortage_message(*shortage);
    return r;
  }
  if (!job) {
    r.kind = IntakeResult::Kind::kRejected;
    return r;
  }
  // The spool file name is the job's identity (its journal, its report): an id edited inside
  // the file must not start the job over under another name at every restart.
  if (job->spec.id != id) {
    log_warn("the id inside an active job file differs from its file name; using the file name",
             {{"job", id}, {"file", spool.active_job(id)}, {"id_in_file", job->spec.id}});
    job->spec.id = id;
  }
  r.kind = IntakeResult::Kind::kAccepted;
  r.job = std::move(job);
  return r;
}

}  // namespace docpipe
