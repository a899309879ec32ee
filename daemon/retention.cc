#include "daemon/retention.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <unordered_map>

namespace docpipe {
namespace {

struct Entry {
  std::string name;
  int64_t mtime_ms = 0;
  ino_t ino = 0;
  uint64_t bytes = 0;
};

// One finished or rejected job: its files and its age.
struct Group {
  std::string key;
  std::vector<Entry> files;
  int64_t newest_ms = 0;
  std::optional<int64_t> ended_ms;  // the report's or the error file's mtime
  bool has_marker = false;
  int64_t age_ms() const { return ended_ms.value_or(newest_ms); }
};

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() > suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
std::string cut(std::string_view s, std::string_view suffix) {
  return std::string(s.substr(0, s.size() - suffix.size()));
}

int64_t mtime_ms(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
}

void add_error(PruneResult& r, const std::string& what, int err) {
  if (r.errors.size() < kMaxPruneErrors) {
    r.errors.push_back(what + ": " + std::strerror(err));
  } else {
    ++r.errors_dropped;
  }
}

// Every entry of `dir` but folders and temp files (names starting with '.'), by lstat.
std::optional<std::vector<Entry>> list_entries(int dirfd, const std::string& dir, PruneResult* r) {
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR* d = fd < 0 ? nullptr : ::fdopendir(fd);
  if (d == nullptr) {
    if (fd >= 0) ::close(fd);
    if (r != nullptr) add_error(*r, "list " + dir, errno);
    return std::nullopt;
  }
  std::vector<Entry> out;
  for (;;) {
    errno = 0;
    dirent* e = ::readdir(d);
    if (e == nullptr) {
      if (errno != 0) {
        if (r != nullptr) add_error(*r, "list " + dir, errno);
        ::closedir(d);
        return std::nullopt;  // a partial listing could misjudge what is oldest
      }
      break;
    }
    if (e->d_name[0] == '.') continue;
    struct stat st;
    if (::fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode)) {
      continue;  // gone meanwhile, or a folder: not ours to remove
    }
    out.push_back({e->d_name, mtime_ms(st), st.st_ino, static_cast<uint64_t>(st.st_size)});
  }
  ::closedir(d);
  return out;
}

bool exists_in(const std::string& dir, const std::string& name) {
  return !dir.empty() &&
         ::faccessat(AT_FDCWD, (dir + "/" + name).c_str(), F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

// The job `name` belongs to ("" for none), and whether it is the group's marker or the file the
// daemon wrote when the job ended. Ids may hold dots: "S.report.json" is S's report when S's job
// file is listed or in active/ (being finished), else the job file of the id "S.report".
struct Role {
  std::string key;
  bool marker = false;
  bool ended = false;
};
Role role_of(const std::string& name, SpoolFolder kind, const std::set<std::string>& names,
             const std::string& active) {
  if (kind == SpoolFolder::kRejected) {
    // Every rejected name is a job file name ("*.json"), so "X.json.error.json" is X.json's
    // error file, while "x.error.json" itself is a rejected job file.
    if (ends_with(name, ".error.json") && ends_with(cut(name, ".error.json"), ".json")) {
      return {cut(name, ".error.json"), true, true};
    }
    return {name, false, false};
  }
  if (ends_with(name, ".manifest.jsonl")) return {cut(name, ".manifest.jsonl"), false, false};
  if (ends_with(name, ".report.json")) {
    const std::string id = cut(name, ".report.json");
    if (names.count(id + ".json") != 0 || exists_in(active, id + ".json")) {
      return {id, false, true};
    }
  }
  if (ends_with(name, ".json")) return {cut(name, ".json"), true, false};
  return {};
}

// Whether every file of `g` is still the one listed (same inode and mtime).
bool unchanged(int dirfd, const Group& g) {
  for (const Entry& e : g.files) {
    struct stat st;
    if (::fstatat(dirfd, e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return false;
    }
    if (st.st_ino != e.ino || mtime_ms(st) != e.mtime_ms) return false;
  }
  return true;
}

}  // namespace

PruneResult prune_folder(const std::string& dir, SpoolFolder kind, const PruneRule& rule,
                         int64_t now_ms, const PruneContext& context) {
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
  std::set<std::string> names;
  for (const Entry& e : *entries) names.insert(e.name);
  std::unordered_map<std::string, Group> groups;
  auto keep = [&r](const Entry& e) {
    ++r.files_left;
    r.bytes_left += e.bytes;
  };
  for (Entry& e : *entries) {
    const Role role = role_of(e.name, kind, names, context.active);
    if (role.key.empty()) {
      keep(e);  // a name of no job: counted, never removed
      continue;
    }
    Group& g = groups[role.key];
    g.key = role.key;
    g.newest_ms = std::max(g.newest_ms, e.mtime_ms);
    if (role.ended) g.ended_ms = e.mtime_ms;
    g.has_marker = g.has_marker || role.marker;
    g.files.push_back(std::move(e));
  }
  std::vector<Group*> order;
  for (auto& [key, g] : groups) {
    // Done/failed without its job file, the job still in active/: being finished right now.
    if (kind != SpoolFolder::kRejected && !g.has_marker &&
        exists_in(context.active, key + ".json")) {
      for (const Entry& e : g.files) keep(e);
      continue;
    }
    if (kind != SpoolFolder::kRejected && !context.notify.empty() &&
        exists_in(context.notify, key + ".json")) {
      for (const Entry& e : g.files) keep(e);
      continue;
    }
    order.push_back(&g);
  }
  // Oldest first; ties by name, so that a pass is deterministic.
  std::sort(order.begin(), order.end(), [](const Group* a, const Group* b) {
    return a->age_ms() != b->age_ms() ? a->age_ms() < b->age_ms() : a->key < b->key;
  });
  const size_t keep_count = rule.max_jobs > 0 ? static_cast<size_t>(rule.max_jobs) : order.size();
  const size_t over_count = order.size() > keep_count ? order.size() - keep_count : 0;
  for (size_t i = 0; i < order.size(); ++i) {
    Group& g = *order[i];
    const bool too_old = rule.max_age_ms > 0 && now_ms - g.age_ms() > rule.max_age_ms;
    const bool stopped = context.stop != nullptr && context.stop->load();
    std::unique_lock<std::mutex> held;
    if (context.group_lock != nullptr && (too_old || i < over_count)) {
      held = std::unique_lock(*context.group_lock);
    }
    if ((!too_old && i >= over_count) || r.more || stopped ||
        r.jobs_removed >= context.max_removals || !unchanged(dirfd, g)) {
      if ((too_old || i < over_count) && (stopped || r.jobs_removed >= context.max_removals)) {
        r.more = true;
      }
      for (const Entry& e : g.files) keep(e);
      continue;
    }
    // The marker last, and only once the rest is gone.
    std::stable_partition(g.files.begin(), g.files.end(), [&](const Entry& e) {
      return role_of(e.name, kind, names, context.active).marker == false;
    });
    bool rest_gone = true;
    uint64_t removed = 0;
    for (const Entry& e : g.files) {
      const bool marker = role_of(e.name, kind, names, context.active).marker;
      if (marker && kind != SpoolFolder::kRejected && !context.submitters.empty() && rest_gone) {
        // Whom the job acted for goes before the id is free: a later job of that id must never
        // find it (SubmitterStore).
        const std::string record = context.submitters + "/" + g.key + ".submitter";
        if (::unlink(record.c_str()) != 0 && errno != ENOENT) {
          add_error(r, "remove " + record, errno);
          rest_gone = false;
        }
      }
      if (marker && !rest_gone) {
        keep(e);
        continue;
      }
      if (::unlinkat(dirfd, e.name.c_str(), 0) != 0 && errno != ENOENT) {
        add_error(r, "remove " + dir + "/" + e.name, errno);
        rest_gone = false;
        keep(e);
        continue;
      }
      ++removed;
      ++r.files_removed;
      r.bytes_removed += e.bytes;
    }
    if (rest_gone && removed > 0) ++r.jobs_removed;
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
