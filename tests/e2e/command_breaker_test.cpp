// A command's circuit breaker through the real daemon (issue 13): a converter that fails while a
// flag file exists opens its breaker after N failures; status and /metrics show it; the other
// documents wait instead of failing; once the flag is gone the half-open probe succeeds and the
// job finishes with every document. A converter that stays down: cancel ends the waiting job at
// once, and the daemon stops promptly with documents waiting.

#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>

#include "tests/e2e/harness.h"
#include "tests/support/processes.h"

namespace e2e {
namespace {

using docpipe::test::zombies_of;
using std::chrono::milliseconds;

constexpr int kFailures = 3;

// A daemon whose config allow-lists `conv`: uppercases, but exits 1 while `down` exists.
struct BreakerDaemon {
  TempDir tmp;
  std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  std::string flag = tmp / "down";
  DaemonProcess daemon;

  explicit BreakerDaemon(int64_t open_ms)
      : daemon(setup(tmp, open_ms),
               {"--config", tmp / "docpipe.json", "--workers", "2", "--durability", "none"}) {
    write_file(flag, "");
    daemon.start();
  }

  static std::string setup(const TempDir& tmp, int64_t open_ms) {
    const std::string script = tmp / "conv.sh";
    write_file(script, "if [ -e '" + tmp / "down" +
                           "' ]; then echo 'converter down' >&2; exit 1; fi\nexec tr a-z A-Z\n");
    nlohmann::json config = {
        {"shutdown_grace_ms", 30000},
        {"commands",
         {{"conv",
           {{"argv", {"/bin/sh", script}},
            {"timeout_ms", 10000},
            {"breaker",
             {{"failures", kFailures}, {"open_ms", open_ms}, {"max_open_ms", 2 * open_ms}}}}}}}};
    write_file(tmp / "docpipe.json", config.dump(2) + "\n");
    return tmp / "spool";
  }

  void write_documents(int n) {
    for (int i = 0; i < n; ++i) {
      write_file(in + "/doc-" + std::to_string(i) + ".txt", "document " + std::to_string(i) + "\n");
    }
  }

  nlohmann::json job(const std::string& id) {
    nlohmann::json j = make_job(id, in, out, {{{"op", "exec"}, {"command", "conv"}}});
    // Each failed probe costs one document an attempt: room for several on a slow machine.
    j["limits"] = {{"max_attempts", 10}};
    return j;
  }

  nlohmann::json status_json() {
    CommandResult r = docpipe({"status", "--spool", spool, "--json"}, tmp.path());
    INFO("stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    return nlohmann::json::parse(r.out);
  }

  double state() {
    return daemon.metric("docpipe_command_breaker_state", {{"command", "conv"}}).value_or(-1);
  }
};

TEST_CASE(
    "e2e breaker: a command that is down opens its breaker, documents wait, and the job "
    "succeeds once it is back") {
  BreakerDaemon d(2000);
  constexpr int kDocuments = 20;
  d.write_documents(kDocuments);
  CHECK(d.state() == 0);  // the series is there before anything failed
  drop_job(d.spool, "conv.json", d.job("conv"));

  REQUIRE(d.daemon.wait_for_metric("docpipe_command_breaker_state", {{"command", "conv"}}, 1) == 1);
  CHECK(d.daemon.metric("docpipe_command_breaker_transitions_total",
                        {{"command", "conv"}, {"to", "open"}}) >= 1);
  {
    nlohmann::json s = d.status_json();
    INFO("status: " << s.dump(2));
    const nlohmann::json& c = s["daemon"]["commands"]["conv"];
    CHECK(c["state"] == "open");
    CHECK(c["failures"] == kFailures);
    CHECK(c["consecutive_failures"].get<int>() >= kFailures);
    CHECK(c["opened_at"].get<std::string>().ends_with("Z"));
    CHECK(c["next_probe_at"].get<std::string>() > c["opened_at"].get<std::string>());
    CHECK(c["last_failure"].get<std::string>().find(
              "exited with status 1; stderr: converter down") != std::string::npos);
    // The job runs on: its documents wait, none has failed.
    REQUIRE(s["jobs"].size() == 1);
    CHECK(s["jobs"][0]["id"] == "conv");
    CHECK(s["jobs"][0]["failed"] == 0);
    CHECK(s["jobs"][0]["succeeded"] == 0);
  }
  {
    CommandResult text = docpipe({"status", "--spool", d.spool}, d.tmp.path());
    INFO("status: " << text.out << text.err);
    CHECK(text.out.find("  command conv: open since ") != std::string::npos);
    CHECK(text.out.find(" consecutive failures; next probe at ") != std::string::npos);
  }
  CHECK_FALSE(file_exists(d.spool + "/done/conv.report.json"));
  CHECK_FALSE(file_exists(d.spool + "/failed/conv.report.json"));
  CHECK(d.daemon.log_lines_with({"command breaker: open", "conv"}).size() >= 1);

  // The converter is back: the next probe succeeds and every document goes through.
  std::remove(d.flag.c_str());
  JobOutcome outcome = d.daemon.wait_for_job("conv");
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["counts"]["succeeded"] == kDocuments);
  CHECK(outcome.report["counts"]["failed"] == 0);
  for (int i = 0; i < kDocuments; ++i) {
    CHECK(read_file(d.out + "/doc-" + std::to_string(i) + ".txt") ==
          "DOCUMENT " + std::to_string(i) + "\n");
  }
  // Only documents that really ran the command and failed were charged: the first failures and
  // failed probes, a handful, not every document that waited.
  int retried = 0;
  for (const nlohmann::json& line : read_json_lines(outcome.manifest_path)) {
    if (line["attempts"].get<int>() > 1) ++retried;
  }
  CHECK(retried >= 1);
  CHECK(retried <= kFailures + 4);
  CHECK(d.state() == 0);
  CHECK(d.daemon.metric("docpipe_command_breaker_transitions_total",
                        {{"command", "conv"}, {"to", "half-open"}}) >= 1);
  CHECK(d.daemon.metric("docpipe_command_breaker_transitions_total",
                        {{"command", "conv"}, {"to", "closed"}}) == 1);
  CHECK(d.status_json()["daemon"]["commands"]["conv"]["state"] == "closed");
  CHECK(d.daemon.log_lines_with({"command breaker: the probe succeeded", "conv"}).size() == 1);
  CHECK(zombies_of(d.daemon.pid()) == 0);
  CHECK(d.daemon.terminate() == 0);
}

TEST_CASE(
    "e2e breaker: a command that stays down - cancel ends the waiting job and stop is "
    "prompt") {
  BreakerDaemon d(1000);
  constexpr int kDocuments = 10;
  d.write_documents(kDocuments);
  drop_job(d.spool, "stuck.json", d.job("stuck"));
  REQUIRE(d.daemon.wait_for_metric("docpipe_command_breaker_state", {{"command", "conv"}}, 1) == 1);

  CommandResult cancel = docpipe({"cancel", "--spool", d.spool, "stuck"}, d.tmp.path());
  INFO("stdout: " << cancel.out << "\nstderr: " << cancel.err);
  CHECK(cancel.exit_code == 0);
  JobOutcome outcome = d.daemon.wait_for_job("stuck", milliseconds(10000));
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.report["state"] == "cancelled");
  CHECK(outcome.report["counts"]["failed"] == 0);  // waiting is not failing
  CHECK(outcome.report["counts"]["succeeded"] == 0);

  // Failed probes re-open it for twice as long (capped), and say so.
  drop_job(d.spool, "again.json", d.job("again"));
  const std::vector<std::string> reopened = d.daemon.wait_for_log_lines(
      {"command breaker: the probe failed", "conv", "open_ms=2000"}, milliseconds(30000));
  CHECK_FALSE(reopened.empty());
  CHECK(d.status_json()["daemon"]["commands"]["conv"]["open_ms"] == 2000);

  // Documents of "again" wait on the breaker; a stop does not wait out the 30 s grace for them.
  const auto start = Clock::now();
  CHECK(d.daemon.terminate() == 0);
  const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  CHECK(took < milliseconds(10000));
  // Not failed or cancelled: the job stays in active/ and resumes at the next start.
  CHECK(file_exists(d.spool + "/active/again.json"));
  CHECK_FALSE(file_exists(d.spool + "/failed/again.report.json"));
}

}  // namespace
}  // namespace e2e
