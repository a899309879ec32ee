// The control socket and the CLI on it (issue 3): `submit --wait` with progress, `cancel` of a
// running and of a queued job, and requests that are malformed or too large, which get an error
// reply while the daemon goes on serving.

#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <regex>
#include <sstream>

#include "tests/e2e/control_client.h"
#include "tests/e2e/harness.h"

namespace e2e {
namespace {

long elapsed_ms(Clock::time_point since) {
  return static_cast<long>(std::chrono::duration_cast<milliseconds>(Clock::now() - since).count());
}

// A folder of `n` small documents named PREFIX-NNNN.txt.
void write_documents(const std::string& dir, const std::string& prefix, int n) {
  for (int i = 0; i < n; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "/%s-%04d.txt", prefix.c_str(), i);
    write_file(dir + name, prefix + " " + std::to_string(i) + "\n");
  }
}

nlohmann::json slow_job(const std::string& id, const std::string& in, const std::string& out,
                        int ms) {
  return make_job(id, in, out, {{{"op", "test.sleep"}, {"ms", ms}}});
}

TEST_CASE("e2e control: submit --wait on a 2000-document job prints progress and exits 0") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool";
  write_documents(tmp / "in", "bulk", 2000);
  DaemonProcess daemon(spool, {"--workers", "8"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  // 10 ms per document on 8 workers: at least 2.5 s, so the 2 s progress lines show.
  write_file(tmp / "bulk.json", slow_job("bulk", tmp / "in", tmp / "out", 10).dump(2));

  CommandResult r = docpipe({"submit", "--spool", spool, "--wait", tmp / "bulk.json"}, tmp.path());
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.err.empty());
  std::vector<std::string> lines = lines_of(r.out);
  REQUIRE(lines.size() >= 4);  // submitted, at least two progress lines, the result
  CHECK(lines.front() == "submitted job \"bulk\" (2000 document(s))");
  CHECK(std::regex_match(
      lines.back(),
      std::regex("bulk: succeeded, 2000 succeeded, 0 failed, 0 skipped of 2000 in [0-9.]+ s")));
  // Plain lines in between (stdout is not a terminal): progress that only grows.
  const std::regex progress(
      "bulk: (queued|running) ([0-9]+)/2000 \\(([0-9]+)%\\), 0 failed, [0-9]+ docs/s"
      "(, ETA [0-9hms]+)?");
  long previous = -1;
  for (size_t i = 1; i + 1 < lines.size(); ++i) {
    INFO(lines[i]);
    std::smatch m;
    REQUIRE(std::regex_match(lines[i], m, progress));
    long done = std::stol(m[2]);
    CHECK(done >= previous);
    CHECK(done < 2000);
    previous = done;
  }
  CHECK(read_json(spool + "/done/bulk.report.json")["counts"]["succeeded"] == 2000);
  CHECK(list_files(tmp / "out").size() == 2000);
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e control: cancel stops a running job promptly and its report lists what was done") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool", in = tmp / "in", out = tmp / "out";
  constexpr int kDocuments = 100;
  write_documents(in, "long", kDocuments);
  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  write_file(tmp / "long.json", slow_job("long", in, out, 100).dump(2));
  CommandResult submitted = docpipe({"submit", "--spool", spool, tmp / "long.json"}, tmp.path());
  REQUIRE(submitted.exit_code == 0);
  REQUIRE(poll_until(kJobTimeout, [&] {
    daemon.expect_running();
    return file_exists(out) && list_files(out).size() >= 4;
  }));

  Clock::time_point asked = Clock::now();
  CommandResult cancel = docpipe({"cancel", "--spool", spool, "long"}, tmp.path());
  long cancel_ms = elapsed_ms(asked);
  INFO("stdout: " << cancel.out << "\nstderr: " << cancel.err);
  CHECK(cancel.exit_code == 0);
  CHECK(cancel.out == "long: cancelling\n");
  CHECK(cancel_ms < 2000);
  JobOutcome outcome = daemon.wait_for_job("long");
  long finished_ms = elapsed_ms(asked);
  CHECK(finished_ms < 2000);  // in-flight documents stop at their next interruption check

  nlohmann::json report = outcome.report;
  INFO("report: " << report.dump(2));
  CHECK(outcome.folder == "failed");
  CHECK(report["state"] == "cancelled");
  int succeeded = report["counts"]["succeeded"];
  CHECK(succeeded >= 4);
  CHECK(succeeded < kDocuments);
  CHECK(report["counts"]["total"] == kDocuments);
  CHECK(report["counts"]["failed"] == 0);
  CHECK(report["counts"]["cancelled"] == kDocuments - succeeded);
  // What was done is listed and on disk, whole; nothing else is.
  std::vector<nlohmann::json> manifest = read_json_lines(outcome.manifest_path);
  CHECK(manifest.size() == static_cast<size_t>(succeeded));
  for (nlohmann::json& line : manifest) {
    INFO(line.dump());
    CHECK(line["state"] == "succeeded");
    CHECK(read_file(line["output"].get<std::string>()) == read_file(line["input"]));
  }
  CHECK(list_files(out).size() == static_cast<size_t>(succeeded));
  CHECK(dot_files_under(out).empty());

  CommandResult status = docpipe({"status", "--spool", spool, "long"}, tmp.path());
  CHECK(status.exit_code == 0);
  CHECK(status.out.rfind("long: cancelled, " + std::to_string(succeeded) + "/100 succeeded", 0) ==
        0);
  CHECK(daemon.wait_for_metric("docpipe_jobs_total", {{"outcome", "cancelled"}}, 1) == 1);
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e control: cancel of a queued job moves it to failed as cancelled at once") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool";
  write_documents(tmp / "in-first", "first", 50);
  write_documents(tmp / "in-second", "second", 3);
  write_file(tmp / "docpipe.json", R"({"max_active_jobs": 1})");
  DaemonProcess daemon(spool, {"--config", tmp / "docpipe.json", "--workers", "2"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  ControlClient control(spool + "/control.sock");

  nlohmann::json first = control.request(
      {{"op", "submit"}, {"job", slow_job("first", tmp / "in-first", tmp / "out-first", 100)}});
  REQUIRE(first["ok"] == true);
  nlohmann::json second = control.request(
      {{"op", "submit"}, {"job", slow_job("second", tmp / "in-second", tmp / "out-second", 1)}});
  REQUIRE(second["ok"] == true);
  CHECK(control.request({{"op", "status"}, {"id", "first"}})["job"]["state"] == "running");
  CHECK(control.request({{"op", "status"}, {"id", "second"}})["job"]["state"] == "queued");

  Clock::time_point asked = Clock::now();
  CommandResult cancel = docpipe({"cancel", "--spool", spool, "second"}, tmp.path());
  INFO("stdout: " << cancel.out << "\nstderr: " << cancel.err);
  CHECK(cancel.exit_code == 0);
  CHECK(cancel.out == "second: cancelled\n");
  JobOutcome outcome = daemon.wait_for_job("second");
  CHECK(elapsed_ms(asked) < 2000);
  nlohmann::json report = outcome.report;
  INFO("report: " << report.dump(2));
  CHECK(outcome.folder == "failed");
  CHECK(report["state"] == "cancelled");
  CHECK(report["counts"] ==
        nlohmann::json{
            {"total", 3}, {"succeeded", 0}, {"failed", 0}, {"skipped", 0}, {"cancelled", 3}});
  CHECK(read_json_lines(outcome.manifest_path).empty());
  CHECK_FALSE(file_exists(tmp / "out-second"));

  // The running job was not disturbed; cancelling it too ends the test quickly.
  nlohmann::json still = control.request({{"op", "status"}, {"id", "first"}});
  CHECK(still["job"]["state"] == "running");
  CHECK(still["job"]["failed"] == 0);
  CHECK(control.request({{"op", "cancel"}, {"id", "first"}})["ok"] == true);
  CHECK(daemon.wait_for_job("first").report["state"] == "cancelled");
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e control: malformed and oversized requests get error replies and serving goes on") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool";
  write_documents(tmp / "in", "after", 3);
  DaemonProcess daemon(spool, {});
  daemon.start();
  const std::string socket = spool + "/control.sock";

  {
    // Each bad line gets its own error reply, in order, on a connection that stays usable.
    ControlClient control(socket);
    REQUIRE(control.send(
        "this is not json\n"
        "[1,2,3]\n"
        "{\"op\":42}\n"
        "{\"op\":\"explode\"}\n"
        "{\"op\":\"cancel\",\"id\":\"nope\"}\n"
        "{\"op\":\"status\",\"id\":7}\n"
        "{\"op\":\"submit\"}\n"
        "{\"op\":\"submit\",\"job\":{\"input\":{\"dir\":\"/nonexistent\"},\"bogus\":1}}\n"
        "{\"op\":\"status\"}\n"));
    const std::vector<std::string> expected_words{"malformed", "malformed", "op",  "explode",
                                                  "nope",      "id",        "job", "invalid"};
    for (const std::string& word : expected_words) {
      CAPTURE(word);
      std::optional<nlohmann::json> r = control.reply();
      REQUIRE(r.has_value());
      INFO("reply: " << r->dump());
      CHECK((*r)["ok"] == false);
      REQUIRE((*r)["error"].is_string());
      CHECK((*r)["error"].get<std::string>().find(word) != std::string::npos);
    }
    std::optional<nlohmann::json> status = control.reply();
    REQUIRE(status.has_value());
    CHECK((*status)["ok"] == true);
    CHECK((*status)["daemon"]["state"] == "running");
  }

  {
    // 4 MiB and more without a newline: one error reply, then the daemon hangs up.
    ControlClient control(socket);
    control.send(std::string((4u << 20) + (64u << 10), 'x'));
    std::optional<nlohmann::json> r = control.reply();
    REQUIRE(r.has_value());
    INFO("reply: " << r->dump());
    CHECK((*r)["ok"] == false);
    CHECK((*r)["error"].get<std::string>().find("too large") != std::string::npos);
    CHECK_FALSE(control.reply().has_value());
  }

  {
    // A client that disconnects half-way through a request.
    ControlClient control(socket);
    REQUIRE(control.send("{\"op\":\"sta"));
  }

  // Still serving: status, and a job submitted over the socket runs to completion.
  daemon.expect_running();
  ControlClient control(socket);
  CHECK(control.request({{"op", "status"}})["ok"] == true);
  nlohmann::json submitted =
      control.request({{"op", "submit"}, {"job", make_job("after", tmp / "in", tmp / "out")}});
  INFO("submit reply: " << submitted.dump());
  CHECK(submitted["ok"] == true);
  CHECK(submitted["id"] == "after");
  JobOutcome outcome = daemon.wait_for_job("after");
  CHECK(outcome.folder == "done");
  CHECK(list_files(tmp / "out").size() == 3);
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
