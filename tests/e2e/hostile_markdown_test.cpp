// Hostile markdown through the real daemon: cmark-gfm 0.29's quadratic shapes fail their own
// documents (memory limit, document_timeout_ms) in sandboxed workers, the daemon stays up and
// renders other documents, and a daemon killed mid-document resumes the job without crashing.

#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>

#include "tests/e2e/harness.h"
#include "tests/support/hostile_documents.h"

namespace e2e {
namespace {

using docpipe::test::AddressSpaceCap;
using docpipe::test::nested_quotes;
using docpipe::test::wide_table;

std::map<std::string, std::string> errors_by_input(const nlohmann::json& report) {
  std::map<std::string, std::string> out;
  for (const auto& f : report["failed_documents"]) out[f["input"]] = f["error"];
  return out;
}

// The whole of a /proc file by read(2): a process that exits meanwhile reads as empty (an
// ifstream would throw on the ESRCH).
std::string read_proc(const std::string& path) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

// CPU time (clock ticks) used so far by the busiest worker started by the daemon with this pid
// (their argv names it); -1 if none runs.
long worker_cpu_ticks(pid_t daemon) {
  const std::string needle = "__transform-worker markdown.html " + std::to_string(daemon) + " ";
  long most = -1;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return -1;
  while (dirent* e = ::readdir(proc)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    const std::string dir = std::string("/proc/") + e->d_name;
    std::string line = read_proc(dir + "/cmdline");
    for (char& c : line)
      if (c == '\0') c = ' ';
    if (line.find(needle) == std::string::npos) continue;
    const std::string stat = read_proc(dir + "/stat");
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    std::string field;
    long utime = 0;
    for (int i = 3; i <= 14 && rest >> field; ++i)
      if (i == 14) utime = std::stol(field);
    most = std::max(most, utime);
  }
  ::closedir(proc);
  return most;
}

bool workers_of(pid_t daemon) { return worker_cpu_ticks(daemon) >= 0; }

}  // namespace

TEST_CASE(
    "e2e hostile markdown: quadratic documents fail alone with clear errors and the daemon stays "
    "up") {
  AddressSpaceCap cap(rlim_t{6} << 30);
  TempDir tmp;
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  // 160 KB of nested quotes, so its deadline is what stops it: the parse is quadratic, and
  // 20,000 levels took 6 s of CPU on one machine but 2.1 s on another, too close to a 2 s
  // deadline; 40,000 take about 4 times as long. The 20,000-column table grows fast enough to
  // meet either limit first.
  write_file(in + "/nested.md", nested_quotes(40000));
  write_file(in + "/padded.md", wide_table(200, 20000));  // 46 KB: about 1 GB of cells
  for (int i = 0; i < 5; ++i) write_file(in + "/ok-" + std::to_string(i) + ".md", "*fine*\n");

  DaemonProcess daemon(spool, {"--workers", "2", "--durability", "none"});
  daemon.start();
  nlohmann::json job =
      make_job("hostile", in, out, {{{"op", "markdown.html"}, {"worker_memory_bytes", 64 << 20}}});
  job["limits"] = {{"document_timeout_ms", 2000}, {"max_failed_documents", 2}};
  drop_job(spool, "hostile.json", job);
  JobOutcome outcome = daemon.wait_for_job("hostile");
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.report["counts"]["failed"] == 2);
  CHECK(outcome.report["counts"]["succeeded"] == 5);
  std::map<std::string, std::string> errors = errors_by_input(outcome.report);
  CHECK(errors[in + "/nested.md"] ==
        in + "/nested.md: timed out after 2000 ms (document_timeout_ms); "
             "markdown.html: worker killed");
  CHECK(errors[in + "/padded.md"] ==
        in + "/padded.md: markdown.html: worker exceeded its memory limit (64 MiB, "
             "worker_memory_bytes)");
  CHECK(read_file(out + "/ok-3.md") == "<p><em>fine</em></p>\n");
  daemon.expect_running();

  // The daemon renders the next job as before.
  nlohmann::json after = make_job("after2", in, out + "/after", {{{"op", "markdown.html"}}});
  after["input"] = {{"files", {in + "/ok-0.md"}}};
  drop_job(spool, "after2.json", after);
  CHECK(daemon.wait_for_job("after2").folder == "done");
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e hostile markdown: a daemon killed mid-document resumes the job without crashing") {
  AddressSpaceCap cap(rlim_t{6} << 30);
  TempDir tmp;
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  // Quadratic: 20,000 levels took 6 s of CPU on one machine and 2.1 s on another, under the
  // 3 s deadline; 40,000 take about 4 times as long, well over it on either.
  write_file(in + "/deep.md", nested_quotes(40000));
  write_file(in + "/ok.md", "# ok\n");
  nlohmann::json job = make_job("deep", in, out, {{{"op", "markdown.html"}}});
  job["limits"] = {{"document_timeout_ms", 3000}, {"max_failed_documents", 1}};

  pid_t first_pid = -1;
  {
    DaemonProcess daemon(spool, {"--workers", "2", "--durability", "none"});
    daemon.start();
    first_pid = daemon.pid();
    drop_job(spool, "deep.json", job);
    // Killed mid-parse: once a worker has spent half a second on the document.
    REQUIRE(poll_until(milliseconds(20000), [&] { return worker_cpu_ticks(first_pid) >= 50; }));
    REQUIRE(::kill(daemon.pid(), SIGKILL) == 0);
    CHECK(daemon.wait_exit() == 128 + SIGKILL);
  }
  // Its workers die with it (parent-death signal), mid-parse or idle; without it the busy one
  // would parse for another 15 s.
  CHECK(poll_until(milliseconds(5000), [&] { return !workers_of(first_pid); }));

  DaemonProcess daemon(spool, {"--workers", "2", "--durability", "none"});
  daemon.start();
  JobOutcome outcome = daemon.wait_for_job("deep");
  INFO("report: " << outcome.report.dump(2));
  std::map<std::string, std::string> errors = errors_by_input(outcome.report);
  CHECK(errors[in + "/deep.md"] ==
        in + "/deep.md: timed out after 3000 ms (document_timeout_ms); markdown.html: worker "
             "killed");
  CHECK(read_file(out + "/ok.md") == "<h1>ok</h1>\n");
  daemon.expect_running();
  CHECK(daemon.terminate() == 0);
}

}  // namespace e2e
