// exec pools through the real daemon: many documents through N long-lived converter processes
// (deploy/examples/pool_upper.py, each writing its pid to a file when it starts), recycling after
// max_documents, a converter killed with SIGKILL mid-job, the docpipe_command_pool_* metrics, and
// no converter left once the daemon has stopped.

#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <set>
#include <sstream>

#include "tests/e2e/harness.h"
#include "tests/support/processes.h"

namespace e2e {
namespace {

using docpipe::test::exited_within;
using docpipe::test::zombies_of;

// The system's interpreter, not a python3 found on PATH first (a pyenv shim is a script that
// adds its own variables to the environment and costs a start of its own).
const std::string kPython = "/usr/bin/python3";
const std::string kUpper = DOCPIPE_SOURCE_DIR "/deploy/examples/pool_upper.py";
const std::string kFaulty = DOCPIPE_SOURCE_DIR "/tests/support/pool_faulty.py";

// A daemon (2 transformer threads) whose config has one pool command, "upper", with `argv`
// (to which --pid-log PIDS is appended) and `pool` settings.
struct PoolDaemon {
  TempDir tmp;
  std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool", pids = tmp / "pids";
  DaemonProcess daemon;

  PoolDaemon(std::vector<std::string> argv, nlohmann::json pool)
      : daemon(write_config(tmp, std::move(argv), std::move(pool)),
               {"--config", tmp / "docpipe.json", "--workers", "2", "--durability", "none"}) {
    daemon.start();
  }

  static std::string write_config(const TempDir& tmp, std::vector<std::string> argv,
                                  nlohmann::json pool) {
    argv.push_back("--pid-log");
    argv.push_back(tmp / "pids");
    nlohmann::json config = {
        {"commands",
         {{"upper", {{"argv", argv}, {"timeout_ms", 20000}, {"mode", "pool"}, {"pool", pool}}}}}};
    write_file(tmp / "docpipe.json", config.dump(2) + "\n");
    return tmp / "spool";
  }

  // Pids the converters wrote as they started, in order.
  std::vector<pid_t> started() const {
    std::vector<pid_t> out;
    if (!file_exists(pids)) return out;
    std::istringstream lines(read_file(pids));
    for (pid_t pid; lines >> pid;) out.push_back(pid);
    return out;
  }

  // Documents doc-N.txt, N < n, each a few lines; the upper-cased text by name.
  std::map<std::string, std::string> write_documents(int n, const std::string& tag) {
    std::map<std::string, std::string> expected;
    for (int i = 0; i < n; ++i) {
      const std::string name = tag + "-" + std::to_string(i) + ".txt";
      std::string text = "document " + std::to_string(i) + " of " + tag + ": hello, pool\n";
      for (int k = 0; k < i * 37; ++k) text += "line " + std::to_string(k) + " of it\n";
      write_file(in + "/" + tag + "/" + name, text);
      std::string upper = text;
      for (char& c : upper)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      expected[name] = upper;
    }
    return expected;
  }

  // Runs job `tag` over its documents and checks every output.
  JobOutcome run_job(const std::string& tag, const std::map<std::string, std::string>& expected) {
    drop_job(
        spool, tag + ".json",
        make_job(tag, in + "/" + tag, out + "/" + tag, {{{"op", "exec"}, {"command", "upper"}}}));
    JobOutcome outcome = daemon.wait_for_job(tag);
    INFO("report: " << outcome.report.dump(2));
    CHECK(outcome.folder == "done");
    CHECK(outcome.report["counts"]["succeeded"] == expected.size());
    for (const auto& [name, text] : expected) {
      INFO(name);
      CHECK(describe_difference(text, read_file(out + "/" + tag + "/" + name)) == "");
    }
    return outcome;
  }

  double pool_metric(const std::string& name, const std::string& label,
                     const std::string& value) const {
    return daemon.metric(name, {{"command", "upper"}, {label, value}}).value_or(-1);
  }
};

bool alive(pid_t pid) { return !exited_within(pid, std::chrono::milliseconds(0)); }

}  // namespace

TEST_CASE("e2e exec pool: jobs share N converter processes, outputs right, the count stays N") {
  // A converter that stays when its stdin ends: only the daemon's stop (SIGTERM) ends it, so the
  // check after terminate() shows the stop, not the closing of the pipes by the daemon's exit.
  PoolDaemon d({kPython, kFaulty, "ignore-eof"}, {{"size", 2}, {"max_documents", 100000}});
  d.run_job("first", d.write_documents(60, "first"));
  d.run_job("second", d.write_documents(40, "second"));
  // 100 documents, two jobs, never more than the pool's 2 processes, started once.
  const std::vector<pid_t> pids = d.started();
  CHECK(pids.size() >= 1);
  CHECK(pids.size() <= 2);
  for (pid_t pid : pids) CHECK(alive(pid));
  CHECK(d.pool_metric("docpipe_command_pool_processes", "state", "idle") == double(pids.size()));
  CHECK(d.pool_metric("docpipe_command_pool_processes", "state", "busy") == 0);
  CHECK(d.pool_metric("docpipe_command_pool_starts_total", "result", "ok") == double(pids.size()));
  CHECK(d.pool_metric("docpipe_command_pool_documents_total", "outcome", "succeeded") == 100);
  CHECK(d.pool_metric("docpipe_command_pool_recycles_total", "reason", "crash") == 0);
  // Stopping the daemon ends them all (SIGTERM after EOF), and it reaps them before it exits.
  CHECK(d.daemon.terminate() == 0);
  for (pid_t pid : pids) CHECK_FALSE(alive(pid));
}

TEST_CASE("e2e exec pool: processes are replaced after max_documents, observably") {
  PoolDaemon d({kPython, kUpper}, {{"size", 2}, {"max_documents", 10}});
  d.run_job("many", d.write_documents(60, "many"));
  // Each process serves 10 documents and is replaced. A live process has served 1 to 9, so 60
  // documents took 6 processes (none left), or 7 (two left, with 10 documents between them).
  REQUIRE(d.daemon.wait_for_metric("docpipe_command_pool_processes",
                                   {{"command", "upper"}, {"state", "stopping"}}, 0) == 0.0);
  const std::vector<pid_t> pids = d.started();
  CHECK(pids.size() >= 6);
  CHECK(pids.size() <= 7);
  const double recycled =
      d.pool_metric("docpipe_command_pool_recycles_total", "reason", "max_documents");
  const double live = d.pool_metric("docpipe_command_pool_processes", "state", "idle");
  CHECK(recycled >= 5);
  CHECK(live <= 2);
  CHECK(recycled + live == double(pids.size()));
  int running = 0;
  for (pid_t pid : pids) running += alive(pid) ? 1 : 0;
  CHECK(running == live);  // the replaced ones are gone, reaped
  CHECK(zombies_of(d.daemon.pid()) == 0);
  CHECK(d.daemon.terminate() == 0);
  for (pid_t pid : pids) CHECK_FALSE(alive(pid));
}

TEST_CASE(
    "e2e exec pool: a converter killed with SIGKILL mid-job is replaced and the job succeeds") {
  // The first process to get a document writes its pid and hangs in it: killed there, it is
  // certainly mid-document. The others take 300 ms a document, so the pool needs its second
  // place again and starts a replacement.
  TempDir marks;
  const std::string hung = marks / "hung";
  PoolDaemon d({kPython, kFaulty, "hang-once", hung, "300"},
               {{"size", 2}, {"max_documents", 100000}});
  const auto expected = d.write_documents(20, "killed");
  drop_job(d.spool, "killed.json",
           make_job("killed", d.in + "/killed", d.out + "/killed",
                    {{{"op", "exec"}, {"command", "upper"}}}));
  REQUIRE(poll_until(milliseconds(20000),
                     [&] { return file_exists(hung) && read_file(hung).ends_with("\n"); }));
  const pid_t victim = static_cast<pid_t>(std::stol(read_file(hung)));
  REQUIRE(victim > 0);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  JobOutcome outcome = d.daemon.wait_for_job("killed");
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["counts"]["succeeded"] == 20);
  for (const auto& [name, text] : expected) {
    INFO(name);
    CHECK(describe_difference(text, read_file(d.out + "/killed/" + name)) == "");
  }
  CHECK(d.pool_metric("docpipe_command_pool_recycles_total", "reason", "crash") == 1);
  CHECK(d.pool_metric("docpipe_command_pool_documents_total", "outcome", "crashed") == 1);
  CHECK(d.daemon.metric("docpipe_document_retries_total").value_or(0) == 1);
  CHECK(d.started().size() == 3);  // the two, and the one that replaced the killed one
  CHECK(zombies_of(d.daemon.pid()) == 0);
  CHECK(d.daemon.terminate() == 0);
  for (pid_t pid : d.started()) CHECK_FALSE(alive(pid));
}

}  // namespace e2e
