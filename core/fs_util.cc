#include "core/fs_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <random>

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

std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
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

Status write_file_atomic(const std::string& path, std::string_view content, bool durable) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string tmp = path + ".tmp." + std::to_string(rng() % 1000000000);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error("create " + tmp, errno);
  Status st = write_all(fd, content, tmp);
  if (st && durable && ::fsync(fd) != 0) st = errno_error("fsync " + tmp, errno);
  if (::close(fd) != 0 && st) st = errno_error("close " + tmp, errno);
  if (st && ::rename(tmp.c_str(), path.c_str()) != 0) st = errno_error("rename to " + path, errno);
  if (!st) {
    ::unlink(tmp.c_str());
    return st;
  }
  if (durable) return fsync_dir(parent_of(path));
  return ok();
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
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return errno_error("mkdir " + path, errno);
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

bool path_exists(const std::string& path) {
  struct stat sb;
  return ::lstat(path.c_str(), &sb) == 0;
}

}  // namespace docpipe
