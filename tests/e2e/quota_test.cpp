// Quotas per submitter (issue 14, docs/design.md "Quotas per submitter (issue 14)") through the
// real binary: the CLI runs as uid 65534 (nobody) under setpriv. Intake paused holds socket
// submissions queued; a job that runs slowly on the only active slot holds them while dropped job
// files are taken. Over a cap, the submit is refused with the reason, a dropped file goes to
// rejected/ with it; root is never limited; status and /metrics show it; a reload applies new
// caps to new submits; jobs resumed after kill -9 count but are never refused.

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

constexpr uid_t kNobody = 65534;

bool running_as_root() { return ::geteuid() == 0; }

// `docpipe ARGS...` as nobody (uid and gid 65534, no supplementary group).
CommandResult nobody(const std::vector<std::string>& args, const std::string& scratch) {
  std::vector<std::string> argv{"/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                                "--clear-groups", docpipe_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, scratch);
}

void write_documents(const std::string& dir, int n) {
  for (int i = 0; i < n; ++i) write_file(dir + "/doc-" + std::to_string(i) + ".txt", "text\n");
}

// The test's folder traversable by nobody, inputs readable (umask 022), and an output folder
// nobody owns; the control socket open to every user (the deployment decides who connects).
void share_with_nobody(const TempDir& tmp) {
  REQUIRE(::chmod(tmp.path().c_str(), 0711) == 0);
  make_dirs(tmp / "out-nobody");
  REQUIRE(::chown((tmp / "out-nobody").c_str(), kNobody, kNobody) == 0);
}
void open_socket_to_all(const std::string& spool) {
  REQUIRE(::chmod((spool + "/control.sock").c_str(), 0666) == 0);
}

// A job file for `docpipe submit`, readable by nobody; nobody's jobs write below out-nobody/.
std::string job_file(const TempDir& tmp, const std::string& id, int priority = 0,
                     const std::string& out_parent = "out-nobody") {
  nlohmann::json job = make_job(id, tmp / "in", tmp / (out_parent + "/" + id));
  job["priority"] = priority;
  std::string path = tmp / ("jobs/" + id + ".json");
  write_file(path, job.dump(2));
  return path;
}

double refusals(const DaemonProcess& daemon, const std::string& reason) {
  return daemon.metric("docpipe_quota_refusals_total", {{"reason", reason}}).value_or(-1);
}

const char* kQueuedReason =
    "over quota: uid 65534 has 2 jobs queued or running on this node, the most that "
    "quotas.default.max_queued_jobs (2) allows; submit again once one of them has finished";

TEST_CASE("e2e quotas: nobody's third queued job and a priority over the cap are refused") {
  if (!running_as_root()) return skip_test("needs root to act as nobody (setpriv, chown)");
  TempDir tmp;
  share_with_nobody(tmp);
  const std::string spool = tmp / "spool";
  const std::string scratch = tmp.path();
  write_documents(tmp / "in", 3);
  write_file(tmp / "config.json", R"({"quotas": {"default": {"max_queued_jobs": 2},
                                      "users": {"nobody": {"max_priority": 5}}}})");
  DaemonProcess daemon(spool, {"--config", tmp / "config.json", "--workers", "1"});
  daemon.start();
  open_socket_to_all(spool);
  REQUIRE(docpipe({"pause", "--spool", spool}, scratch).exit_code == 0);

  // A priority above nobody's cap: refused on "priority", naming the cap and its key.
  CommandResult urgent = nobody({"submit", "--spool", spool, job_file(tmp, "urgent", 9)}, scratch);
  INFO("urgent: " << urgent.out << urgent.err);
  CHECK(urgent.exit_code == 1);
  CHECK(urgent.err == tmp / "jobs/urgent.json" +
                          ": priority: 9 is above the cap 5 for uid 65534 "
                          "(quotas.users.nobody.max_priority)\n");
  CHECK(refusals(daemon, "priority") == 1);

  // Two jobs queued (intake is paused), the third refused with the reason.
  for (const char* id : {"q1", "q2"}) {
    CommandResult r = nobody({"submit", "--spool", spool, job_file(tmp, id, 5)}, scratch);
    INFO(id << ": " << r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.find("intake is paused") != std::string::npos);
  }
  CommandResult third = nobody({"submit", "--spool", spool, job_file(tmp, "q3")}, scratch);
  INFO("q3: " << third.out << third.err);
  CHECK(third.exit_code == 1);
  CHECK(third.err == std::string("docpipe submit: ") + kQueuedReason + "\n");
  CHECK_FALSE(file_exists(spool + "/active/q3.json"));
  CHECK(refusals(daemon, "queued_jobs") == 1);
  CHECK(daemon.metric("docpipe_jobs_total", {{"outcome", "rejected"}}) == 2);

  // Status tells nobody where it stands; root sees its own count, with no cap.
  CommandResult status = nobody({"status", "--spool", spool}, scratch);
  INFO("status: " << status.out << status.err);
  CHECK(status.out.find("  your jobs (uid 65534): 2 of 2 queued or running "
                        "(quotas.default.max_queued_jobs); priority at most 5 "
                        "(quotas.users.nobody.max_priority)\n") != std::string::npos);
  nlohmann::json quota = nlohmann::json::parse(
      nobody({"status", "--spool", spool, "--json"}, scratch).out)["daemon"]["quota"];
  CHECK(quota["jobs"] == 2);
  CHECK(quota["max_queued_jobs"] == 2);
  CHECK(quota["max_queued_jobs_from"] == "quotas.default.max_queued_jobs");
  CHECK(quota["max_priority"] == 5);

  // Root is never limited: three jobs at priority 100 while nobody is at its cap.
  for (const char* id : {"r1", "r2", "r3"}) {
    CommandResult r =
        docpipe({"submit", "--spool", spool, job_file(tmp, id, 100, "out-root")}, scratch);
    INFO(id << ": " << r.out << r.err);
    CHECK(r.exit_code == 0);
  }
  CHECK(daemon_status(spool, scratch)["daemon"]["quota"]["jobs"] == 3);
  CHECK(daemon_status(spool, scratch)["daemon"]["quota"]["max_queued_jobs"].is_null());

  // Resume: everything runs; once nobody's jobs have finished, its next submit is accepted.
  REQUIRE(docpipe({"resume", "--spool", spool}, scratch).exit_code == 0);
  for (const char* id : {"q1", "q2", "r1", "r2", "r3"}) {
    CAPTURE(id);
    CHECK(daemon.wait_for_job(id).folder == "done");
  }
  // The job leaves the table a moment after its files reach done/.
  CHECK(poll_until(kStartTimeout, [&] {
    return nlohmann::json::parse(nobody({"status", "--spool", spool, "--json"}, scratch)
                                     .out)["daemon"]["quota"]["jobs"] == 0;
  }));
  CommandResult again = nobody({"submit", "--spool", spool, job_file(tmp, "q4")}, scratch);
  INFO("q4: " << again.out << again.err);
  REQUIRE(again.exit_code == 0);
  CHECK(daemon.wait_for_job("q4").folder == "done");
  CHECK(refusals(daemon, "queued_jobs") == 1);
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e quotas: a dropped job file over the cap is rejected - a reload raises the cap") {
  if (!running_as_root()) return skip_test("needs root to act as nobody (setpriv, chown)");
  TempDir tmp;
  share_with_nobody(tmp);
  const std::string spool = tmp / "spool";
  const std::string scratch = tmp.path();
  write_documents(tmp / "in", 2);
  write_documents(tmp / "in-slow", 300);
  const std::string config = tmp / "config.json";
  write_file(config, R"({"max_active_jobs": 1, "quotas": {"default": {"max_queued_jobs": 2}}})");
  DaemonProcess daemon(spool, {"--config", config, "--workers", "1"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  open_socket_to_all(spool);

  // Root's slow job holds the only active slot: nobody's jobs stay queued behind it.
  write_file(tmp / "blocker.json", make_job("blocker", tmp / "in-slow", tmp / "out-blocker",
                                            {{{"op", "test.sleep"}, {"ms", 200}}})
                                       .dump());
  REQUIRE(docpipe({"submit", "--spool", spool, tmp / "blocker.json"}, scratch).exit_code == 0);
  REQUIRE(!daemon.wait_for_log_lines({"job started", "job=blocker"}).empty());
  for (const char* id : {"s1", "s2"}) {
    REQUIRE(nobody({"submit", "--spool", spool, job_file(tmp, id)}, scratch).exit_code == 0);
  }

  // A job file nobody drops (its own file, renamed into place) is over the cap: rejected/.
  const std::string drop_tmp = tmp / "dropped.json";
  write_file(drop_tmp, make_job("dropped", tmp / "in", tmp / "out-nobody/dropped").dump());
  REQUIRE(::chown(drop_tmp.c_str(), kNobody, kNobody) == 0);
  REQUIRE(::rename(drop_tmp.c_str(), (spool + "/incoming/dropped.json").c_str()) == 0);
  nlohmann::json error = daemon.wait_for_rejection("dropped.json");
  INFO(error.dump(2));
  CHECK(error.dump().find(kQueuedReason) != std::string::npos);
  CHECK_FALSE(file_exists(spool + "/active/dropped.json"));
  // Counted on the loop thread a moment after the error file is written.
  CHECK(daemon.wait_for_metric("docpipe_quota_refusals_total", {{"reason", "queued_jobs"}}, 1) ==
        1);
  CHECK(!daemon.wait_for_log_lines({"job rejected", "file=dropped.json", "over quota"}).empty());

  // A reload raises the cap to 3: nobody's next submit is accepted, the one after refused.
  write_config(config, R"({"max_active_jobs": 1, "quotas": {"default": {"max_queued_jobs": 3}}})");
  REQUIRE(::kill(daemon.pid(), SIGHUP) == 0);
  REQUIRE(!daemon.wait_for_log_lines({"config reloaded"}).empty());
  REQUIRE(nobody({"submit", "--spool", spool, job_file(tmp, "s3")}, scratch).exit_code == 0);
  CommandResult s4 = nobody({"submit", "--spool", spool, job_file(tmp, "s4")}, scratch);
  CHECK(s4.exit_code == 1);
  CHECK(s4.err.find("has 3 jobs queued or running on this node, the most that "
                    "quotas.default.max_queued_jobs (3) allows") != std::string::npos);
  CHECK(refusals(daemon, "queued_jobs") == 2);

  REQUIRE(docpipe({"cancel", "--spool", spool, "blocker"}, scratch).exit_code == 0);
  for (const char* id : {"s1", "s2", "s3"}) {
    CAPTURE(id);
    CHECK(daemon.wait_for_job(id).folder == "done");
  }
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e quotas: jobs resumed after kill -9 count but are never refused") {
  if (!running_as_root()) return skip_test("needs root to act as nobody (setpriv, chown)");
  TempDir tmp;
  share_with_nobody(tmp);
  const std::string spool = tmp / "spool";
  const std::string scratch = tmp.path();
  write_documents(tmp / "in", 2);
  const std::string config = tmp / "config.json";
  write_file(config, R"({"quotas": {"default": {"max_queued_jobs": 2}}})");
  auto daemon = std::make_unique<DaemonProcess>(
      spool, std::vector<std::string>{"--config", config, "--workers", "1"});
  daemon->start();
  open_socket_to_all(spool);
  REQUIRE(docpipe({"pause", "--spool", spool}, scratch).exit_code == 0);
  for (const char* id : {"k1", "k2"}) {
    REQUIRE(nobody({"submit", "--spool", spool, job_file(tmp, id)}, scratch).exit_code == 0);
  }
  REQUIRE(::kill(daemon->pid(), SIGKILL) == 0);
  daemon->wait_exit();

  // The cap is now 1: both resume all the same, and they hold nobody over it.
  write_file(config, R"({"quotas": {"default": {"max_queued_jobs": 1}}})");
  daemon = std::make_unique<DaemonProcess>(
      spool, std::vector<std::string>{"--config", config, "--workers", "1"});
  daemon->start();
  open_socket_to_all(spool);
  for (const char* id : {"k1", "k2"}) {
    CAPTURE(id);
    CHECK(!daemon->wait_for_log_lines({"job resumed", std::string("job=") + id}).empty());
  }
  nlohmann::json quota = nlohmann::json::parse(
      nobody({"status", "--spool", spool, "--json"}, scratch).out)["daemon"]["quota"];
  CHECK(quota["jobs"] == 2);
  CHECK(quota["max_queued_jobs"] == 1);
  CommandResult k3 = nobody({"submit", "--spool", spool, job_file(tmp, "k3")}, scratch);
  CHECK(k3.exit_code == 1);
  CHECK(k3.err.find("uid 65534 has 2 jobs queued or running on this node") != std::string::npos);

  REQUIRE(docpipe({"resume", "--spool", spool}, scratch).exit_code == 0);
  for (const char* id : {"k1", "k2"}) {
    CAPTURE(id);
    CHECK(daemon->wait_for_job(id).folder == "done");
  }
  CHECK(poll_until(kStartTimeout, [&] {
    return nobody({"submit", "--spool", spool, job_file(tmp, "k4")}, scratch).exit_code == 0;
  }));
  CHECK(daemon->wait_for_job("k4").folder == "done");
  CHECK(daemon->terminate() == 0);
}

}  // namespace
}  // namespace e2e
