#include "pipeline/output_file.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/access_check.h"
#include "core/fs_util.h"
#include "core/leftover_temps.h"
#include "core/path_util.h"

namespace docpipe {

namespace {

const DirFd& slash() {
  // Opened once: the base of outputs given as absolute paths (tests that feed a pipeline).
  static const DirFd root = [] {
    Result<DirFd> d = open_dir_path("/");
    return d ? std::move(*d) : DirFd();
  }();
  return root;
}

// The folder `rel` beneath `base`, as it is when nothing is in the way: one openat2 that refuses
// any symlink. -1 when that does not settle it (missing, a symlink on the way, no openat2): the
// walk then creates what is missing and names what is wrong.
int open_existing_folder(const DirFd& base, const std::string& rel) {
  struct open_how how = {};
  how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, base.fd(), rel.c_str(), &how, sizeof how);
  return fd >= 0 ? static_cast<int>(fd) : -1;
}

std::atomic<TmpfileLink> g_tmpfile_link{TmpfileLink::kUnknown};
std::atomic<int> g_link_fault{0};       // tests: links fail with this errno
std::atomic<int> g_close_fault{0};      // tests: closes of outputs report this errno
std::atomic<bool> g_foreign_fs{false};  // tests: every folder is on a file system not listed

// File systems on which outputs are written anonymously: local ones that have O_TMPFILE and no
// flush at close(). The file is closed only after its link (the link needs the descriptor), so a
// file system whose close() still sends data or reports write errors (NFS, FUSE, CIFS) would
// show a name before the data was safely written: it gets a named temp file, closed first.
bool anonymous_fs(long f_type) {
  constexpr long kTmpfs = 0x01021994, kExt = 0xEF53, kXfs = 0x58465342, kBtrfs = 0x9123683E;
  return f_type == kTmpfs || f_type == kExt || f_type == kXfs || f_type == kBtrfs;
}

// Links the anonymous file `fd` as `name` in `dir_fd` (never replacing anything); 0 or an errno.
int link_anonymous(int fd, TmpfileLink how, int dir_fd, const char* name) {
  if (int fault = g_link_fault.load(std::memory_order_relaxed)) return fault;
  if (how == TmpfileLink::kEmptyPath) {
    return ::linkat(fd, "", dir_fd, name, AT_EMPTY_PATH) == 0 ? 0 : errno;
  }
  char proc[40];
  std::snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  return ::linkat(AT_FDCWD, proc, dir_fd, name, AT_SYMLINK_FOLLOW) == 0 ? 0 : errno;
}

// The way this process may link anonymous files, learnt once from `fd` (a fresh O_TMPFILE file
// in `dir_fd`): each way is tried with "." as the new name, which always exists, so a permitted
// link fails with EEXIST and creates nothing; a refused one fails first (ENOENT or EPERM: no
// CAP_DAC_READ_SEARCH on a kernel before 6.10; no /proc). What the probe cannot see (a security
// module refusing links, say) is met at the link itself: see publish_by_copy().
TmpfileLink tmpfile_link(int fd, int dir_fd) {
  TmpfileLink how = g_tmpfile_link.load(std::memory_order_relaxed);
  if (how != TmpfileLink::kUnknown) return how;
  TmpfileLink learnt = TmpfileLink::kNone;
  for (TmpfileLink candidate : {TmpfileLink::kEmptyPath, TmpfileLink::kProcFd}) {
    if (link_anonymous(fd, candidate, dir_fd, ".") == EEXIST) {
      learnt = candidate;
      break;
    }
  }
  // Another thread may have learnt it meanwhile, or switched links off (publish_by_copy): what
  // is stored first stays.
  g_tmpfile_link.compare_exchange_strong(how, learnt, std::memory_order_relaxed);
  return how == TmpfileLink::kUnknown ? learnt : how;
}

}  // namespace

TmpfileLink set_tmpfile_link_for_testing(TmpfileLink link) { return g_tmpfile_link.exchange(link); }

void set_output_faults_for_testing(int link_errno, int close_errno, bool foreign_fs) {
  g_link_fault.store(link_errno);
  g_close_fault.store(close_errno);
  g_foreign_fs.store(foreign_fs);
}

bool anonymous_outputs_on(long f_type) { return anonymous_fs(f_type); }

Status OutputFile::create(const std::string& final_path, bool durable) {
  std::string_view rel = final_path;
  while (!rel.empty() && rel.front() == '/') rel.remove_prefix(1);
  OutputTarget target{nullptr, rel, nullptr};
  target.durable = durable;
  return create(final_path, target);
}

Status OutputFile::create(const std::string& final_path, const OutputTarget& target) {
  discard();
  final_path_ = final_path;
  bytes_written_ = 0;
  copied_stat_.reset();
  Status st = sha_.reset();
  if (!st) return st;
  const DirFd& base = target.folder != nullptr ? *target.folder : slash();
  if (!base.valid())
    return make_error(ErrorCode::kIo, "write " + final_path + ": no output folder");
  const std::string_view parent = parent_path(target.rel);
  final_name_ = std::string(base_name(target.rel));
  const bool check = target.who != nullptr && !target.who->is_root();
  if (parent.empty()) {
    // The output folder itself, opened (and checked) when the job started, and held by the
    // document until it settles: borrowed, no syscall.
    dir_ = &base;
    dir_fd_ = base.fd();
    dir_path_ = &base.path();
  } else if (const DirFd* shared = target.shared != nullptr
                                       ? target.shared->find(base, target.who, parent)
                                       : nullptr) {
    dir_ = shared;
    dir_fd_ = shared->fd();
    dir_path_ = &shared->path();
  } else {
    const std::string parent_rel(parent);
    int fd = check ? -1 : open_existing_folder(base, parent_rel);
    if (fd >= 0) {
      owned_ = DirFd(fd, base.child_path(parent_rel));
    } else {
      WalkOptions opts;
      opts.who = target.who;
      opts.create = true;
      opts.want_last = W_OK | X_OK;
      opts.verb = "write";
      Result<DirFd> walked = walk_dirs_beneath(base, parent_rel, opts);
      if (!walked) {
        // An errno says it all after the output's path; a refusal names the folder at fault.
        const Error& e = walked.error();
        if (e.sys_errno != 0) return errno_error("write " + final_path, e.sys_errno);
        return Error{e.code, "write " + final_path + ": " + e.message, e.sys_errno};
      }
      owned_ = std::move(*walked);
    }
    if (target.shared != nullptr) {
      const DirFd& kept = target.shared->add(base, target.who, parent_rel, std::move(owned_));
      dir_ = &kept;
      dir_fd_ = kept.fd();
      dir_path_ = &kept.path();
    } else {
      dir_ = &owned_;
      dir_fd_ = owned_.fd();
      dir_path_ = &owned_.path();
    }
  }
  if (!target.durable && create_anonymous()) return ok();
  return create_named();
}

// An O_TMPFILE file in the folder, if its file system is one for them (anonymous_fs) and this
// process can link them. Any failure (EOPNOTSUPP, EISDIR from an old kernel, and real errors such
// as EACCES) leaves it to create_named(), which names the error as before. O_RDWR: its bytes can
// be read back should its link be refused (publish_by_copy).
bool OutputFile::create_anonymous() {
  if (g_tmpfile_link.load(std::memory_order_relaxed) == TmpfileLink::kNone) return false;
  if (g_foreign_fs.load(std::memory_order_relaxed) || !anonymous_fs(dir_->fs_type())) return false;
  const int fd = ::openat(dir_fd_, ".", O_RDWR | O_TMPFILE | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  link_ = tmpfile_link(fd, dir_fd_);  // this file is linked this way, whatever happens meanwhile
  if (link_ == TmpfileLink::kNone) {
    ::close(fd);
    return false;
  }
  fd_ = fd;
  anonymous_ = true;
  return true;
}

Status OutputFile::create_named() {
  for (int tries = 0; tries < 16; ++tries) {
    std::string temp = std::string(base_name(temp_path_for("", final_name_)));
    fd_ =
        ::openat(dir_fd_, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd_ >= 0) {
      temp_name_ = std::move(temp);
      return ok();
    }
    if (errno == EEXIST || errno == EINTR) continue;  // a name collision: draw another
    int err = errno;
    release_folder();
    return errno_error("write " + final_path_, err);
  }
  release_folder();
  return make_error(ErrorCode::kIo,
                    "write " + final_path_ + ": could not create a unique temp file in its folder");
}

std::string OutputFile::temp_path() const {
  if (temp_name_.empty()) return {};
  return *dir_path_ == "/" ? "/" + temp_name_ : *dir_path_ + "/" + temp_name_;
}

void OutputFile::release_folder() {
  owned_.reset();
  dir_ = nullptr;
  dir_fd_ = -1;
  dir_path_ = nullptr;
}

Status OutputFile::write(std::string_view data) {
  if (Status st = write_all(data.data(), data.size()); !st) return st;
  bytes_written_ += data.size();
  return sha_.update(data);
}

Status OutputFile::write_all(const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd_, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("write " + final_path_, errno);
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return ok();
}

Status OutputFile::sync() {
  if (::fsync(fd_) != 0) return errno_error("fsync " + final_path_, errno);
  return ok();
}

Status OutputFile::close_fd() {
  if (fd_ < 0) return ok();
  int rc = ::close(fd_);
  fd_ = -1;
  if (int fault = g_close_fault.load(std::memory_order_relaxed)) {
    rc = -1;
    errno = fault;
  }
  // A deferred write error (NFS, quota) surfaces here; EINTR still closed the descriptor.
  if (rc != 0 && errno != EINTR) return errno_error("write " + final_path_, errno);
  return ok();
}

Result<OutputFile::Committed> OutputFile::rename_into_place(IfExists mode) {
  if (anonymous_) return link_into_place(mode);
  Status st = close_fd();
  if (!st) {
    discard();
    return st.error();
  }
  const int err =
      rename_in(dir_fd_, temp_name_.c_str(), final_name_.c_str(), keeps_existing_outputs(mode));
  if (err != 0) {
    discard();
    if (err == EEXIST) return Committed::kTargetExists;
    return errno_error("rename to " + final_path_, err);
  }
  temp_name_.clear();
  return Committed::kWritten;
}

// A link never replaces what is at its new name: kSkip and kFail get kTargetExists from it as
// they do from RENAME_NOREPLACE. kReplace over an existing file links the file under a temp name
// instead, and from there on it is a named temp file: closed (a close error leaves the target
// alone), then renamed over the target.
//
// A direct link is closed after it, as the link needs the descriptor. On the file systems where
// outputs are anonymous (anonymous_fs) close() flushes nothing and reports no write error, so
// the output is whole when its name appears, whatever close() says: it is written.
Result<OutputFile::Committed> OutputFile::link_into_place(IfExists mode) {
  int err = link_anonymous(fd_, link_, dir_fd_, final_name_.c_str());
  if (err == 0) {
    anonymous_ = false;
    (void)close_fd();  // see above: every byte was written before the link
    return Committed::kWritten;
  }
  if (err == EEXIST && !keeps_existing_outputs(mode)) {
    bool named = false;
    for (int tries = 0; tries < 16 && !named; ++tries) {
      std::string temp = std::string(base_name(temp_path_for("", final_name_)));
      err = link_anonymous(fd_, link_, dir_fd_, temp.c_str());
      if (err == EEXIST) continue;  // a name collision: draw another
      if (err == 0) {
        temp_name_ = std::move(temp);  // a named temp file now: discard() removes it
        anonymous_ = false;
        return rename_into_place(mode);
      }
      named = true;  // refused: handled below
    }
    if (err == EEXIST) {
      discard();
      return make_error(ErrorCode::kIo, "write " + final_path_ +
                                            ": could not create a unique temp file in its folder");
    }
  }
  switch (err) {
    case EPERM:
    case EACCES:
    case EXDEV:
    case EOPNOTSUPP:
    case EMLINK:
      return publish_by_copy(mode, err);
    default:
      break;
  }
  discard();
  if (err == EEXIST) return Committed::kTargetExists;
  if (err == ENOENT) {
    // Its folder looked empty while the output was written, and was removed meanwhile; as a
    // named temp file's create or rename would, this fails on ENOENT.
    return errno_error("write " + final_path_ + " (its folder was removed while it was written)",
                       ENOENT);
  }
  return errno_error("link to " + final_path_, err);
}

// The link was refused where the probe allowed links (a security module, an immutable folder):
// the bytes go to a named temp file in the same folder, which is renamed as any other. If that
// file can be made, only links were refused: this process writes named temp files from then on
// (outputs already being written keep their own way, link_). If not (an immutable folder refuses
// both), the named path's own error is the document's. The copy is a new file: its stat is kept
// for the lineage store (copied_stat()).
Result<OutputFile::Committed> OutputFile::publish_by_copy(IfExists mode, int link_errno) {
  const int anon = fd_;
  fd_ = -1;
  anonymous_ = false;
  Status st = create_named();
  if (st) g_tmpfile_link.store(TmpfileLink::kNone, std::memory_order_relaxed);
  for (uint64_t off = 0; st && off < bytes_written_;) {
    char buf[64 << 10];
    const ssize_t n = ::pread(anon, buf, sizeof buf, static_cast<off_t>(off));
    if (n <= 0) {
      st = errno_error("write " + final_path_ + " (copying it after its link was refused: " +
                           std::strerror(link_errno) + ")",
                       n < 0 ? errno : EIO);
      break;
    }
    st = write_all(buf, static_cast<size_t>(n));
    off += static_cast<uint64_t>(n);
  }
  ::close(anon);
  struct stat copied;
  if (st && ::fstat(fd_, &copied) != 0) st = errno_error("stat " + final_path_, errno);
  if (!st) {
    discard();
    return st.error();
  }
  copied_stat_ = copied;
  return rename_into_place(mode);
}

Result<OutputFile::Committed> OutputFile::commit(IfExists mode, bool sync_folder) {
  Result<Committed> done = rename_into_place(mode);
  if (done && *done == Committed::kWritten && sync_folder) {
    if (Status st = this->sync_folder(); !st) return st.error();
  }
  release_folder();
  return done;
}

Result<OutputFile::Committed> OutputFile::commit_keeping_folder(IfExists mode) {
  return rename_into_place(mode);
}

Status OutputFile::sync_folder() {
  const int rc = ::fsync(dir_fd_);
  const int e = errno;
  release_folder();
  if (rc != 0) return errno_error("fsync folder of " + final_path_, e);
  return ok();
}

void OutputFile::discard() {
  if (fd_ >= 0) {
    ::close(fd_);  // an anonymous file is gone with its last descriptor
    fd_ = -1;
  }
  anonymous_ = false;
  if (!temp_name_.empty()) {
    if (::unlinkat(dir_fd_, temp_name_.c_str(), 0) != 0 && errno != ENOENT) {
      // The folder turned read-only (or immutable) after the create: remove it later.
      LeftoverTemps::global().add(*dir_path_, temp_name_);
    }
    temp_name_.clear();
  }
  release_folder();
}

const DirFd* SharedFolders::find(const DirFd& base, const Credentials* who,
                                 std::string_view rel) const {
  for (const Entry& e : entries_) {
    if (e.base == &base && e.who == who && e.rel == rel) return &e.folder;
  }
  return nullptr;
}

const DirFd& SharedFolders::add(const DirFd& base, const Credentials* who, std::string rel,
                                DirFd folder) {
  entries_.push_back(Entry{&base, who, std::move(rel), std::move(folder)});
  return entries_.back().folder;
}

bool OutputFile::exists(const OutputTarget& target) {
  struct stat st;
  return stat_target(target, &st);
}

Status OutputFile::stat_written(struct stat* st) const {
  if (fd_ < 0 || ::fstat(fd_, st) != 0) {
    return errno_error("stat " + final_path_, fd_ < 0 ? EBADF : errno);
  }
  return ok();
}

bool OutputFile::stat_target(const OutputTarget& target, struct stat* out) {
  const DirFd& base = target.folder != nullptr ? *target.folder : slash();
  const std::string_view parent = parent_path(target.rel);
  const std::string name(base_name(target.rel));
  struct stat& st = *out;
  if (parent.empty()) return ::fstatat(base.fd(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  int fd = open_existing_folder(base, std::string(parent));
  if (fd < 0) {
    WalkOptions opts;
    opts.verb = "write";
    Result<DirFd> walked = walk_dirs_beneath(base, parent, opts);
    if (!walked) return false;
    return ::fstatat(walked->fd(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  }
  const bool found = ::fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  ::close(fd);
  return found;
}

}  // namespace docpipe
