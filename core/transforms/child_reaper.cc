#include "core/transforms/child_reaper.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

namespace docpipe {
namespace {

// Passes of sweep_escaped_children: each kills one generation; a deeper tree, or one that forks
// faster than we kill, is left for the next sweep.
constexpr int kMaxSweepPasses = 16;

struct Registry {
  std::mutex mu;
  std::unordered_set<pid_t> pids;
};

// Never destroyed: children may be reaped by threads still running at exit.
Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

struct ProcStat {
  pid_t ppid = 0;
  pid_t pgrp = 0;
};

// Fields 4 and 5 of /proc/PID/stat; the command name (field 2) may hold spaces and parentheses.
bool read_stat(const char* pid_dir, ProcStat& out) {
  const std::string path = std::string("/proc/") + pid_dir + "/stat";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[512];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  char* close = nullptr;
  for (char* p = buf; *p != '\0'; ++p)
    if (*p == ')') close = p;
  if (close == nullptr) return false;
  char state = 0;
  int ppid = 0, pgrp = 0;
  if (std::sscanf(close + 1, " %c %d %d", &state, &ppid, &pgrp) != 3) return false;
  out.ppid = ppid;
  out.pgrp = pgrp;
  return true;
}

// Our children that left our process group, by pid.
std::vector<pid_t> escaped_children() {
  std::vector<pid_t> found;
  const pid_t self = ::getpid();
  const pid_t group = ::getpgrp();
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return found;
  while (dirent* e = ::readdir(proc)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    ProcStat st;
    if (read_stat(e->d_name, st) && st.ppid == self && st.pgrp != group) {
      found.push_back(static_cast<pid_t>(std::atoi(e->d_name)));
    }
  }
  ::closedir(proc);
  return found;
}

}  // namespace

void prepare_for_children() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction old {};
    if (::sigaction(SIGPIPE, nullptr, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
        old.sa_handler == SIG_DFL) {
      ::signal(SIGPIPE, SIG_IGN);
    }
    // Fails only on kernels before 3.4; escaped descendants then go to init, as before.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  });
}

pid_t spawn_registered(const std::function<pid_t()>& spawn) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  const pid_t pid = spawn();
  if (pid > 0) r.pids.insert(pid);
  return pid;
}

void forget_child(pid_t pid) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.pids.erase(pid);
}

int sweep_escaped_children() {
  int is_subreaper = 0;
  if (::prctl(PR_GET_CHILD_SUBREAPER, &is_subreaper, 0, 0, 0) != 0 || !is_subreaper) return 0;
  // One sweep at a time, from scan to reap: otherwise a second sweep could kill a pid that the
  // first one has reaped meanwhile, which may by then name an unrelated process.
  static std::mutex sweep_mu;
  std::lock_guard sweep(sweep_mu);
  int reaped = 0;
  for (int pass = 0; pass < kMaxSweepPasses; ++pass) {
    std::vector<pid_t> found = escaped_children();
    std::vector<pid_t> orphans;
    {
      // Under the lock: a child spawned after the scan saw it is registered by now.
      Registry& r = registry();
      std::lock_guard lock(r.mu);
      for (pid_t pid : found) {
        if (r.pids.count(pid) != 0) continue;
        // Still our unreaped child (its owner reaps before it forgets it, and sweeps are one at
        // a time), so the pid cannot name another process: checked, not assumed.
        siginfo_t info{};
        if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
          continue;
        }
        ::kill(pid, SIGKILL);
        orphans.push_back(pid);
      }
    }
    if (orphans.empty()) break;
    for (pid_t pid : orphans) {
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      ++reaped;
    }
  }
  return reaped;
}

}  // namespace docpipe
