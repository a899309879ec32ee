#include "daemon/retention.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

namespace docpipe {
namespace {

struct Entry {
  std::string name;
  int64_t mtime_ms = 0;
  uint64_t bytes = 0;
};

// One finished or rejected job: its files and its age.
struct Group {
  std::vector<Entry> files;
  int64_t newest_ms = 0;
};

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() > suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The job a name belongs to, or "" for a name of no job.
std::string group_key(const std::string& name, SpoolFolder kind) {
  if (kind == SpoolFolder::kRejected) {
    return ends_with(name, ".error.json") ? name.substr(0, name.size() - 11) : name;
  }
  for (std::string_view suffix : {".report.json", ".manifest.jsonl", ".json"}) {
    if (ends_with(name, suffix)) return name.substr(0, name.size() - suffix.size());
  }
  return "";
}

// The file that marks the group, removed last: ID.json, or NAME.error.json.
bool removed_last(const std::string& name, const std::string& key, SpoolFolder kind) {
  return kind == SpoolFolder::kRejected ? name == key + ".error.json" : name == key + ".json";
}

void add_error(PruneResult& r, const std::string& what, int err) {
  if (r.errors.size() < kMaxPruneErrors) r.errors.push_back(what + ": " + std::strerror(err));
}

// Every entry of `dir` but folders and temp files (names starting with '.'), by lstat.
std::optional<std::vector<Entry>> list_entries(int dirfd, const std::string& dir, PruneResult* r) {
  int fd = ::dup(dirfd);
  DIR* d = fd < 0 ? nullptr : ::fdopendir(fd);
  if (d == nullptr) {
    if (fd >= 0) ::close(fd);
    if (r != nullptr) add_error(*r, "list " + dir, errno);
    return std::nullopt;
  }
  ::rewinddir(d);
  std::vector<Entry> out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    struct stat st;
    if (::fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode)) {
      continue;  // gone meanwhile, or a folder: not ours to remove
    }
    out.push_back({e->d_name,
                   static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000,
                   static_cast<uint64_t>(st.st_size)});
  }
  ::closedir(d);
  return out;
}

}  // namespace

PruneResult prune_folder(const std::string& dir, SpoolFolder kind, const PruneRule& rule,
                         int64_t now_ms) {
  PruneResult r;
  int dirfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dirfd < 0) {
    add_error(r, "open " + dir, errno);
    return r;
  }
  std::optional<std::vector<Entry>> entries = list_entries(dirfd, dir, &r);
  if (!entries) {
    ::close(dirfd);
    return r;
  }
  std::map<std::string, Group> groups;
  for (Entry& e : *entries) {
    std::string key = group_key(e.name, kind);
    if (key.empty()) {
      ++r.files_left;  // a name of no job: counted, never removed
      r.bytes_left += e.bytes;
      continue;
    }
    Group& g = groups[key];
    g.newest_ms = std::max(g.newest_ms, e.mtime_ms);
    g.files.push_back(std::move(e));
  }
  // Oldest first (ties by name, so that a pass is deterministic).
  std::vector<std::pair<std::string, Group*>> order;
  for (auto& [key, g] : groups) order.emplace_back(key, &g);
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.second->newest_ms < b.second->newest_ms;
  });
  const size_t keep_count = rule.max_jobs > 0 ? static_cast<size_t>(rule.max_jobs) : order.size();
  const size_t over_count = order.size() > keep_count ? order.size() - keep_count : 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const auto& [key, g] = order[i];
    const bool too_old = rule.max_age_ms > 0 && now_ms - g->newest_ms > rule.max_age_ms;
    if (!too_old && i >= over_count) {
      for (const Entry& e : g->files) {
        ++r.files_left;
        r.bytes_left += e.bytes;
      }
      continue;
    }
    // The marking file last: a crash part-way leaves a smaller group, removed next time.
    std::stable_partition(g->files.begin(), g->files.end(),
                          [&](const Entry& e) { return !removed_last(e.name, key, kind); });
    bool whole = true;
    for (const Entry& e : g->files) {
      if (::unlinkat(dirfd, e.name.c_str(), 0) != 0 && errno != ENOENT) {
        add_error(r, "remove " + dir + "/" + e.name, errno);
        whole = false;
        ++r.files_left;
        r.bytes_left += e.bytes;
        continue;
      }
      ++r.files_removed;
      r.bytes_removed += e.bytes;
    }
    if (whole) ++r.jobs_removed;
  }
  // Not fsynced: a removal an OS crash undoes is done again at the next pass.
  ::close(dirfd);
  return r;
}

std::optional<FolderUsage> folder_usage(const std::string& dir) {
  int dirfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dirfd < 0) return std::nullopt;
  std::optional<std::vector<Entry>> entries = list_entries(dirfd, dir, nullptr);
  ::close(dirfd);
  if (!entries) return std::nullopt;
  FolderUsage u;
  for (const Entry& e : *entries) {
    ++u.files;
    u.bytes += e.bytes;
  }
  return u;
}

}  // namespace docpipe
