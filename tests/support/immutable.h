#pragma once
// chattr +i / -i from a test: makes a folder read-only even for root, as a folder can turn
// read-only under a running job (a remount, an operator's chattr). Needs root and a file system
// with the flag (ext4; not tmpfs).

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <string>
#include <utility>

namespace docpipe::test {

// Sets or clears the immutable flag of the folder `path`; false if that cannot be done here.
inline bool set_immutable(const std::string& path, bool on) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  int flags = 0;
  bool ok = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
  flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
  ok = ok && ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
  ::close(fd);
  return ok;
}

// Clears the flag whatever happens, so that the test's temp folder can be removed.
struct MutableGuard {
  explicit MutableGuard(std::string p) : path(std::move(p)) {}
  ~MutableGuard() { set_immutable(path, false); }
  MutableGuard(const MutableGuard&) = delete;
  MutableGuard& operator=(const MutableGuard&) = delete;
  std::string path;
};

}  // namespace docpipe::test
