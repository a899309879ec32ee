// docpipe pause / resume through the real binary (issue 14, "Pause and resume intake"): while
// paused a running job goes on to its end, a dropped job file waits in incoming/ untouched, a
// socket submission is queued and nothing starts, also across a restart (SPOOL/paused.json);
// status, /metrics and the log say so; resume runs what waited. Who may pause is in
// control_rights_test.cpp.

#include <doctest/doctest.h>

#include <string>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

void write_documents(const std::string& dir, int n) {
  for (int i = 0; i < n; ++i) write_file(dir + "/doc-" + std::to_string(i) + ".txt", "text\n");
}

TEST_CASE("e2e pause: nothing starts while paused, across a restart, and resume runs it all") {
  TempDir tmp;
  const std::string spool = tmp / "spool";
  const std::string scratch = tmp.path();
  write_documents(tmp / "in-slow", 10);
  write_documents(tmp / "in", 3);

  auto daemon = std::make_unique<DaemonProcess>(spool, std::vector<std::string>{"--workers", "1"});
  daemon->set_binary(DOCPIPE_TEST_BINARY);
  daemon->start();
  CHECK(daemon->metric("docpipe_intake_paused") == 0);

  // A job under way: 10 documents of 150 ms.
  drop_job(spool, "running.json",
           make_job("running", tmp / "in-slow", tmp / "out-running",
                    {{{"op", "test.sleep"}, {"ms", 150}}}));
  REQUIRE(!daemon->wait_for_log_lines({"job started", "job=running"}).empty());

  CommandResult paused =
      docpipe({"pause", "--spool", spool, "--reason", "mail relay down"}, scratch);
  INFO("pause: " << paused.out << paused.err);
  REQUIRE(paused.exit_code == 0);
  CHECK(paused.out.find("intake: paused since ") == 0);
  CHECK(paused.out.find("(mail relay down)") != std::string::npos);
  CHECK(daemon->metric("docpipe_intake_paused") == 1);
  CHECK(file_exists(spool + "/paused.json"));
  // Pausing again keeps the first pause (its time, user and reason), and says so.
  CommandResult again_paused = docpipe({"pause", "--spool", spool, "--reason", "other"}, scratch);
  CHECK(again_paused.exit_code == 0);
  CHECK(again_paused.err == "docpipe pause: already paused\n");
  CHECK(again_paused.out.find("(mail relay down)") != std::string::npos);

  // A drop waits in incoming/ untouched; a socket submission is accepted and queued.
  drop_job(spool, "dropped.json", make_job("dropped", tmp / "in", tmp / "out-dropped"));
  REQUIRE(
      !daemon->wait_for_log_lines({"job file waits in incoming/", "file=dropped.json"}).empty());
  write_file(tmp / "submitted.json",
             make_job("submitted", tmp / "in", tmp / "out-submitted").dump());
  CommandResult submitted = docpipe({"submit", "--spool", spool, tmp / "submitted.json"}, scratch);
  INFO("submit: " << submitted.out << submitted.err);
  REQUIRE(submitted.exit_code == 0);
  CHECK(submitted.err.find("intake is paused") != std::string::npos);

  // The running job goes on to its end while paused.
  JobOutcome running = daemon->wait_for_job("running");
  CHECK(running.folder == "done");
  CHECK(running.report["counts"]["succeeded"] == 10);

  nlohmann::json status = daemon_status(spool, scratch);
  INFO(status.dump(2));
  CHECK(status["daemon"]["intake"]["state"] == "paused");
  CHECK(status["daemon"]["intake"]["reason"] == "mail relay down");
  CHECK(status["daemon"]["intake"]["by_uid"] == ::geteuid());
  CHECK(status["daemon"]["jobs_running"] == 0);
  CHECK(status["daemon"]["jobs_queued"] == 1);
  CHECK(file_exists(spool + "/incoming/dropped.json"));
  CHECK_FALSE(file_exists(spool + "/done/submitted.json"));

  // A restart stays paused: the queued job is resumed into the queue, the drop still waits.
  CHECK(daemon->terminate() == 0);
  daemon = std::make_unique<DaemonProcess>(spool, std::vector<std::string>{"--workers", "1"});
  daemon->set_binary(DOCPIPE_TEST_BINARY);
  daemon->start();
  CHECK(!daemon
             ->wait_for_log_lines(
                 {"intake is paused (recorded before this start)", "reason=\"mail relay down\""})
             .empty());
  CHECK(daemon->metric("docpipe_intake_paused") == 1);
  REQUIRE(
      !daemon->wait_for_log_lines({"job file waits in incoming/", "file=dropped.json"}).empty());
  status = daemon_status(spool, scratch);
  CHECK(status["daemon"]["intake"]["state"] == "paused");
  CHECK(status["daemon"]["jobs_queued"] == 1);
  CHECK(status["daemon"]["jobs_running"] == 0);
  CHECK(file_exists(spool + "/incoming/dropped.json"));

  CommandResult resumed = docpipe({"resume", "--spool", spool}, scratch);
  INFO("resume: " << resumed.out << resumed.err);
  REQUIRE(resumed.exit_code == 0);
  CHECK(resumed.out == "intake: open\n");
  for (const char* id : {"submitted", "dropped"}) {
    JobOutcome outcome = daemon->wait_for_job(id);
    CAPTURE(id);
    CHECK(outcome.folder == "done");
    CHECK(outcome.report["counts"]["succeeded"] == 3);
  }
  CHECK(daemon->metric("docpipe_intake_paused") == 0);
  CHECK_FALSE(file_exists(spool + "/paused.json"));
  CHECK(daemon_status(spool, scratch)["daemon"]["intake"]["state"] == "open");

  // Resuming what is not paused says so, and changes nothing.
  CommandResult again = docpipe({"resume", "--spool", spool}, scratch);
  CHECK(again.exit_code == 0);
  CHECK(again.err == "docpipe resume: intake was not paused\n");
  CHECK(daemon->terminate() == 0);
}

TEST_CASE("e2e pause: an unreadable pause file keeps intake paused and says why") {
  TempDir tmp;
  const std::string spool = tmp / "spool";
  write_documents(tmp / "in", 1);
  write_file(spool + "/paused.json", "{ not json");
  DaemonProcess daemon(spool, {"--workers", "1"});
  daemon.start();
  CHECK(!daemon.wait_for_log_lines({"cannot read the recorded pause", "paused.json"}).empty());
  drop_job(spool, "held.json", make_job("held", tmp / "in", tmp / "out"));
  REQUIRE(!daemon.wait_for_log_lines({"job file waits in incoming/", "file=held.json"}).empty());
  nlohmann::json status = daemon_status(spool, tmp.path());
  CHECK(status["daemon"]["intake"]["state"] == "paused");
  CHECK(status["daemon"]["intake"]["reason"].get<std::string>().find("unreadable pause file") == 0);

  REQUIRE(docpipe({"resume", "--spool", spool}, tmp.path()).exit_code == 0);
  CHECK(daemon.wait_for_job("held").folder == "done");
  CHECK_FALSE(file_exists(spool + "/paused.json"));
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
