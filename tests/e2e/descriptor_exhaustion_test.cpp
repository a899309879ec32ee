// Issue 9 item 13, descriptors: a job whose file was claimed into active/ but whose journal cannot
// be opened because the daemon ran out of descriptors is retried, never lost, and finishes once
// descriptors are back. The exhaustion is real: RLIMIT_NOFILE of the running daemon is lowered
// with prlimit(2). To land it between the claim and the journal's open (both need one
// descriptor, so no limit separates them), strace holds the daemon's first open of the journal
// for a few seconds; the test lowers the limit in that pause, so the open itself fails EMFILE.

#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include "tests/e2e/harness.h"
#include "tests/e2e/strace_parse.h"

namespace e2e {
namespace {

// The lowest descriptor number `pid` does not hold: with RLIMIT_NOFILE set to it, the next
// descriptor the process asks for fails with EMFILE (new descriptors take the lowest free number
// and must stay below the limit), while those it holds stay usable.
rlim_t lowest_free_descriptor(pid_t pid) {
  std::set<long> held;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) throw std::runtime_error("cannot list " + dir);
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9')
      held.insert(std::strtol(e->d_name, nullptr, 10));
  }
  ::closedir(d);
  long n = 0;
  while (held.count(n) != 0) ++n;
  return static_cast<rlim_t>(n);
}

// strace attached to every thread of `pid`, delaying the first open of `path` in each thread by
// `delay_us`. Detaches (SIGTERM) when destroyed.
class OpenDelayer {
 public:
  OpenDelayer(const std::string& strace, pid_t pid, const std::string& path, long delay_us,
              const std::string& log) {
    pid_ = spawn_process(
        {strace, "-f", "-qq", "-p", std::to_string(pid), "-P", path, "-e", "trace=openat", "-e",
         "inject=openat:delay_enter=" + std::to_string(delay_us) + ":when=1", "-o", "/dev/null"},
        log);
  }
  ~OpenDelayer() { detach(); }
  OpenDelayer(const OpenDelayer&) = delete;
  OpenDelayer& operator=(const OpenDelayer&) = delete;

  void detach() {
    if (pid_ < 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

// Whether strace has attached to every thread of `daemon` (each shows TracerPid != 0).
bool traced(pid_t daemon) {
  const std::string tasks = "/proc/" + std::to_string(daemon) + "/task";
  DIR* d = ::opendir(tasks.c_str());
  if (d == nullptr) return false;
  bool all = true;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream in(tasks + "/" + e->d_name + "/status");  // a thread may end meanwhile
    const std::string status((std::istreambuf_iterator<char>(in)), {});
    const size_t at = status.find("TracerPid:");
    all = all && at != std::string::npos && std::strtol(status.c_str() + at + 10, nullptr, 10) != 0;
  }
  ::closedir(d);
  return all;
}

// The string at `address` in `pid`'s memory (up to 4 KiB), or "" if it cannot be read.
std::string remote_string(pid_t pid, unsigned long address) {
  char buf[4096];
  iovec local{buf, sizeof buf};
  iovec remote{reinterpret_cast<void*>(address), sizeof buf};
  ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (n <= 0) {
    // The page after the string may be unmapped: read up to the end of its page instead.
    remote.iov_len = local.iov_len = 4096 - (address % 4096);
    n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  }
  if (n <= 0) return "";
  return std::string(buf, strnlen(buf, static_cast<size_t>(n)));
}

// What `link` (a /proc symlink) points to, or "".
std::string link_target(const std::string& link) {
  std::error_code ec;
  std::filesystem::path target = std::filesystem::read_symlink(link, ec);
  return ec ? std::string() : target.string();
}

// Whether a thread of `pid` is held at the entry of an openat of `target` (an absolute path
// without symlinks): the open OpenDelayer delays. Threads stop at every openat's entry while
// strace looks at it, so the call's arguments (from /proc/PID/task/TID/syscall) are read to tell
// the held open from others: its path, joined to the folder its dirfd names when relative
// ("." of a descriptor for `target` is `target` too).
bool open_held(pid_t pid, const std::string& target) {
  const std::string proc = "/proc/" + std::to_string(pid);
  DIR* d = ::opendir((proc + "/task").c_str());
  if (d == nullptr) return false;
  bool held = false;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream in(proc + "/task/" + e->d_name + "/syscall");
    long nr = -1;
    std::string dirfd_arg, path_arg;
    if (!(in >> nr >> dirfd_arg >> path_arg) || nr != SYS_openat) continue;
    std::string path = remote_string(pid, std::strtoul(path_arg.c_str(), nullptr, 16));
    if (path.empty()) continue;
    if (path[0] != '/') {
      const int dirfd = static_cast<int>(std::strtoul(dirfd_arg.c_str(), nullptr, 16));
      const std::string base =
          link_target(dirfd == AT_FDCWD ? proc + "/cwd" : proc + "/fd/" + std::to_string(dirfd));
      path = path == "." ? base : base + "/" + path;
    }
    held = held || path == target;
  }
  ::closedir(d);
  return held;
}

// Lowers `pid`'s RLIMIT_NOFILE to its lowest free descriptor while the open OpenDelayer holds
// (again and again: one that was in use a moment ago may be closed meanwhile), so that the held
// open fails EMFILE. Returns the limit it had.
rlimit starve_descriptors_during_held_open(pid_t pid, const std::string& target) {
  rlimit old{};
  REQUIRE(::prlimit(pid, RLIMIT_NOFILE, nullptr, &old) == 0);
  rlimit low = old;
  bool lowered = true;
  poll_until(kJobTimeout, [&] {
    low.rlim_cur = std::min(low.rlim_cur, lowest_free_descriptor(pid));
    lowered = lowered && ::prlimit(pid, RLIMIT_NOFILE, &low, nullptr) == 0;
    return !open_held(pid, target);
  });
  REQUIRE(lowered);
  return old;
}

TEST_CASE("e2e faults: descriptors run out right after a claim: retried, not lost, then done") {
  TempDir tmp;
  const std::string strace = usable_strace(tmp);
  if (strace.empty()) return;
  const std::string spool = tmp / "spool";
  for (int i = 0; i < 3; ++i) {
    write_file(tmp / "in/doc-" + std::to_string(i) + ".txt", "document " + std::to_string(i));
  }

  DaemonProcess daemon(spool, {"--workers", "1"});
  daemon.start();
  const std::string journal = std::filesystem::canonical(spool).string() + "/active/emfile.journal";
  OpenDelayer delayer(strace, daemon.pid(), journal, 4000000, tmp / "strace.log");
  REQUIRE(poll_until(kStartTimeout, [&] { return traced(daemon.pid()); }));

  drop_job(spool, "emfile.json", make_job("emfile", tmp / "in", tmp / "out"));
  // Claimed, and the journal's open held by strace.
  REQUIRE(poll_until(kJobTimeout, [&] { return open_held(daemon.pid(), journal); }));
  CHECK(file_exists(spool + "/active/emfile.json"));
  const rlimit old = starve_descriptors_during_held_open(daemon.pid(), journal);

  std::vector<std::string> retried = daemon.wait_for_log_lines(
      {"cannot open claimed job; retrying", "job=emfile", "Too many open files"});
  delayer.detach();
  CHECK(retried.size() == 1);
  // Not lost: still claimed, neither finished nor rejected.
  CHECK(file_exists(spool + "/active/emfile.json"));
  CHECK_FALSE(file_exists(spool + "/done/emfile.json"));
  CHECK_FALSE(file_exists(spool + "/failed/emfile.json"));
  CHECK_FALSE(file_exists(spool + "/rejected/emfile.json"));
  daemon.expect_running();

  // Descriptors are back: the next retry opens the job and it runs to the end.
  REQUIRE(::prlimit(daemon.pid(), RLIMIT_NOFILE, &old, nullptr) == 0);
  JobOutcome outcome = daemon.wait_for_job("emfile");
  INFO(outcome.report.dump(2));
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["state"] == "succeeded");
  CHECK(outcome.report["counts"]["succeeded"] == 3);
  for (int i = 0; i < 3; ++i) {
    const std::string name = "doc-" + std::to_string(i) + ".txt";
    CHECK(read_file(tmp / "out/" + name) == "document " + std::to_string(i));
  }
  CHECK(daemon.terminate() == 0);
}

// A dropped job's input folder is walked (to count its documents) before the job is claimed. A
// walk cut short because the daemon ran out of descriptors says nothing about the job: the file
// must not be rejected, it waits in incoming/ and is taken again at a rescan.
TEST_CASE("e2e faults: descriptors run out while a dropped job's inputs are walked: it waits") {
  TempDir tmp;
  const std::string strace = usable_strace(tmp);
  if (strace.empty()) return;
  const std::string spool = tmp / "spool", in = tmp / "in";
  for (int i = 0; i < 3; ++i) {
    write_file(in + "/doc-" + std::to_string(i) + ".txt", "document " + std::to_string(i));
  }
  write_file(tmp / "docpipe.json", R"({"rescan_interval_ms": 300})");

  DaemonProcess daemon(spool, {"--config", tmp / "docpipe.json", "--workers", "1"});
  daemon.start();
  // The walk's first open of the folder: openat(<in>, ".") (open_job_folder resolves it with
  // openat2, which strace does not delay here).
  const std::string real_in = std::filesystem::canonical(in);
  OpenDelayer delayer(strace, daemon.pid(), real_in, 4000000, tmp / "strace.log");
  REQUIRE(poll_until(kStartTimeout, [&] { return traced(daemon.pid()); }));

  drop_job(spool, "walk.json", make_job("walk", in, tmp / "out"));
  REQUIRE(poll_until(kJobTimeout, [&] { return open_held(daemon.pid(), real_in); }));
  const rlimit old = starve_descriptors_during_held_open(daemon.pid(), real_in);

  std::vector<std::string> waiting = daemon.wait_for_log_lines(
      {"cannot take job file; will retry", "walk.json", "short of descriptors"});
  delayer.detach();
  CHECK(waiting.size() >= 1);
  CHECK(file_exists(spool + "/incoming/walk.json"));
  CHECK_FALSE(file_exists(spool + "/rejected/walk.json"));
  CHECK_FALSE(file_exists(spool + "/active/walk.json"));
  daemon.expect_running();

  REQUIRE(::prlimit(daemon.pid(), RLIMIT_NOFILE, &old, nullptr) == 0);
  JobOutcome outcome = daemon.wait_for_job("walk");
  INFO(outcome.report.dump(2));
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["counts"]["succeeded"] == 3);
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
