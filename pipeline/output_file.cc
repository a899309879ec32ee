#include "pipeline/output_file.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>

#include "core/fs_util.h"
#include "core/path_util.h"

namespace docpipe {

namespace {

// rename() that never replaces: renameat2(RENAME_NOREPLACE), or link()+unlink() on file systems
// without it (link also fails with EEXIST instead of replacing).
int rename_noreplace(const char* from, const char* to) {
  if (::renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return -1;
  if (::link(from, to) != 0) return -1;
  ::unlink(from);
  return 0;
}

}  // namespace

Status OutputFile::create(const std::string& final_path) {
  discard();
  final_path_ = final_path;
  bytes_written_ = 0;
  Status st = sha_.reset();
  if (!st) return st;
  const std::string_view folder = parent_path(final_path);
  const std::string_view name = base_name(final_path);
  bool made_folders = false;
  for (int tries = 0; tries < 16; ++tries) {
    std::string temp = temp_path_for(folder, name);
    fd_ = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ >= 0) {
      temp_path_ = std::move(temp);
      return ok();
    }
    if (errno == EEXIST) continue;  // a name collision: draw another
    if (errno == ENOENT && !made_folders) {
      // Only now, so the common case (folder exists) costs no extra syscall.
      made_folders = true;
      st = make_dirs(std::string(folder));
      if (!st) return st;
      continue;
    }
    if (errno == EINTR) continue;
    return errno_error("write " + final_path, errno);
  }
  return make_error(ErrorCode::kIo,
                    "write " + final_path + ": could not create a unique temp file in its folder");
}

Status OutputFile::write(std::string_view data) {
  Status st = sha_.update(data);
  if (!st) return st;
  bytes_written_ += data.size();
  while (!data.empty()) {
    ssize_t n = ::write(fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("write " + final_path_, errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
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
  // A deferred write error (NFS, quota) surfaces here; EINTR still closed the descriptor.
  if (rc != 0 && errno != EINTR) return errno_error("write " + final_path_, errno);
  return ok();
}

Result<OutputFile::Committed> OutputFile::commit(IfExists mode, bool sync_folder) {
  Status st = close_fd();
  if (!st) {
    discard();
    return st.error();
  }
  int rc = mode == IfExists::kReplace ? ::rename(temp_path_.c_str(), final_path_.c_str())
                                      : rename_noreplace(temp_path_.c_str(), final_path_.c_str());
  if (rc != 0) {
    int err = errno;
    discard();
    if (err == EEXIST) return Committed::kTargetExists;
    return errno_error("rename to " + final_path_, err);
  }
  temp_path_.clear();
  if (sync_folder) {
    st = fsync_dir(std::string(parent_path(final_path_)));
    if (!st) return st.error();
  }
  return Committed::kWritten;
}

void OutputFile::discard() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!temp_path_.empty()) {
    ::unlink(temp_path_.c_str());
    temp_path_.clear();
  }
}

}  // namespace docpipe
