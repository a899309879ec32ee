#pragma once
// What is running on the machine, read from /proc: for tests that check a command was killed and
// left nothing behind.

#include <dirent.h>
#include <sys/types.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace docpipe::test {

// Command lines of every process now running, arguments joined by spaces.
inline std::vector<std::string> process_command_lines() {
  std::vector<std::string> out;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) throw std::runtime_error("cannot open /proc");
  while (dirent* e = ::readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/cmdline", std::ios::binary);
    std::string line((std::istreambuf_iterator<char>(f)), {});
    for (char& c : line)
      if (c == '\0') c = ' ';
    out.push_back(line);
  }
  ::closedir(proc);
  return out;
}

// Whether some process's command line contains `needle`.
inline bool process_running(const std::string& needle) {
  for (const std::string& line : process_command_lines())
    if (line.find(needle) != std::string::npos) return true;
  return false;
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
