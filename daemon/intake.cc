#include "daemon/intake.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/fs_util.h"
#include "core/path_util.h"

namespace docpipe {

std::optional<ValidatedJob> validate_job_text(const std::string& text,
                                              const std::string& default_id,
                                              const std::string& base_dir,
                                              const DaemonConfig& config, FieldErrors& errors) {
  TransformEnv env{config.commands, config.allowed_input_roots};
  JobParseOptions options{default_id, base_dir, &env};
  std::optional<JobSpec> spec = parse_job(text, options, errors);
  if (!spec) return std::nullopt;
  size_t n =
      check_job_inputs(*spec, config.allowed_input_roots, config.allowed_output_roots, errors);
  if (!errors.empty()) return std::nullopt;
  return ValidatedJob{std::move(*spec), n};
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

// The owner comes from the very file that is read (one open, one fstat), never from a symlink's
// target: a job acts for whoever owns its file.
Result<std::string> read_job_file(const std::string& path, uid_t& owner_uid, gid_t& owner_gid) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return errno_error("open " + path, errno);
  struct stat sb;
  int err = ::fstat(fd, &sb) != 0 ? errno : (S_ISREG(sb.st_mode) ? 0 : EINVAL);
  std::string text;
  char buf[65536];
  while (err == 0) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      text.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      err = errno;
    }
  }
  ::close(fd);
  if (err != 0) return errno_error("read " + path, err);
  owner_uid = sb.st_uid;
  owner_gid = sb.st_gid;
  return text;
}

}  // namespace

IntakeResult take_job_file(const Spool& spool, const std::string& name,
                           const DaemonConfig& config) {
  IntakeResult r;
  r.name = name;
  r.owner_uid = static_cast<uid_t>(-1);
  r.owner_gid = static_cast<gid_t>(-1);
  Result<std::string> text = read_job_file(spool.incoming() + "/" + name, r.owner_uid, r.owner_gid);
  if (!text) {
    r.kind = text.error().code == ErrorCode::kNotFound ? IntakeResult::Kind::kGone
                                                       : IntakeResult::Kind::kFailed;
    r.message = text.error().message;
    return r;
  }
  std::optional<ValidatedJob> job =
      validate_job_text(*text, job_file_stem(name), spool.incoming(), config, r.errors);
  if (job) {
    Status claimed = spool.claim(name, job->spec.id);
    if (claimed) {
      r.kind = IntakeResult::Kind::kAccepted;
      r.job = std::move(job);
      return r;
    }
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
  Result<std::string> text = read_file(spool.active_job(id));
  if (!text) {
    r.kind = IntakeResult::Kind::kFailed;
    r.message = text.error().message;
    return r;
  }
  std::optional<ValidatedJob> job =
      validate_job_text(*text, id, spool.incoming(), config, r.errors);
  if (!job) {
    r.kind = IntakeResult::Kind::kRejected;
    return r;
  }
  r.kind = IntakeResult::Kind::kAccepted;
  r.job = std::move(job);
  return r;
}

}  // namespace docpipe
