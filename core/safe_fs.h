#pragma once
// Paths resolved beneath an open folder, never re-resolved from a string later. A job opens its
// input and output folders once, beneath the allowed root that holds them, and holds them for its
// life; every document is then opened, created and renamed relative to those descriptors. Swapping
// a folder on the way for a symlink after validation therefore cannot lead a job out of its roots.
//
// openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) does the confinement where the kernel has it
// (5.6+). Where it fails with ENOSYS (older kernel) or EPERM (a seccomp filter), a walk of
// O_NOFOLLOW openat() calls, one component at a time, takes its place; it refuses every symlink
// on the way, so it is stricter, never looser.
//
// With a submitter (core/credentials.h), walks also check that the submitter could have made
// them: search (X) on each folder passed, and what the caller asks of the last one.

#include <atomic>
#include <string>
#include <string_view>

#include "core/credentials.h"
#include "core/result.h"

namespace docpipe {

// An owned folder descriptor with the absolute path it was opened as (for messages and for
// remembering leftovers). Move-only; closes on destruction.
class DirFd {
 public:
  DirFd() = default;
  DirFd(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~DirFd() { reset(); }
  DirFd(DirFd&& o) noexcept
      : fd_(o.fd_),
        path_(std::move(o.path_)),
        fs_type_(o.fs_type_.load(std::memory_order_relaxed)) {
    o.fd_ = -1;
  }
  DirFd& operator=(DirFd&& o) noexcept;
  DirFd(const DirFd&) = delete;
  DirFd& operator=(const DirFd&) = delete;

  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  // path()/rel, without doubling the slash of "/".
  std::string child_path(std::string_view rel) const;
  // The file system's type (statfs f_type) of the folder, asked once and remembered; 0 when it
  // cannot be told. Safe to call from several threads.
  long fs_type() const;
  void reset();

 private:
  int fd_ = -1;
  std::string path_;
  mutable std::atomic<long> fs_type_{-1};  // -1: not asked yet
};

// Opens an absolute folder path as given, following symlinks: only for trusted paths (an allowed
// root from the daemon config, "/"). O_RDONLY, so that it can be listed and fsynced.
Result<DirFd> open_dir_path(const std::string& path);

// Opens `rel` (relative, no ".." above base) beneath `base` with `flags`; symlinks are followed
// only while they stay beneath base (base "/": as the kernel resolves any path). `verb` names the
// operation in messages ("read", "write"). Returns the descriptor.
Result<int> open_beneath(const DirFd& base, std::string_view rel, int flags, const char* verb);
Result<DirFd> open_dir_beneath(const DirFd& base, std::string_view rel, const char* verb);

struct WalkOptions {
  const Credentials* who = nullptr;  // check access for this submitter (null or root: no checks)
  bool create = false;               // create missing folders (mode 0755)
  int want_last = 0;                 // access the last folder must grant `who` (R_OK|W_OK|X_OK)
  const char* verb = "write";        // "... is a symlink, refusing to VERB through it"
};

// Opens the folder `rel` beneath `base` one component at a time with O_NOFOLLOW: a symlink on
// the way fails with "PATH is a symlink, refusing to VERB through it". With `who`, each folder
// passed must grant search, the last `want_last`, and the parent of each created folder W|X.
// `rel` "" returns a duplicate of base (after the want_last check).
Result<DirFd> walk_dirs_beneath(const DirFd& base, std::string_view rel, const WalkOptions& opts);

// Checks that `who` may search every folder from "/" down to the folder `path` (absolute,
// normalised, its components real folders) and has `want_last` on it, opening each with
// O_NOFOLLOW. For the ancestors of a job's folders, once per job.
Status check_path_access(const std::string& path, const Credentials& who, int want_last,
                         const char* verb);

// Renames `from` to `to`, both names in the folder `dir`; with `noreplace`, fails with EEXIST
// rather than replace (renameat2 RENAME_NOREPLACE, or link+unlink where that is unsupported).
// Returns 0 or an errno.
int rename_in(int dir, const char* from, const char* to, bool noreplace);

// For tests: act as if openat2 were missing, to exercise the fallback walk.
void set_openat2_disabled_for_testing(bool disabled);

}  // namespace docpipe
