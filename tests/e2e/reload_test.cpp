// SIGHUP (issue 3): the daemon re-reads its --config file and applies the worker count live,
// without disturbing a running job; a broken config is refused with a logged reason and the
// daemon goes on with the old one. Transformer threads are named dp-transform-N, so the tests
// count them in /proc/PID/task/*/comm.

#include <dirent.h>
#include <doctest/doctest.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <fstream>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

// Threads of `pid` whose name starts with dp-transform-. Threads that exit meanwhile are skipped.
int transform_threads(pid_t pid) {
  std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(tasks.c_str());
  if (d == nullptr) return -1;
  int n = 0;
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(tasks + "/" + e->d_name + "/comm");
    std::string name;
    if (std::getline(comm, name) && name.rfind("dp-transform-", 0) == 0) ++n;
  }
  ::closedir(d);
  return n;
}

// Polls until the daemon runs `expected` transformer threads; returns the last count seen.
int wait_for_transform_threads(DaemonProcess& daemon, int expected) {
  int seen = -1;
  poll_until(milliseconds(10000), [&] {
    daemon.expect_running();
    seen = transform_threads(daemon.pid());
    return seen == expected;
  });
  return seen;
}

void send_sighup(const DaemonProcess& daemon) { REQUIRE(::kill(daemon.pid(), SIGHUP) == 0); }

size_t count_lines(const DaemonProcess& daemon, const std::string& needle) {
  return daemon.log_lines_with({needle}).size();
}

TEST_CASE("e2e reload: SIGHUP applies a changed worker count while a job runs undisturbed") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool", in = tmp / "in", out = tmp / "out";
  const std::string config = tmp / "docpipe.json";
  constexpr int kDocuments = 60;
  for (int i = 0; i < kDocuments; ++i) {
    write_file(in + "/doc-" + std::to_string(i) + ".txt", "document " + std::to_string(i) + "\n");
  }
  write_config(config, R"({"workers": 1})");
  DaemonProcess daemon(spool, {"--config", config});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  CHECK(wait_for_transform_threads(daemon, 1) == 1);

  // 50 ms per document: 3 s on one worker, so the reloads land while it runs.
  drop_job(spool, "steady.json", make_job("steady", in, out, {{{"op", "test.sleep"}, {"ms", 50}}}));
  REQUIRE(poll_until(kJobTimeout, [&] { return file_exists(out) && list_files(out).size() >= 3; }));

  write_config(config, R"({"workers": 4})");
  send_sighup(daemon);
  CHECK(wait_for_transform_threads(daemon, 4) == 4);
  INFO("log:\n" << daemon.log());
  CHECK(daemon.log_lines_with({" config reloaded ", "workers=4"}).size() == 1);
  CHECK(daemon_status(spool, tmp.path())["daemon"]["workers"] == 4);
  // The new threads take the running job's documents: more than one in the transform stage.
  std::optional<double> concurrent;
  CHECK(poll_until(milliseconds(10000), [&] {
    concurrent = daemon.metric("docpipe_stage_in_flight", {{"stage", "transform"}});
    return concurrent.value_or(0) >= 2 || file_exists(spool + "/done/steady.report.json");
  }));
  CHECK(concurrent.value_or(0) >= 2);

  // Fewer workers: the retired ones finish their document and exit.
  write_config(config, R"({"workers": 2})");
  send_sighup(daemon);
  CHECK(wait_for_transform_threads(daemon, 2) == 2);

  JobOutcome outcome = daemon.wait_for_job("steady");
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["state"] == "succeeded");
  CHECK(outcome.report["counts"]["succeeded"] == kDocuments);
  for (nlohmann::json& line : read_json_lines(outcome.manifest_path)) {
    CHECK(line["attempts"] == 1);
    CHECK(read_file(line["output"].get<std::string>()) == read_file(line["input"]));
  }
  CHECK(list_files(out).size() == kDocuments);
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e reload: SIGHUP with a broken config is refused and the old config stays") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool", config = tmp / "docpipe.json";
  write_file(tmp / "in/a.txt", "alpha\n");
  write_file(tmp / "in/b.txt", "bravo\n");
  write_config(config, R"({"workers": 2})");
  DaemonProcess daemon(spool, {"--config", config});
  daemon.start();
  CHECK(wait_for_transform_threads(daemon, 2) == 2);

  // A wrong type, text that is not JSON, an unknown key: each refused, naming the problem.
  const std::vector<std::pair<std::string, std::string>> broken{
      {R"({"workers": "many"})", "workers"},
      {R"({"workers": 3,)", "docpipe.json"},
      {R"({"workers": 3, "wrokers": 1})", "wrokers"},
  };
  for (size_t i = 0; i < broken.size(); ++i) {
    CAPTURE(broken[i].first);
    write_config(config, broken[i].first);
    send_sighup(daemon);
    bool refused = poll_until(milliseconds(10000), [&] {
      daemon.expect_running();
      return count_lines(daemon, " config reload refused") == i + 1;
    });
    INFO("log:\n" << daemon.log());
    REQUIRE(refused);
    std::string line = daemon.log_lines_with({" config reload refused"}).back();
    CHECK(line.find(broken[i].second) != std::string::npos);
    CHECK(transform_threads(daemon.pid()) == 2);
  }
  CHECK(count_lines(daemon, " config reloaded ") == 0);
  CHECK(daemon_status(spool, tmp.path())["daemon"]["workers"] == 2);

  // Still running on the old config: a job goes through.
  drop_job(spool, "after.json", make_job("after", tmp / "in", tmp / "out"));
  JobOutcome outcome = daemon.wait_for_job("after");
  CHECK(outcome.folder == "done");
  CHECK(read_file(tmp / "out/a.txt") == "alpha\n");
  CHECK(read_file(tmp / "out/b.txt") == "bravo\n");

  // And a fixed config is taken at the next SIGHUP.
  write_config(config, R"({"workers": 3})");
  send_sighup(daemon);
  CHECK(wait_for_transform_threads(daemon, 3) == 3);
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
