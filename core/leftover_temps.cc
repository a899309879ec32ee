#include "core/leftover_temps.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "core/fs_util.h"
#include "core/path_util.h"
#include "core/safe_fs.h"

namespace docpipe {

LeftoverTemps& LeftoverTemps::global() {
  static LeftoverTemps instance;
  return instance;
}

void LeftoverTemps::set_store(std::string path) {
  std::lock_guard<std::mutex> lock(mu_);
  store_ = std::move(path);
  if (store_.empty()) return;
  Result<std::string> text = read_file(store_);
  if (!text) return;
  nlohmann::json doc = nlohmann::json::parse(*text, nullptr, false);
  if (!doc.is_array()) return;
  for (const nlohmann::json& e : doc) {
    if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_string()) continue;
    Entry entry{e[0].get<std::string>(), e[1].get<std::string>()};
    if (!is_docpipe_temp_name(entry.name) || !is_absolute_path(entry.folder)) continue;
    if (std::find(entries_.begin(), entries_.end(), entry) == entries_.end()) {
      entries_.push_back(std::move(entry));
    }
  }
}

void LeftoverTemps::add(const std::string& folder, const std::string& name) {
  if (!is_docpipe_temp_name(name) || !is_absolute_path(folder)) return;
  std::lock_guard<std::mutex> lock(mu_);
  Entry entry{folder, name};
  if (std::find(entries_.begin(), entries_.end(), entry) != entries_.end()) return;
  entries_.push_back(std::move(entry));
  save_locked();
}

size_t LeftoverTemps::retry() {
  std::lock_guard<std::mutex> lock(mu_);
  if (entries_.empty()) return 0;
  Result<DirFd> root = open_dir_path("/");
  if (!root) return 0;
  size_t removed = 0;
  const size_t before = entries_.size();
  std::erase_if(entries_, [&](const Entry& e) {
    // The folder as it was, never through a symlink: a folder swapped since is not ours.
    WalkOptions opts;
    opts.verb = "remove";
    Result<DirFd> dir = walk_dirs_beneath(*root, std::string_view(e.folder).substr(1), opts);
    if (!dir) {
      // Gone, or no longer a folder of ours (a symlink now): forget it. Anything else: later.
      const Error& err = dir.error();
      return err.code == ErrorCode::kNotFound ||
             (err.code == ErrorCode::kPermission && err.sys_errno == 0);
    }
    if (::unlinkat(dir->fd(), e.name.c_str(), 0) == 0) {
      ++removed;
      return true;
    }
    return errno == ENOENT;
  });
  if (entries_.size() != before) save_locked();
  return removed;
}

size_t LeftoverTemps::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

void LeftoverTemps::save_locked() {
  if (store_.empty()) return;
  if (entries_.empty()) {
    ::unlink(store_.c_str());
    return;
  }
  nlohmann::json doc = nlohmann::json::array();
  for (const Entry& e : entries_) doc.push_back({e.folder, e.name});
  // Best effort: a lost list only means a leftover stays until someone removes it by hand.
  (void)write_file_atomic(store_,
                          doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), true);
}

}  // namespace docpipe
