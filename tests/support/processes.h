#pragma once
// What is running on the machine, read from /proc: for tests that check a command was killed and
// left nothing behind.

#include <dirent.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace docpipe::test {

struct ProcessLine {
  pid_t pid;
  std::string command_line;  // arguments joined by spaces; empty for a zombie
};

// Every process now running.
inline std::vector<ProcessLine> process_lines() {
  std::vector<ProcessLine> out;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) throw std::runtime_error("cannot open /proc");
  while (dirent* e = ::readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/cmdline", std::ios::binary);
    std::string line((std::istreambuf_iterator<char>(f)), {});
    for (char& c : line)
      if (c == '\0') c = ' ';
    out.push_back({static_cast<pid_t>(std::stol(e->d_name)), std::move(line)});
  }
  ::closedir(proc);
  return out;
}

// Command lines of every process now running, arguments joined by spaces.
inline std::vector<std::string> process_command_lines() {
  std::vector<std::string> out;
  for (ProcessLine& p : process_lines()) out.push_back(std::move(p.command_line));
  return out;
}

// Whether some process's command line contains `needle`.
inline bool process_running(const std::string& needle) {
  for (const std::string& line : process_command_lines())
    if (line.find(needle) != std::string::npos) return true;
  return false;
}

// Blocks until process `pid` has exited (a zombie counts: its descriptors and command line are
// gone) or `timeout` passes, by poll() on a pidfd: no sleeping, no polling of /proc. A pid that
// no longer exists has exited. Returns whether it exited in time.
inline bool exited_within(pid_t pid, std::chrono::milliseconds timeout) {
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    if (errno == ESRCH) return true;
    throw std::runtime_error("pidfd_open failed");
  }
  pollfd p{pidfd, POLLIN, 0};
  int r;
  do {
    r = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (r < 0 && errno == EINTR);
  ::close(pidfd);
  return r == 1;
}

// The same for every process whose command line contains `needle` now.
inline bool exited_within(const std::string& needle, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const ProcessLine& p : process_lines()) {
    if (p.command_line.find(needle) == std::string::npos) continue;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (!exited_within(p.pid, std::max(left, std::chrono::milliseconds(0)))) return false;
  }
  return true;
}

// Children of `parent` that are zombies (exited, not yet reaped).
inline int zombies_of(pid_t parent) {
  int zombies = 0;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) throw std::runtime_error("cannot open /proc");
  while (dirent* e = ::readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), {});
    const size_t close = stat.rfind(')');  // the command name may hold spaces and parentheses
    if (close == std::string::npos || close + 2 > stat.size()) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state = 0;
    long ppid = 0;
    rest >> state >> ppid;
    if (state == 'Z' && ppid == parent) ++zombies;
  }
  ::closedir(proc);
  return zombies;
}

}  // namespace docpipe::test
