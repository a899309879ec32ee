// durability: the real daemon runs under strace, and its syscalls show what `durability: fsync`
// promises (DESIGN.md "Guarantees"): each output's temp file is fsynced before it is renamed into
// place, and the output folder is fsynced after the rename; each journal record reaches the
// kernel in a write of its own (a crash of the daemon then loses no record), before the job's
// report; and `durability: none` fsyncs no output. Calls are matched by the paths strace -y shows
// for their descriptors, not by their exact shape (rename or renameat relative to a folder
// descriptor, fsync or fdatasync).

#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <set>
#include <sstream>

#include "tests/e2e/harness.h"
#include "tests/e2e/strace_parse.h"

namespace e2e {
namespace {

std::string real_path(const std::string& path) {
  char* resolved = ::realpath(path.c_str(), nullptr);
  if (resolved == nullptr) throw std::runtime_error("realpath " + path);
  std::string out(resolved);
  ::free(resolved);
  return out;
}

// The daemon, run by strace through a small wrapper script (the harness runs BINARY run ...).
// The harness's pid is strace's: stop() sends SIGTERM to the daemon itself, and strace exits
// with its status once it has written the whole trace.
class TracedDaemon {
 public:
  TracedDaemon(const std::string& strace, const std::string& dir, const std::string& spool,
               std::vector<std::string> args)
      : trace_(dir + "/trace.log"), daemon_(spool, std::move(args)) {
    const std::string wrapper = dir + "/traced-docpipe";
    // LeakSanitizer cannot run under ptrace: a sanitizer build's daemon would fail at exit.
    write_file(wrapper,
               "#!/bin/sh\nexport ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\"\n"
               "exec " +
                   strace + " -f -qq -y -s 1048576 -o " + trace_ +
                   " -e trace=fsync,fdatasync,rename,renameat,renameat2,linkat,write,pwrite64 " +
                   docpipe_binary() + " \"$@\"\n");
    if (::chmod(wrapper.c_str(), 0755) != 0) throw std::runtime_error("chmod " + wrapper);
    daemon_.set_binary(wrapper);
  }
  ~TracedDaemon() {
    if (pid_t child = daemon_pid(); child > 0) ::kill(child, SIGKILL);
  }

  DaemonProcess& daemon() { return daemon_; }
  const std::string& trace() const { return trace_; }

  // The traced docpipe: strace's only child.
  pid_t daemon_pid() const {
    if (daemon_.pid() <= 0) return -1;
    std::ifstream children("/proc/" + std::to_string(daemon_.pid()) + "/task/" +
                           std::to_string(daemon_.pid()) + "/children");
    pid_t child = -1;
    children >> child;
    return child;
  }

  int stop() {
    pid_t child = daemon_pid();
    if (child <= 0) throw std::runtime_error("the traced daemon is not running");
    ::kill(child, SIGTERM);
    return daemon_.wait_exit();
  }

 private:
  std::string trace_;
  DaemonProcess daemon_;
};

// Runs a job copying `documents` (relative path -> content) under strace and returns its trace.
struct TracedRun {
  std::string in, out, spool;
  std::vector<Syscall> calls;
};

TracedRun run_traced(const TempDir& tmp, const std::string& strace, const std::string& durability,
                     const std::vector<std::string>& documents) {
  TracedRun run;
  make_dirs(tmp / "run");
  const std::string base = real_path(tmp / "run");
  run.in = base + "/in";
  run.out = base + "/out";
  run.spool = base + "/spool";
  for (const std::string& rel : documents) write_file(run.in + "/" + rel, "content of " + rel);
  TracedDaemon traced(strace, base, run.spool, {"--durability", durability, "--workers", "2"});
  traced.daemon().start();
  drop_job(run.spool, "durable.json", make_job("durable", run.in, run.out));
  JobOutcome outcome = traced.daemon().wait_for_job("durable");
  INFO("report: " << outcome.report.dump(2));
  REQUIRE(outcome.folder == "done");
  REQUIRE(outcome.report["counts"]["succeeded"] == documents.size());
  CHECK(traced.stop() == 0);
  run.calls = parse_trace(traced.trace());
  return run;
}

std::vector<std::string> test_documents() {
  std::vector<std::string> docs;
  for (int i = 0; i < 6; ++i) {
    docs.push_back("a/doc-" + std::to_string(i) + ".txt");
    docs.push_back("b/c/doc-" + std::to_string(i) + ".txt");
  }
  return docs;
}

bool under(const std::string& path, const std::string& folder) {
  return path == folder || path.rfind(folder + "/", 0) == 0;
}

TEST_CASE("durability: with fsync each output is fsynced before its rename and its folder after") {
  TempDir tmp;
  const std::string strace = usable_strace(tmp);
  if (strace.empty()) return;
  const std::vector<std::string> docs = test_documents();
  TracedRun run = run_traced(tmp, strace, "fsync", docs);
  REQUIRE(!run.calls.empty());
  const std::vector<Rename> all_renames = renames(run.calls);
  const auto all_syncs = syncs(run.calls);

  for (const std::string& rel : docs) {
    const std::string output = run.out + "/" + rel;
    const std::string folder = output.substr(0, output.rfind('/'));
    CAPTURE(output);
    std::vector<Rename> into;
    for (const Rename& r : all_renames) {
      if (r.to == output) into.push_back(r);
    }
    REQUIRE(into.size() == 1);
    const Rename& rename = into.front();
    CHECK(rename.from != output);
    CHECK(rename.from.rfind(folder + "/.", 0) == 0);  // a temp file in the output's folder
    bool temp_synced = std::any_of(all_syncs.begin(), all_syncs.end(), [&](const auto& s) {
      return s.second == rename.from && s.first < rename.index;
    });
    CHECK_MESSAGE(temp_synced, "no fsync of " << rename.from << " before its rename");
    bool folder_synced = std::any_of(all_syncs.begin(), all_syncs.end(), [&](const auto& s) {
      return s.second == folder && s.first > rename.index;
    });
    CHECK_MESSAGE(folder_synced, "no fsync of " << folder << " after the rename");
  }
}

// A writer takes the documents queued for it as one batch: each output is fsynced and renamed,
// then their folder is fsynced once, and only then are their records written (write_stage.cc).
// Under strace the writers are the slow stage, so documents queue up and batches form.
TEST_CASE(
    "durability: with fsync a folder is fsynced once per batch - after its renames and before "
    "their records") {
  TempDir tmp;
  const std::string strace = usable_strace(tmp);
  if (strace.empty()) return;
  std::vector<std::string> docs;
  for (int i = 0; i < 64; ++i) docs.push_back("a/doc-" + std::to_string(i) + ".txt");
  TracedRun run = run_traced(tmp, strace, "fsync", docs);
  const std::string folder = run.out + "/a";
  const std::string journal = run.spool + "/active/durable.journal";
  const std::vector<Rename> all_renames = renames(run.calls);
  std::vector<size_t> folder_syncs;
  for (const auto& [index, path] : syncs(run.calls)) {
    if (path == folder) folder_syncs.push_back(index);
  }
  for (const std::string& rel : docs) {
    const std::string output = run.out + "/" + rel;
    CAPTURE(output);
    size_t renamed = SIZE_MAX, recorded = SIZE_MAX;
    for (const Rename& r : all_renames) {
      if (r.to == output) renamed = r.index;
    }
    for (const Syscall& c : run.calls) {
      if (c.name == "write" && c.args.size() >= 2 && fd_path(c.args[0]) == journal &&
          unquote(c.args[1]).find("\"" + output + "\",\"state\":\"succeeded\"") !=
              std::string::npos) {
        recorded = c.index;
      }
    }
    REQUIRE(renamed != SIZE_MAX);
    REQUIRE(recorded != SIZE_MAX);
    CHECK_MESSAGE(std::any_of(folder_syncs.begin(), folder_syncs.end(),
                              [&](size_t at) { return at > renamed && at < recorded; }),
                  "no fsync of " << folder << " between the rename and the record");
  }
  // One per batch, not one per document (the first writer may well find a single document).
  MESSAGE(docs.size() << " documents, " << folder_syncs.size() << " fsyncs of their folder");
  CHECK(folder_syncs.size() <= docs.size() / 2);
}

TEST_CASE(
    "durability: journal records reach the kernel whole, in writes of their own, before the "
    "report") {
  TempDir tmp;
  const std::string strace = usable_strace(tmp);
  if (strace.empty()) return;
  const std::vector<std::string> docs = test_documents();
  TracedRun run = run_traced(tmp, strace, "fsync", docs);
  const std::string journal = run.spool + "/active/durable.journal";
  const std::string report = run.spool + "/done/durable.report.json";

  size_t report_renamed = SIZE_MAX;
  for (const Rename& r : renames(run.calls)) {
    if (r.to == report) report_renamed = r.index;
  }
  REQUIRE(report_renamed != SIZE_MAX);

  std::vector<std::pair<size_t, std::string>> writes;  // (index, data) to the journal
  for (const Syscall& c : run.calls) {
    if ((c.name == "write" || c.name == "pwrite64") && c.args.size() >= 2 &&
        fd_path(c.args[0]) == journal) {
      writes.emplace_back(c.index, unquote(c.args[1]));
    }
  }
  // The header, then the records: a writer's batch of documents in one write.
  REQUIRE(writes.size() >= 2);
  std::set<std::string> recorded;
  size_t records = 0;
  for (const auto& [index, data] : writes) {
    CAPTURE(data);
    // Whole records ("CRC32 payload\n" each), as many as the write's documents: records left in
    // a user-space buffer would reach the kernel later, or never if the daemon died meanwhile.
    CHECK((!data.empty() && data.back() == '\n'));
    records += static_cast<size_t>(std::count(data.begin(), data.end(), '\n'));
    CHECK(index < report_renamed);
    for (const std::string& rel : docs) {
      if (data.find("/" + rel + "\"") != std::string::npos) {
        recorded.insert(rel);
      }
    }
  }
  CHECK(recorded.size() == docs.size());
  CHECK(records == docs.size() + 1);  // the header and one per document, none twice
}

TEST_CASE("durability: with durability none no output file or output folder is fsynced") {
  TempDir tmp;
  const std::string strace = usable_strace(tmp);
  if (strace.empty()) return;
  const std::vector<std::string> docs = test_documents();
  TracedRun run = run_traced(tmp, strace, "none", docs);
  // The outputs were traced: each got its name once, linked into place (an anonymous O_TMPFILE
  // file: no temp name, and no rename, in the output folder).
  size_t output_links = 0;
  for (const Rename& r : publishes(run.calls)) output_links += under(r.to, run.out) ? 1 : 0;
  CHECK(output_links == docs.size());
  for (const Rename& r : renames(run.calls)) CHECK_FALSE(under(r.to, run.out));
  for (const auto& [index, path] : syncs(run.calls)) {
    CAPTURE(path);
    CHECK_FALSE(under(path, run.out));
  }
}

}  // namespace
}  // namespace e2e
