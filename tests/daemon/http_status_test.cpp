// The status routes (daemon/http_status.h) with a fake loop: liveness is the loop answering in
// time; readiness adds the daemon's own state and a spool that takes a file; /jobs/ID maps a
// bearer token to its user's credentials and the control handler's status reply to HTTP.

#include "daemon/http_status.h"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

namespace docpipe {
namespace {

using namespace std::chrono_literals;

// A loop that runs what is posted at once, never, or refuses it.
enum class Loop { kAnswers, kSilent, kGone };

struct Fixture {
  Loop loop = Loop::kAnswers;
  std::string readiness;
  std::vector<std::pair<std::string, Credentials>> asked;  // (id, peer) of each job_status call
  nlohmann::json answer = {{"ok", true}, {"job", {{"id", "j1"}, {"state", "succeeded"}}}};
  std::string spool = "/tmp";
  std::vector<std::function<void()>> held;  // what a silent loop never runs

  HttpStatus make() {
    return HttpStatus(HttpStatus::Deps{
        .post =
            [this](std::function<void()> fn) {
              if (loop == Loop::kGone) return false;
              if (loop == Loop::kSilent) {
                held.push_back(std::move(fn));
              } else {
                fn();
              }
              return true;
            },
        .job_status =
            [this](const std::string& id, const Credentials& peer, HttpStatus::JsonReply reply) {
              asked.emplace_back(id, peer);
              reply(answer);
            },
        .readiness = [this] { return readiness; },
        .spool_dir = spool,
        .credentials_for = [](uid_t uid) -> Result<Credentials> {
          return Credentials{uid, static_cast<gid_t>(uid), {static_cast<gid_t>(uid), 4242}};
        },
        .timeout = 50ms});
  }
};

std::shared_ptr<const HttpTokens> tokens() {
  std::vector<std::string> errors;
  auto t = parse_http_tokens("nobody " + sha256_hex("tok") + "\n", "tokens", errors);
  REQUIRE(t);
  return std::make_shared<const HttpTokens>(*t);
}

HttpRequest request(std::string path, std::string auth = "") {
  return HttpRequest{std::move(path), std::move(auth), "127.0.0.1"};
}

TEST_CASE("http status: healthz is the loop answering in time") {
  Fixture f;
  CHECK(f.make().healthz(request("/healthz")).status == 200);
  f.loop = Loop::kSilent;
  HttpReply silent = f.make().healthz(request("/healthz"));
  CHECK(silent.status == 503);
  CHECK(silent.body == "unhealthy: the event loop did not answer within 50 ms\n");
  f.loop = Loop::kGone;
  CHECK(f.make().healthz(request("/healthz")).status == 503);
}

TEST_CASE("http status: readyz adds the daemon's state and a spool that takes a file") {
  Fixture f;
  HttpReply ok = f.make().readyz(request("/readyz"));
  CHECK(ok.status == 200);
  CHECK(ok.content_type == "application/json");
  CHECK(nlohmann::json::parse(ok.body) == nlohmann::json{{"ready", true}});

  f.readiness = "stopping";
  HttpReply stopping = f.make().readyz(request("/readyz"));
  CHECK(stopping.status == 503);
  CHECK(nlohmann::json::parse(stopping.body)["problems"] == nlohmann::json{"stopping"});

  f.readiness = "";
  f.spool = "/nonexistent-docpipe-spool";
  HttpReply missing = f.make().readyz(request("/readyz"));
  CHECK(missing.status == 503);
  CHECK(missing.body.find("spool /nonexistent-docpipe-spool takes no new file: No such file") !=
        std::string::npos);

  f.spool = "/tmp";
  f.loop = Loop::kSilent;
  CHECK(f.make().readyz(request("/readyz")).body.find("did not answer within 50 ms") !=
        std::string::npos);
}

TEST_CASE("http status: a spool the daemon's user cannot write is not ready") {
  // As nobody, a root-owned 0755 folder takes no file (root would write anywhere).
  if (::geteuid() != 0) return;
  char tmpl[] = "/tmp/docpipe-ready-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  REQUIRE(::chmod(tmpl, 0755) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    std::string problem = spool_write_problem(tmpl);
    ::_exit(problem.find("takes no new file: Permission denied") != std::string::npos ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK(spool_write_problem(tmpl).empty());
  ::rmdir(tmpl);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("http status: jobs/ID needs a known bearer token and asks as its user") {
  Fixture f;
  HttpStatus s = f.make();
  SUBCASE("no tokens configured: off, and says how to turn it on") {
    HttpReply r = s.job(request("/jobs/j1", "Bearer tok"));
    CHECK(r.status == 403);
    CHECK(r.body.find("no http_tokens_file") != std::string::npos);
    CHECK(f.asked.empty());
  }
  s.set_tokens(tokens());
  SUBCASE("no token, another scheme, an unknown token: 401 with the challenge") {
    for (const char* auth : {"", "Basic dG9rOg==", "Bearer", "Bearer tok2", "Bearertok"}) {
      CAPTURE(auth);
      HttpReply r = s.job(request("/jobs/j1", auth));
      CHECK(r.status == 401);
      REQUIRE(r.headers.size() == 1);
      CHECK(r.headers[0].second == "Bearer realm=\"docpipe\"");
    }
    CHECK(f.asked.empty());
  }
  SUBCASE("a known token asks the control handler as that user, with its groups") {
    for (const char* auth : {"Bearer tok", "bearer  tok ", "BEARER tok"}) {
      CAPTURE(auth);
      HttpReply r = s.job(request("/jobs/j1", auth));
      CHECK(r.status == 200);
      CHECK(nlohmann::json::parse(r.body) == f.answer["job"]);
    }
    REQUIRE(f.asked.size() == 3);
    CHECK(f.asked[0].first == "j1");
    CHECK(f.asked[0].second.uid == 65534);
    CHECK(f.asked[0].second.in_group(4242));
  }
  SUBCASE("what the handler refuses is 404, with its message") {
    f.answer = {{"ok", false}, {"error", "no job \"j1\": not queued, running or finished"}};
    HttpReply r = s.job(request("/jobs/j1", "Bearer tok"));
    CHECK(r.status == 404);
    CHECK(nlohmann::json::parse(r.body)["error"] == f.answer["error"]);
  }
  SUBCASE("no id or a malformed one is 404 without asking") {
    CHECK(s.job(request("/jobs", "Bearer tok")).status == 404);
    CHECK(s.job(request("/jobs/", "Bearer tok")).status == 404);
    CHECK(s.job(request("/jobs/a b", "Bearer tok")).status == 404);
    CHECK(s.job(request("/jobs/../x", "Bearer tok")).status == 404);
    CHECK(f.asked.empty());
  }
  SUBCASE("a loop that does not answer is 503") {
    f.loop = Loop::kSilent;
    HttpReply r = s.job(request("/jobs/j1", "Bearer tok"));
    CHECK(r.status == 503);
    CHECK(r.body.find("did not answer within 250 ms") != std::string::npos);
  }
}

}  // namespace
}  // namespace docpipe
