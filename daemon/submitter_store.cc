#include "daemon/submitter_store.h"

#include "core/json_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/fs_util.h"
#include "daemon/log.h"
#include "daemon/peer_credentials.h"

namespace docpipe {
namespace {

constexpr std::string_view kSuffix = ".submitter";
// uid, gid and up to kMaxSupplementaryGroups groups fit easily.
constexpr off_t kMaxRecordBytes = 2 << 20;

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() > suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

std::string SubmitterStore::folder() const { return spool_.root() + "/submitters"; }

std::string SubmitterStore::path_of(std::string_view id) const {
  return folder() + "/" + std::string(id) + std::string(kSuffix);
}

bool SubmitterStore::job_exists(std::string_view id) const {
  const std::string name = std::string(id) + ".json";
  return path_exists(spool_.active() + "/" + name) || path_exists(spool_.done() + "/" + name) ||
         path_exists(spool_.failed() + "/" + name);
}

std::string SubmitterStore::encode(const std::optional<Credentials>& submitter) {
  if (!submitter) return nlohmann::json{{"unrestricted", true}}.dump() + "\n";
  return nlohmann::json{
             {"uid", submitter->uid}, {"gid", submitter->gid}, {"groups", submitter->groups}}
             .dump() +
         "\n";
}

std::optional<SubmitterStore::Record> SubmitterStore::decode(std::string_view text) {
  // Records also come from other cluster nodes (a job's record in NATS): bounded nesting first.
  if (json_max_depth(text, kMaxJsonDepth) > static_cast<size_t>(kMaxJsonDepth)) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  if (j.value("unrestricted", false)) return Record{std::nullopt};
  auto id_of = [](const nlohmann::json& v) -> std::optional<uint32_t> {
    if (!v.is_number_unsigned() || v.get<uint64_t>() > UINT32_MAX) return std::nullopt;
    return static_cast<uint32_t>(v.get<uint64_t>());
  };
  auto uid = j.contains("uid") ? id_of(j["uid"]) : std::nullopt;
  auto gid = j.contains("gid") ? id_of(j["gid"]) : std::nullopt;
  if (!uid || !gid || !j.contains("groups") || !j["groups"].is_array()) return std::nullopt;
  Credentials c;
  c.uid = *uid;
  c.gid = *gid;
  for (const auto& g : j["groups"]) {
    auto v = id_of(g);
    if (!v) return std::nullopt;
    c.groups.push_back(*v);
  }
  return Record{std::move(c)};
}

void SubmitterStore::start() const {
  if (::mkdir(folder().c_str(), 0700) != 0 && errno != EEXIST) {
    log_warn("cannot create the submitter records folder",
             {{"dir", folder()}, {"error", strerror(errno)}});
  }
  // submitters/ holds the records a resume trusts; active/, done/, failed/ and rejected/ hold
  // every user's jobs and reports, which `status` shows only to their submitter.
  for (const std::string& dir :
       {folder(), spool_.active(), spool_.done(), spool_.failed(), spool_.rejected()}) {
    struct stat sb;
    if (::stat(dir.c_str(), &sb) != 0 || sb.st_uid != ::geteuid()) continue;
    if ((sb.st_mode & 077) == 0) continue;
    if (::chmod(dir.c_str(), sb.st_mode & 0700) == 0) {
      log_info("spool folder made private to the daemon",
               {{"dir", dir}, {"was", std::to_string(sb.st_mode & 0777)}});
    } else {
      log_warn("cannot make spool folder private", {{"dir", dir}, {"error", strerror(errno)}});
    }
  }
  // A record without its job: a socket submit that crashed between record and admit. Removed
  // before intake starts, so that it can never be taken for a later job of the same id.
  DIR* d = ::opendir(folder().c_str());
  if (d == nullptr) return;
  std::vector<std::string> ids;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name.front() != '.' && ends_with(name, kSuffix)) {
      ids.emplace_back(name.substr(0, name.size() - kSuffix.size()));
    }
  }
  ::closedir(d);
  for (const std::string& id : ids) {
    if (!job_exists(id)) ::unlink(path_of(id).c_str());
  }
}

Status SubmitterStore::write(std::string_view id,
                             const std::optional<Credentials>& submitter) const {
  return write_file_atomic(path_of(id), encode(submitter), durable_);
}

Status SubmitterStore::admit(std::string_view id, std::string_view job_text,
                             const std::optional<Credentials>& submitter) {
  std::lock_guard<std::mutex> lock(mu_);
  // An active or finished job of this id keeps its record: admit() below refuses the newcomer.
  bool recorded = false;
  if (!job_exists(id)) {
    Status st = write(id, submitter);
    if (!st) return st;
    recorded = true;
  }
  bool moved = false;
  Status st = spool_.admit(id, job_text, &moved);
  if (!st && moved) {
    // The job is in active/ (only the folder's fsync failed): it runs, and it must keep its
    // record, or a resume would take the daemon, who wrote its job file, for its submitter.
    log_warn("job admitted, but its folders could not be synced",
             {{"job", std::string(id)}, {"error", st.error().message}});
    return ok();
  }
  if (!st && recorded) ::unlink(path_of(id).c_str());
  return st;
}

std::optional<Credentials> SubmitterStore::adopt_claimed(std::string_view id, uid_t owner_uid) {
  Result<Credentials> who = credentials_for_uid(owner_uid);
  if (!who) {
    // Fewer groups can only mean less access: go on with the uid alone.
    log_warn("cannot look up the groups of a job file's owner; the job gets none",
             {{"job", std::string(id)}, {"error", who.error().message}});
    who = Credentials{owner_uid, static_cast<gid_t>(-1), {}};
  }
  std::optional<Credentials> submitter = submitter_for(*who);
  std::lock_guard<std::mutex> lock(mu_);
  Status st = write(id, submitter);
  if (!st) {
    log_warn("cannot record the submitter of a job; a resume takes the job file's owner",
             {{"job", std::string(id)}, {"error", st.error().message}});
  }
  return submitter;
}

std::optional<SubmitterStore::Record> SubmitterStore::load(const std::string& path) const {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct stat sb;
  std::string text;
  bool trusted = ::fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_uid == ::geteuid() &&
                 (sb.st_mode & 022) == 0 && sb.st_size <= kMaxRecordBytes;
  if (trusted) {
    text.resize(static_cast<size_t>(sb.st_size));
    ssize_t n = ::pread(fd, text.data(), text.size(), 0);
    trusted = n == static_cast<ssize_t>(text.size());
  }
  ::close(fd);
  if (!trusted) {
    log_warn("ignoring a submitter record the daemon did not write", {{"file", path}});
    return std::nullopt;
  }
  std::optional<Record> record = decode(text);
  if (!record) log_warn("ignoring a damaged submitter record", {{"file", path}});
  return record;
}

Result<std::optional<Credentials>> SubmitterStore::load_active(std::string_view id) const {
  if (std::optional<Record> r = load(path_of(id))) return r->submitter;
  // No record: a claimed drop that crashed before its record (the claim keeps the owner), or a
  // job accepted before records existed.
  const std::string job = spool_.active_job(id);
  struct stat sb;
  if (::lstat(job.c_str(), &sb) != 0) return errno_error("stat " + job, errno);
  Result<Credentials> who = credentials_for_uid(sb.st_uid);
  if (!who) who = Credentials{sb.st_uid, static_cast<gid_t>(-1), {}};
  log_warn("job has no submitter record; it acts for the owner of its job file",
           {{"job", std::string(id)}, {"uid", std::to_string(sb.st_uid)}});
  return submitter_for(*who);
}

std::optional<SubmitterStore::Record> SubmitterStore::load_finished(std::string_view id) const {
  if (!path_exists(path_of(id))) return std::nullopt;
  return load(path_of(id));
}

}  // namespace docpipe
