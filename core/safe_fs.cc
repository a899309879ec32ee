#include "core/safe_fs.h"

#include <endian.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "core/access_check.h"
#include "core/path_util.h"

namespace docpipe {

namespace {

std::atomic<bool> g_openat2_disabled{false};
// Set once openat2 failed with ENOSYS/EPERM: later calls go straight to the walk.
std::atomic<bool> g_openat2_missing{false};

// openat2, or -1 with errno ENOSYS when it is missing, filtered or disabled for a test.
int sys_openat2(int dir, const char* path, int flags, uint64_t resolve) {
  if (g_openat2_disabled.load(std::memory_order_relaxed) ||
      g_openat2_missing.load(std::memory_order_relaxed)) {
    errno = ENOSYS;
    return -1;
  }
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags);
  how.resolve = resolve;
  for (;;) {
    long fd = ::syscall(SYS_openat2, dir, path, &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    if (errno == EINTR || errno == EAGAIN) continue;  // EAGAIN: a rename raced the lookup
    if (errno == ENOSYS || errno == EPERM) {
      // EPERM is what a seccomp filter answers for an unknown syscall; openat2 itself never
      // returns it for a lookup. Either way the walk below decides.
      g_openat2_missing.store(true, std::memory_order_relaxed);
      errno = ENOSYS;
    }
    return -1;
  }
}

std::vector<std::string_view> components(std::string_view rel) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos <= rel.size()) {
    size_t slash = rel.find('/', pos);
    if (slash == std::string_view::npos) slash = rel.size();
    std::string_view c = rel.substr(pos, slash - pos);
    if (!c.empty() && c != ".") out.push_back(c);
    pos = slash + 1;
  }
  return out;
}

std::string uid_text(const Credentials& who) { return "uid " + std::to_string(who.uid); }

Error denied(const std::string& path, const Credentials& who, int want, bool folder) {
  return make_error(ErrorCode::kPermission, path + ": the submitter (" + uid_text(who) +
                                                ") may not " + access_words(want, folder) +
                                                (folder ? " this folder" : " this file"));
}

Error symlink_refused(const std::string& path, const char* verb) {
  return make_error(ErrorCode::kPermission,
                    path + " is a symlink, refusing to " + std::string(verb) + " through it");
}

bool checks(const Credentials* who) { return who != nullptr && !who->is_root(); }

Status check_fd(int fd, const std::string& path, const Credentials& who, int want, bool folder) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return errno_error("stat " + path, errno);
  if (!may_access(fd, st, who, want)) return denied(path, who, want, folder);
  return ok();
}

// Opens folder `name` in `dir` without following a symlink; O_RDONLY, or O_PATH when the daemon
// itself may only search it. On failure returns -1 with errno; a symlink gives ELOOP.
int open_folder_nofollow(int dir, const char* name) {
  int fd = ::openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == EACCES) {
    fd = ::openat(dir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0 && errno == ENOTDIR) {
    // O_NOFOLLOW | O_DIRECTORY on a symlink says ENOTDIR on some kernels: tell them apart.
    struct stat st;
    const bool link = ::fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
    errno = link ? ELOOP : ENOTDIR;
  }
  return fd;
}

// A folder made for a submitter by a daemon that may not chown it (not root): an access ACL
// entry gives the submitter rwx on it, the rights its owner would have had, so later documents
// of the job may write into it as if the submitter had made it. The binary format is the
// kernel's posix_acl_xattr (version 2, entries sorted by tag); the mode bits stay as they were.
bool grant_submitter_acl(int dir, const char* name, uid_t uid) {
  int fd = ::openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  bool granted = false;
  if (::fstat(fd, &st) == 0) {
    struct Entry {
      uint16_t tag, perm;
      uint32_t id;
    };
    constexpr uint32_t kUndefined = 0xffffffffu;
    const Entry entries[] = {
        {0x01, static_cast<uint16_t>((st.st_mode >> 6) & 7), kUndefined},  // owner
        {0x02, 7, static_cast<uint32_t>(uid)},                             // the submitter
        {0x04, static_cast<uint16_t>((st.st_mode >> 3) & 7), kUndefined},  // owning group
        {0x10, 7, kUndefined},                                             // mask
        {0x20, static_cast<uint16_t>(st.st_mode & 7), kUndefined},         // other
    };
    std::vector<unsigned char> xattr(4 + sizeof entries / sizeof entries[0] * 8);
    const uint32_t version = htole32(2);
    std::memcpy(xattr.data(), &version, 4);
    size_t off = 4;
    for (const Entry& e : entries) {
      const uint16_t tag = htole16(e.tag), perm = htole16(e.perm);
      const uint32_t id = htole32(e.id);
      std::memcpy(xattr.data() + off, &tag, 2);
      std::memcpy(xattr.data() + off + 2, &perm, 2);
      std::memcpy(xattr.data() + off + 4, &id, 4);
      off += 8;
    }
    granted = ::fsetxattr(fd, "system.posix_acl_access", xattr.data(), xattr.size(), 0) == 0;
  }
  ::close(fd);
  return granted;
}

// The walk open_beneath's fallback and walk_dirs_beneath share: opens the first `count` of
// `parts` (the components of `rel`) as folders beneath `base`, one at a time with O_NOFOLLOW,
// creating and checking them as `opts` says (want_last applies to the last of all `parts`).
// Errors name the folder, after `error_verb` when given ("write /a/b: ..."). Returns the last
// folder opened, or an invalid DirFd when `count` is 0.
Result<DirFd> walk_folders(const DirFd& base, std::string_view rel,
                           const std::vector<std::string_view>& parts, size_t count,
                           const WalkOptions& opts, const char* error_verb) {
  const bool check = checks(opts.who);
  DirFd cur;
  int dir = base.fd();
  std::string shown = base.path();
  for (size_t i = 0; i < count; ++i) {
    if (parts[i] == "..") {
      return make_error(ErrorCode::kPermission,
                        base.child_path(rel) + ": \"..\" leads outside " + base.path());
    }
    const std::string name(parts[i]);
    const std::string path = shown == "/" ? "/" + name : shown + "/" + name;
    int fd = open_folder_nofollow(dir, name.c_str());
    bool created = false;
    if (fd < 0 && errno == ENOENT && opts.create) {
      if (check) {
        Status st = check_fd(dir, shown, *opts.who, W_OK | X_OK, true);
        if (!st) return st.error();
      }
      if (::mkdirat(dir, name.c_str(), 0755) != 0) {
        if (errno != EEXIST) return errno_error("create folder " + path, errno);
      } else if (check) {
        // Made for the submitter, who could have made it: theirs, as if they had. A daemon
        // that may not chown (not root) grants them rwx by an ACL entry instead; where the file
        // system has no ACLs, later documents are judged by the folder's own mode bits.
        created =
            ::fchownat(dir, name.c_str(), opts.who->uid, opts.who->gid, AT_SYMLINK_NOFOLLOW) == 0;
        if (!created) grant_submitter_acl(dir, name.c_str(), opts.who->uid);
      }
      fd = open_folder_nofollow(dir, name.c_str());
    }
    if (fd < 0) {
      int err = errno;
      if (err == ELOOP) return symlink_refused(path, opts.verb);
      return errno_error(error_verb != nullptr ? std::string(error_verb) + " " + path : path, err);
    }
    cur = DirFd(fd, path);
    dir = cur.fd();
    shown = path;
    if (check && !created) {
      const bool last = i + 1 == parts.size();
      Status st = check_fd(dir, shown, *opts.who, last ? (opts.want_last | X_OK) : X_OK, true);
      if (!st) return st.error();
    }
  }
  return cur;
}

// The fallback for open_beneath: each folder component with O_NOFOLLOW (walk_folders), the last
// with `flags` | O_NOFOLLOW. Refuses every symlink and "..".
Result<int> walk_open(const DirFd& base, std::string_view rel, int flags, const char* verb) {
  std::vector<std::string_view> parts = components(rel);
  if (parts.empty()) {
    int fd = ::openat(base.fd(), ".", flags | O_CLOEXEC);
    if (fd < 0) return errno_error(std::string(verb) + " " + base.path(), errno);
    return fd;
  }
  WalkOptions opts;
  opts.verb = verb;
  Result<DirFd> parent = walk_folders(base, rel, parts, parts.size() - 1, opts, verb);
  if (!parent) return parent.error();
  const DirFd& dir = parent->valid() ? *parent : base;
  if (parts.back() == "..") {
    return make_error(ErrorCode::kPermission,
                      base.child_path(rel) + ": \"..\" leads outside " + base.path());
  }
  const std::string name(parts.back());
  const std::string shown = dir.path() == "/" ? "/" + name : dir.path() + "/" + name;
  int fd = ::openat(dir.fd(), name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    int err = errno;
    if (err == ELOOP) return symlink_refused(shown, verb);
    return errno_error(std::string(verb) + " " + shown, err);
  }
  return fd;
}

}  // namespace

DirFd& DirFd::operator=(DirFd&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    fs_type_.store(o.fs_type_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    o.fd_ = -1;
  }
  return *this;
}

void DirFd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  fs_type_.store(-1, std::memory_order_relaxed);
}

long DirFd::fs_type() const {
  long type = fs_type_.load(std::memory_order_relaxed);
  if (type >= 0) return type;
  struct statfs st;
  type = fd_ >= 0 && ::fstatfs(fd_, &st) == 0 ? static_cast<long>(st.f_type) : 0;
  fs_type_.store(type, std::memory_order_relaxed);
  return type;
}

std::string DirFd::child_path(std::string_view rel) const {
  if (rel.empty()) return path_;
  std::string out = path_;
  if (out.empty() || out.back() != '/') out += '/';
  out += rel;
  return out;
}

Result<DirFd> open_dir_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_error("open folder " + path, errno);
  return DirFd(fd, path);
}

Result<int> open_beneath(const DirFd& base, std::string_view rel, int flags, const char* verb) {
  const std::string rel_str(rel.empty() ? "." : rel);
  // Beneath "/" nothing is outside: resolve as the kernel would (absolute symlinks included),
  // still without magic links.
  const uint64_t resolve = base.path() == "/" ? RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
                                              : RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  int fd = sys_openat2(base.fd(), rel_str.c_str(), flags | O_CLOEXEC, resolve);
  if (fd >= 0) return fd;
  int err = errno;
  if (err == ENOSYS) {
    if (base.path() == "/") {
      fd = ::openat(base.fd(), rel_str.c_str(), flags | O_CLOEXEC, 0644);
      if (fd < 0) return errno_error(std::string(verb) + " " + base.child_path(rel), errno);
      return fd;
    }
    return walk_open(base, rel, flags, verb);
  }
  if (err == EXDEV) {
    return make_error(ErrorCode::kPermission, base.child_path(rel) + ": leads outside " +
                                                  base.path() + " (through a symlink or \"..\")" +
                                                  ", refusing to " + verb + " it");
  }
  return errno_error(std::string(verb) + " " + base.child_path(rel), err);
}

Result<DirFd> open_dir_beneath(const DirFd& base, std::string_view rel, const char* verb) {
  Result<int> fd = open_beneath(base, rel, O_RDONLY | O_DIRECTORY, verb);
  if (!fd) return fd.error();
  return DirFd(*fd, base.child_path(rel));
}

Result<DirFd> walk_dirs_beneath(const DirFd& base, std::string_view rel, const WalkOptions& opts) {
  std::vector<std::string_view> parts = components(rel);
  Result<DirFd> walked = walk_folders(base, rel, parts, parts.size(), opts, nullptr);
  if (!walked || walked->valid()) return walked;
  int fd = ::fcntl(base.fd(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return errno_error("open folder " + base.path(), errno);
  DirFd cur(fd, base.path());
  if (checks(opts.who) && opts.want_last != 0) {
    Status st = check_fd(fd, base.path(), *opts.who, opts.want_last, true);
    if (!st) return st.error();
  }
  return cur;
}

Status check_path_access(const std::string& path, const Credentials& who, int want_last,
                         const char* verb) {
  if (who.is_root()) return ok();
  Result<DirFd> root = open_dir_path("/");
  if (!root) return root.error();
  const bool at_root = path == "/";
  Status st = check_fd(root->fd(), "/", who, at_root ? (want_last | X_OK) : X_OK, true);
  if (!st || at_root) return st;
  WalkOptions opts;
  opts.who = &who;
  opts.want_last = want_last;
  opts.verb = verb;
  Result<DirFd> walked = walk_dirs_beneath(*root, std::string_view(path).substr(1), opts);
  if (!walked) return walked.error();
  return ok();
}

int rename_in(int dir, const char* from, const char* to, bool noreplace) {
  if (!noreplace) return ::renameat(dir, from, dir, to) == 0 ? 0 : errno;
  if (::renameat2(dir, from, dir, to, RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return errno;
  // No RENAME_NOREPLACE on this file system: link() also fails with EEXIST instead of replacing.
  if (::linkat(dir, from, dir, to, 0) != 0) return errno;
  ::unlinkat(dir, from, 0);
  return 0;
}

void set_openat2_disabled_for_testing(bool disabled) {
  g_openat2_disabled.store(disabled, std::memory_order_relaxed);
}

}  // namespace docpipe
