#include "core/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/fs_util.h"
#include "core/time_util.h"

namespace docpipe {

Spool::Spool(std::string root, bool durable) : root_(std::move(root)), durable_(durable) {}

Status Spool::create_layout() const {
  for (const std::string& dir : {incoming(), active(), done(), failed(), rejected()}) {
    Status st = make_dirs(dir);
    if (!st) return st;
  }
  return ok();
}

std::string Spool::active_job(std::string_view id) const {
  return active() + "/" + std::string(id) + ".json";
}

std::string Spool::active_manifest(std::string_view id) const {
  return active() + "/" + std::string(id) + ".manifest.jsonl";
}

std::string Spool::active_journal(std::string_view id) const {
  return active() + "/" + std::string(id) + ".journal";
}

void Spool::remove_stale_temp_files() const {
  // incoming/ belongs to producers (and a `docpipe submit` may be writing there now): left alone.
  for (const std::string& dir : {active(), done(), failed(), rejected()}) {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) continue;
    while (struct dirent* e = ::readdir(d)) {
      std::string_view name = e->d_name;
      if (is_docpipe_temp_name(name)) ::unlinkat(dirfd(d), e->d_name, 0);
    }
    ::closedir(d);
  }
  // A crash between moving a finished job out of active/ and removing its journal leaves the
  // journal (or an unmoved manifest) without its job: nothing will ever read it again.
  DIR* d = ::opendir(active().c_str());
  if (d == nullptr) return;
  std::vector<std::string> orphans;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    for (std::string_view suffix :
         {std::string_view(".journal"), std::string_view(".manifest.jsonl")}) {
      if (name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix) {
        std::string id(name.substr(0, name.size() - suffix.size()));
        if (!path_exists(active_job(id))) orphans.emplace_back(name);
      }
    }
  }
  ::closedir(d);
  for (const std::string& name : orphans) ::unlink((active() + "/" + name).c_str());
}

bool Spool::is_job_file_name(std::string_view name) {
  return name.size() > 5 && name.front() != '.' && name.substr(name.size() - 5) == ".json";
}

Status Spool::check_not_finished(std::string_view id) const {
  std::string ids(id);
  for (const std::string& dir : {done(), failed()}) {
    if (path_exists(dir + "/" + ids + ".json")) {
      return make_error(ErrorCode::kExists, "job id \"" + ids + "\" was already run (see " + dir +
                                                "/" + ids + ".report.json); choose a new id");
    }
  }
  return ok();
}

Status Spool::admit(std::string_view id, std::string_view job_text, bool* moved) const {
  Status st = check_not_finished(id);
  if (!st) return st;
  // Write it under a temp name that the resume scan ignores, then move it into place.
  const std::string tmp = temp_path_for(active(), std::string(id) + ".json");
  st = write_new_file(tmp, job_text, durable_);
  if (!st) return st;
  bool in_active = false;
  st = move_into_active(tmp, id, active(), &in_active);
  if (moved != nullptr) *moved = in_active;
  if (!st && !in_active) ::unlink(tmp.c_str());
  return st;
}

Status Spool::claim(std::string_view incoming_name, std::string_view id, bool* moved) const {
  if (moved != nullptr) *moved = false;
  Status st = check_not_finished(id);
  if (!st) return st;
  return move_into_active(incoming() + "/" + std::string(incoming_name), id, incoming(), moved);
}

Status Spool::move_into_active(const std::string& from, std::string_view id,
                               const std::string& from_dir, bool* moved) const {
  if (moved != nullptr) *moved = false;
  std::string ids(id);
  std::string to = active_job(id);
  // RENAME_NOREPLACE: two jobs with one id never overwrite each other, even racing.
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST) {
      return make_error(ErrorCode::kExists, "job id \"" + ids + "\" is already active");
    }
    return errno_error("claim " + from, errno);
  }
  if (moved != nullptr) *moved = true;
  if (durable_) {
    Status st = fsync_dir(active());
    if (!st) return st;
    if (from_dir != active()) return fsync_dir(from_dir);
  }
  return ok();
}

Status Spool::reject(std::string_view incoming_name, const FieldErrors& errors) const {
  std::string name(incoming_name);
  nlohmann::json doc;
  doc["file"] = name;
  doc["rejected_at"] = format_utc(wall_clock_ms());
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : errors) {
    list.push_back({{"path", e.path}, {"reason", e.reason}, {"message", format_field_error(e)}});
  }
  doc["errors"] = std::move(list);
  std::string error_path = rejected() + "/" + name + ".error.json";
  Status st = write_file_atomic(error_path, doc.dump(2) + "\n", durable_);
  if (!st) return st;
  std::string from = incoming() + "/" + name;
  if (::rename(from.c_str(), (rejected() + "/" + name).c_str()) != 0) {
    return errno_error("move " + from + " to rejected/", errno);
  }
  if (durable_) return fsync_dir(rejected());
  return ok();
}

Status Spool::finish(std::string_view id, bool succeeded, std::string_view report_json) const {
  std::string ids(id);
  std::string dest = succeeded ? done() : failed();
  std::string manifest = active_manifest(id);
  if (::rename(manifest.c_str(), (dest + "/" + ids + ".manifest.jsonl").c_str()) != 0 &&
      errno != ENOENT) {
    return errno_error("move " + manifest, errno);
  }
  Status st = write_file_atomic(dest + "/" + ids + ".report.json", report_json, durable_);
  if (!st) return st;
  std::string job = active_job(id);
  const std::string moved = dest + "/" + ids + ".json";
  // ENOENT with the job already in dest: an earlier attempt got this far (a retry after a
  // failed fsync); finishing goes on from here.
  if (::rename(job.c_str(), moved.c_str()) != 0) {
    int err = errno;
    if (!(err == ENOENT && path_exists(moved))) return errno_error("move " + job, err);
  }
  ::unlink(active_journal(id).c_str());
  if (durable_) {
    st = fsync_dir(dest);
    if (!st) return st;
    return fsync_dir(active());
  }
  return ok();
}

}  // namespace docpipe
