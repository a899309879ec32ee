// The HTTP status routes next to /metrics through the real binary (issue 14): /healthz and
// /readyz answer for the loop and the spool; /jobs/ID serves a job's status and report to a
// caller with a bearer token from http_tokens_file, with that user's rights (root's token sees
// every job, nobody's only its own); no or an unknown token is 401; a reload swaps the tokens.

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

constexpr uid_t kNobody = 65534;

std::string sha256_of(const std::string& text, const std::string& scratch) {
  write_file(scratch + "/token.txt", text);
  CommandResult r = run_command({"/usr/bin/sha256sum", scratch + "/token.txt"}, scratch);
  REQUIRE(r.exit_code == 0);
  return r.out.substr(0, 64);
}

void write_tokens(const std::string& path, const std::string& text) {
  write_file(path + ".tmp", text);
  REQUIRE(::chmod((path + ".tmp").c_str(), 0600) == 0);
  REQUIRE(::rename((path + ".tmp").c_str(), path.c_str()) == 0);
}

HttpResponse get_job(const DaemonProcess& d, const std::string& id, const std::string& token) {
  std::vector<std::string> headers;
  if (!token.empty()) headers.push_back("Authorization: Bearer " + token);
  return http_request(d.metrics_address(), "GET", "/jobs/" + id, headers);
}

TEST_CASE("e2e http status: healthz and readyz; jobs/ID with each token's rights; reload") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root to make a job owned by nobody");
    return;
  }
  TempDir tmp;
  REQUIRE(::chmod(tmp.path().c_str(), 0755) == 0);
  const std::string spool = tmp / "spool";
  write_file(tmp / "in/a.txt", "alpha\n");
  REQUIRE(::chmod((tmp / "in").c_str(), 0755) == 0);
  REQUIRE(::chmod((tmp / "in/a.txt").c_str(), 0644) == 0);
  std::filesystem::create_directories(tmp / "out-nobody");
  REQUIRE(::chown((tmp / "out-nobody").c_str(), kNobody, kNobody) == 0);

  const std::string root_token = "r00t-token-" + std::to_string(::getpid());
  const std::string nobody_token = "n0body-token-" + std::to_string(::getpid());
  const std::string tokens = tmp / "http-tokens";
  write_tokens(tokens, "# who  sha256 of the token\nroot " + sha256_of(root_token, tmp.path()) +
                           "\nnobody " + sha256_of(nobody_token, tmp.path()) + "\n");
  write_file(tmp / "docpipe.json", R"({"http_tokens_file": "http-tokens"})");
  DaemonProcess daemon(spool, {"--config", tmp / "docpipe.json", "--workers", "1"});
  daemon.start();

  HttpResponse health = http_get(daemon.metrics_address(), "/healthz");
  CHECK(health.status == 200);
  CHECK(health.body == "ok\n");
  HttpResponse ready = http_get(daemon.metrics_address(), "/readyz");
  CHECK(ready.status == 200);
  CHECK(nlohmann::json::parse(ready.body)["ready"] == true);
  // Read-only: a POST is refused, whatever the route.
  CHECK(http_request(daemon.metrics_address(), "POST", "/healthz", {}).status == 405);

  // A job of root's (a file dropped by root) and one of nobody's (a file nobody owns).
  drop_job(spool, "rootjob.json", make_job("rootjob", tmp / "in", tmp / "out-root"));
  REQUIRE(daemon.wait_for_job("rootjob").folder == "done");
  {
    const std::string staged = tmp / "nobodyjob.json";
    write_file(staged, make_job("nobodyjob", tmp / "in", tmp / "out-nobody").dump());
    REQUIRE(::chown(staged.c_str(), kNobody, kNobody) == 0);
    REQUIRE(::rename(staged.c_str(), (spool + "/incoming/nobodyjob.json").c_str()) == 0);
  }
  REQUIRE(daemon.wait_for_job("nobodyjob").folder == "done");

  SUBCASE("root's token sees every job, with its report") {
    HttpResponse r = get_job(daemon, "rootjob", root_token);
    REQUIRE(r.status == 200);
    CHECK(r.headers.find("application/json") != std::string::npos);
    nlohmann::json job = nlohmann::json::parse(r.body);
    CHECK(job["id"] == "rootjob");
    CHECK(job["state"] == "succeeded");
    CHECK(job["report"]["counts"]["succeeded"] == 1);
    CHECK(get_job(daemon, "nobodyjob", root_token).status == 200);
  }
  SUBCASE("nobody's token sees its own job; root's is the same 404 as a job that does not exist") {
    HttpResponse own = get_job(daemon, "nobodyjob", nobody_token);
    REQUIRE(own.status == 200);
    CHECK(nlohmann::json::parse(own.body)["submitter_uid"] == kNobody);
    HttpResponse other = get_job(daemon, "rootjob", nobody_token);
    CHECK(other.status == 404);
    HttpResponse none = get_job(daemon, "nosuchjob", nobody_token);
    CHECK(none.status == 404);
    CHECK(nlohmann::json::parse(other.body)["error"].get<std::string>().find("rootjob") !=
          std::string::npos);
    CHECK(other.body.find("report") == std::string::npos);
  }
  SUBCASE("no token or an unknown one is 401 and says why") {
    HttpResponse none = get_job(daemon, "rootjob", "");
    CHECK(none.status == 401);
    CHECK(none.headers.find("WWW-Authenticate: Bearer") != std::string::npos);
    CHECK(none.body.find("Bearer token is required") != std::string::npos);
    HttpResponse wrong = get_job(daemon, "rootjob", root_token + "x");
    CHECK(wrong.status == 401);
    CHECK(wrong.body.find("not known") != std::string::npos);
    CHECK(wrong.body.find("succeeded") == std::string::npos);
  }
  SUBCASE("a reload swaps the tokens: the old one is refused, the new one works") {
    const std::string fresh = "fresh-token-" + std::to_string(::getpid());
    write_tokens(tokens, "root " + sha256_of(fresh, tmp.path()) + "\n");
    REQUIRE(::kill(daemon.pid(), SIGHUP) == 0);
    const auto deadline = std::chrono::steady_clock::now() + kJobTimeout;
    while (get_job(daemon, "rootjob", fresh).status != 200) {
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(get_job(daemon, "rootjob", root_token).status == 401);
  }
  SUBCASE("a tokens file others may write is refused at reload; the old tokens stay") {
    REQUIRE(::chmod(tokens.c_str(), 0666) == 0);
    REQUIRE(::kill(daemon.pid(), SIGHUP) == 0);
    auto lines = daemon.wait_for_log_lines(
        {"config reload refused", "http_tokens_file", "writable by group or others"});
    CHECK_FALSE(lines.empty());
    CHECK(get_job(daemon, "rootjob", root_token).status == 200);
  }
  daemon.expect_running();
}

TEST_CASE("e2e http status: without http_tokens_file /jobs/ID is off and says how to turn it on") {
  TempDir tmp;
  DaemonProcess daemon(tmp / "spool", {"--workers", "1"});
  daemon.start();
  HttpResponse r = get_job(daemon, "any", "some-token");
  CHECK(r.status == 403);
  CHECK(r.body.find("http_tokens_file") != std::string::npos);
  CHECK(http_get(daemon.metrics_address(), "/healthz").status == 200);
}

}  // namespace
}  // namespace e2e
