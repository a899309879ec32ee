// A job's "notify" (core/notify_spec.h): its shapes and values by JSON path, the webhook URLs
// docpipe accepts, and the checks against the daemon config (allowed hosts, known commands).

#include "core/notify_spec.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "tests/core/job_spec_support.h"

namespace docpipe::test {
namespace {

std::vector<std::string> notify_errors(const nlohmann::json& notify) {
  nlohmann::json doc = minimal_job();
  doc["notify"] = notify;
  return doc_errors(doc);
}

std::vector<std::string> check(const std::string& url, const std::vector<std::string>& allowed,
                               std::optional<std::string> command = std::nullopt) {
  NotifySpec spec;
  spec.webhook = url;
  spec.command = std::move(command);
  std::map<std::string, CommandSpec> commands;
  commands["tell"] = CommandSpec{.argv = {"/bin/true"}};
  commands["pooled"] = CommandSpec{.argv = {"/bin/cat"}, .mode = CommandMode::kPool};
  FieldErrors errors;
  check_notify(spec, allowed, commands, errors);
  return lines(errors);
}

TEST_CASE("notify spec: webhook, command and on are read; on defaults to every ending") {
  nlohmann::json doc = minimal_job();
  doc["notify"] = {{"webhook", "https://hooks.example.org/x?t=1"}, {"command", "tell"}};
  JobSpec spec = parse_ok(doc.dump());
  REQUIRE(spec.notify);
  CHECK(*spec.notify->webhook == "https://hooks.example.org/x?t=1");
  CHECK(*spec.notify->command == "tell");
  CHECK(spec.notify->wants(JobState::kSucceeded));
  CHECK(spec.notify->wants(JobState::kFailed));
  CHECK(spec.notify->wants(JobState::kCancelled));
  doc["notify"] = {{"command", "tell"}, {"on", {"failed", "cancelled"}}};
  spec = parse_ok(doc.dump());
  CHECK_FALSE(spec.notify->wants(JobState::kSucceeded));
  CHECK(spec.notify->wants(JobState::kFailed));
  CHECK_FALSE(parse_ok(minimal_job().dump()).notify);
}

TEST_CASE("notify spec: every problem is named by its JSON path") {
  CHECK(notify_errors({{"webhook", "https://h.example/x"}, {"retries", 3}}) ==
        std::vector<std::string>{"notify.retries: unknown key"});
  CHECK(notify_errors(nlohmann::json::object()) ==
        std::vector<std::string>{"notify: expected \"webhook\", \"command\" or both"});
  CHECK(notify_errors({{"webhook", "ftp://h.example/x"}}) ==
        std::vector<std::string>{
            "notify.webhook: only http:// and https:// URLs are allowed, got ftp://"});
  CHECK(notify_errors({{"command", "tell"}, {"on", {"done", "failed", "failed"}}}) ==
        std::vector<std::string>{
            "notify.on[0]: expected one of \"succeeded\", \"failed\", \"cancelled\", got \"done\"",
            "notify.on[2]: \"failed\" is listed twice"});
  CHECK(notify_errors({{"command", ""}}).size() == 1);
  CHECK(notify_errors("https://h.example/") ==
        std::vector<std::string>{"notify: expected object, got \"https://h.example/\""});
}

TEST_CASE("notify spec: webhook_format is report by default or text and needs a webhook") {
  nlohmann::json doc = minimal_job();
  doc["notify"] = {{"webhook", "https://hooks.example.org/x"}};
  JobSpec spec = parse_ok(doc.dump());
  CHECK(spec.notify->webhook_format == WebhookFormat::kReport);
  doc["notify"]["webhook_format"] = "text";
  spec = parse_ok(doc.dump());
  CHECK(spec.notify->webhook_format == WebhookFormat::kText);
  doc["notify"]["webhook_format"] = "report";
  spec = parse_ok(doc.dump());
  CHECK(spec.notify->webhook_format == WebhookFormat::kReport);
  CHECK(notify_errors({{"webhook", "https://h.example/x"}, {"webhook_format", "slack"}}) ==
        std::vector<std::string>{
            "notify.webhook_format: expected one of \"report\" (the report JSON), \"text\" "
            "({\"text\": a one-line summary}), got \"slack\""});
  CHECK(notify_errors({{"webhook", "https://h.example/x"}, {"webhook_format", 1}}).size() == 1);
  CHECK(notify_errors({{"command", "tell"}, {"webhook_format", "text"}}) ==
        std::vector<std::string>{
            "notify.webhook_format: needs \"webhook\" (it shapes the webhook's body; the command "
            "channel always reads the report)"});
}

TEST_CASE("notify spec: webhook URLs are strict so that libcurl reads the same host") {
  std::string problem;
  std::optional<WebhookUrl> u = parse_webhook_url("HTTPS://Hooks.Example.ORG/p?q=1#f", problem);
  REQUIRE(u);
  CHECK(u->scheme == "https");
  CHECK(u->host == "hooks.example.org");
  CHECK(u->port == 443);
  CHECK_FALSE(u->port_given);
  u = parse_webhook_url("http://[::1]:8080/h", problem);
  REQUIRE(u);
  CHECK(u->authority() == "[::1]:8080");
  CHECK(parse_webhook_url("http://10.0.0.5/h", problem)->port == 80);
  for (const char* bad :
       {"http://user:pw@hooks.example.org/", "http://evil.example\\@hooks.example.org/",
        "http://hooks.example.org:0/", "http://hooks.example.org:65536/", "http://:80/",
        "http://hooks.example.org:8o/", "http://hooks example.org/", "file:///etc/passwd",
        "gopher://h/", "hooks.example.org/x", "http://%68ooks.example.org/", "http://[zz]/",
        "http://h\xc3\xa9.example/"}) {
    problem.clear();
    CHECK_MESSAGE(!parse_webhook_url(bad, problem), bad);
    CHECK_MESSAGE(!problem.empty(), bad);
  }
  CHECK_FALSE(parse_webhook_url("http://h/" + std::string(kMaxWebhookUrlBytes, 'a'), problem));
}

TEST_CASE("notify spec: a host must be allowed by name or by name and port") {
  CHECK(check("https://hooks.example.org/x", {"HOOKS.example.org"}).empty());
  CHECK(check("http://127.0.0.1:8080/x", {"127.0.0.1:8080"}).empty());
  CHECK(check("http://[::1]:9/x", {"[::1]"}).empty());
  CHECK(check("http://127.0.0.1:8081/x", {"127.0.0.1:8080"}) ==
        std::vector<std::string>{
            "notify.webhook: host \"127.0.0.1:8081\" is not in the daemon config's "
            "allowed_webhook_hosts (allowed: 127.0.0.1:8080); an operator must add "
            "\"127.0.0.1\" or \"127.0.0.1:8081\" to allowed_webhook_hosts"});
  CHECK(check("https://hooks.example.org.evil.example/x", {"hooks.example.org"}).size() == 1);
  CHECK(check("https://evil.example/x", {}) ==
        std::vector<std::string>{
            "notify.webhook: host \"evil.example:443\" is not in the daemon config's "
            "allowed_webhook_hosts (none allowed); an operator must add \"evil.example\" or "
            "\"evil.example:443\" to allowed_webhook_hosts"});
  WebhookUrl url{.scheme = "https", .host = "a.example", .port = 443};
  CHECK(*allowed_host_for(url, {"b.example", "a.example:443", "a.example"}) == "a.example:443");
}

TEST_CASE("notify spec: the command must be a process command of the daemon config") {
  CHECK(check("https://h.example/", {"h.example"}, "tell").empty());
  CHECK(check("https://h.example/", {"h.example"}, "nope") ==
        std::vector<std::string>{"notify.command: unknown command \"nope\": not in the daemon "
                                 "config's commands (known: pooled, tell)"});
  std::vector<std::string> pooled = check("https://h.example/", {"h.example"}, "pooled");
  REQUIRE(pooled.size() == 1);
  CHECK(pooled[0].find("runs as a pool") != std::string::npos);
}

TEST_CASE("notify spec: allowed_webhook_hosts entries are host names or host:port") {
  std::string problem;
  CHECK(parse_allowed_host("hooks.example.org", problem)->key() == "hooks.example.org");
  CHECK(parse_allowed_host("Hooks.Example.org:8443", problem)->key() == "hooks.example.org:8443");
  CHECK(parse_allowed_host("[::1]:80", problem)->key() == "[::1]:80");
  CHECK_FALSE(parse_allowed_host("https://hooks.example.org", problem));
  CHECK_FALSE(parse_allowed_host("hooks.example.org/x", problem));
  CHECK_FALSE(parse_allowed_host("", problem));
  CHECK_FALSE(parse_allowed_host("h:99999", problem));
}

}  // namespace
}  // namespace docpipe::test
