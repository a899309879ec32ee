#include "core/fs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <random>
#include <utility>
#include <vector>

#include "core/path_util.h"

namespace docpipe {

namespace {

Status write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("write " + path, errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return ok();
}

// The folder of `path`, "." for a bare name.
std::string parent_of(const std::string& path) {
  const std::string_view parent = parent_path(path);
  return parent.empty() ? "." : std::string(parent);
}

}  // namespace

Result<std::string> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error("open " + path, errno);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return errno_error("read " + path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

namespace {

// A temp name is only for O_EXCL uniqueness and for recognising leftovers; it need not be
// unpredictable, so a per-thread splitmix64 avoids a getrandom() per document.
uint64_t next_random() {
  thread_local uint64_t state = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

std::string temp_path_for(std::string_view folder, std::string_view name) {
  // NAME_MAX is 255: keep ".NAME.docpipe-tmp.XXXXXXXXXXXX" within it for long names.
  constexpr size_t kMaxNameInTemp = 200;
  if (name.size() > kMaxNameInTemp) name = name.substr(0, kMaxNameInTemp);
  static constexpr char kAlphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  uint64_t r = next_random();
  std::string path;
  path.reserve(folder.size() + name.size() + 32);
  path.append(folder);
  if (path.empty() || path.back() != '/') path.push_back('/');
  path.push_back('.');
  path.append(name);
  path.append(".docpipe-tmp.");
  for (int i = 0; i < 12; ++i, r /= 36) path.push_back(kAlphabet[r % 36]);
  return path;
}

Status write_new_file(const std::string& path, std::string_view content, bool durable) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error("create " + path, errno);
  Status st = write_all(fd, content, path);
  if (st && durable && ::fsync(fd) != 0) st = errno_error("fsync " + path, errno);
  if (::close(fd) != 0 && st) st = errno_error("close " + path, errno);
  if (!st) ::unlink(path.c_str());
  return st;
}

Result<AtomicFileWriter> AtomicFileWriter::create(const std::string& path, bool durable) {
  std::string tmp = temp_path_for(parent_of(path), base_name(path));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error("create " + tmp, errno);
  return AtomicFileWriter(path, std::move(tmp), fd, durable);
}

AtomicFileWriter::AtomicFileWriter(std::string path, std::string tmp, int fd, bool durable)
    : path_(std::move(path)), tmp_(std::move(tmp)), fd_(fd), durable_(durable) {}

AtomicFileWriter::AtomicFileWriter(AtomicFileWriter&& other) noexcept
    : path_(std::move(other.path_)),
      tmp_(std::move(other.tmp_)),
      fd_(std::exchange(other.fd_, -1)),
      durable_(other.durable_),
      buf_(std::move(other.buf_)),
      failed_(std::move(other.failed_)) {}

AtomicFileWriter& AtomicFileWriter::operator=(AtomicFileWriter&& other) noexcept {
  if (this != &other) {
    abort();
    path_ = std::move(other.path_);
    tmp_ = std::move(other.tmp_);
    fd_ = std::exchange(other.fd_, -1);
    durable_ = other.durable_;
    buf_ = std::move(other.buf_);
    failed_ = std::move(other.failed_);
  }
  return *this;
}

void AtomicFileWriter::abort() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
}

Status AtomicFileWriter::fail(Error error) {
  abort();
  failed_ = error;
  return error;
}

Status AtomicFileWriter::flush() {
  Status st = write_all(fd_, buf_, tmp_);
  buf_.clear();
  return st;
}

Status AtomicFileWriter::write(std::string_view data) {
  if (failed_) return *failed_;
  if (fd_ < 0) return make_error(ErrorCode::kInternal, "write " + path_ + ": already committed");
  if (buf_.size() + data.size() > kBufferBytes) {
    Status st = flush();
    if (st && data.size() >= kBufferBytes) st = write_all(fd_, data, tmp_);  // skip the copy
    if (!st) return fail(st.error());
    if (data.size() >= kBufferBytes) return ok();
  }
  if (buf_.capacity() < kBufferBytes) buf_.reserve(kBufferBytes);
  buf_.append(data);
  return ok();
}

Status AtomicFileWriter::write_through(std::string_view data) {
  if (failed_) return *failed_;
  if (fd_ < 0) return make_error(ErrorCode::kInternal, "write " + path_ + ": already committed");
  Status st = flush();
  if (st) st = write_all(fd_, data, tmp_);
  if (!st) return fail(st.error());
  return ok();
}

Status AtomicFileWriter::commit() {
  if (failed_) return *failed_;
  if (fd_ < 0) return make_error(ErrorCode::kInternal, "commit " + path_ + ": already committed");
  Status st = flush();
  if (st && durable_ && ::fsync(fd_) != 0) st = errno_error("fsync " + tmp_, errno);
  if (!st) return fail(st.error());
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    return fail(errno_error("close " + tmp_, err));
  }
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    return fail(errno_error("rename to " + path_, err));
  }
  // In place: a failure now leaves the new file there, but says it may not survive a crash.
  if (durable_) return fsync_dir(parent_of(path_));
  return ok();
}

Status write_file_atomic(const std::string& path, std::string_view content, bool durable) {
  Result<AtomicFileWriter> out = AtomicFileWriter::create(path, durable);
  if (!out) return out.error();
  Status st = out->write(content);
  return st ? out->commit() : st;
}

Status make_dirs(const std::string& path) {
  if (path.empty()) return ok();
  struct stat sb;
  if (::stat(path.c_str(), &sb) == 0) {
    if (S_ISDIR(sb.st_mode)) return ok();
    return make_error(ErrorCode::kIo, "mkdir " + path + ": exists and is not a folder");
  }
  std::string parent = parent_of(path);
  if (parent != path) {
    Status st = make_dirs(parent);
    if (!st) return st;
  }
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
    return errno_error("mkdir " + path, errno);
  return ok();
}

Status fsync_dir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_error("open folder " + path, errno);
  Status st;
  if (::fsync(fd) != 0) st = errno_error("fsync folder " + path, errno);
  ::close(fd);
  return st;
}

bool is_docpipe_temp_name(std::string_view name) {
  if (name.substr(0, 12) == ".docpipe-tmp") return true;
  return !name.empty() && name[0] == '.' && name.find(".docpipe-tmp.", 1) != std::string_view::npos;
}

size_t remove_docpipe_temp_files(const std::string& dir) {
  int top = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  return top < 0 ? 0 : remove_docpipe_temp_files_at(top);
}

size_t remove_docpipe_temp_files_at(int dir_fd) {
  // Descriptor-relative all the way down (O_NOFOLLOW, unlinkat): a folder swapped for a symlink
  // during the walk cannot lead the removal elsewhere. Only temp names are ever removed.
  // Depth-first with an explicit stack: one descriptor per level of the current path (a folder's
  // sub-folders wait as names), so a wide tree cannot use up the daemon's descriptors, and a
  // deep one cannot overflow a thread's stack.
  struct Level {
    DIR* dir;
    std::vector<std::string> subdirs;
    size_t next = 0;
  };
  size_t removed = 0;
  std::vector<Level> stack;
  auto enter = [&](int fd) {
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
      ::close(fd);
      return;
    }
    Level level{d, {}};
    while (struct dirent* e = ::readdir(d)) {
      std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      unsigned char type = e->d_type;
      if (type == DT_UNKNOWN) {
        struct stat st;
        if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
      }
      if (type == DT_DIR) {
        level.subdirs.emplace_back(name);
      } else if (type == DT_REG && is_docpipe_temp_name(name) &&
                 ::unlinkat(::dirfd(d), e->d_name, 0) == 0) {
        ++removed;
      }
    }
    stack.push_back(std::move(level));
  };
  enter(dir_fd);
  while (!stack.empty()) {
    Level& top = stack.back();
    if (top.next == top.subdirs.size()) {
      ::closedir(top.dir);
      stack.pop_back();
      continue;
    }
    const std::string& name = top.subdirs[top.next++];
    int sub =
        ::openat(::dirfd(top.dir), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub >= 0) enter(sub);  // may reallocate `stack`: `top` is not used after this
  }
  return removed;
}

bool path_exists(const std::string& path) {
  struct stat sb;
  return ::lstat(path.c_str(), &sb) == 0;
}

}  // namespace docpipe
