// The notifier's answers to what receivers and the spool say back (daemon/notifier.h,
// daemon/notify_record.h): Retry-After on a 429 or 503, webhook_format "text" and its one-line
// summary, and a record the spool can never take.

#include <cerrno>

#include "daemon/notifier.h"
#include "tests/daemon/notifier_fixture.h"

namespace docpipe::notifier_test {
namespace {

TEST_CASE("notifier: a 503 with Retry-After waits at least that long and no longer than the cap") {
  NotifierFixture f;
  Notifier& n = f.make(NotifierFixture::settings(/*max_attempts=*/10, /*failures=*/0));
  std::vector<std::optional<std::string>> asked = {"5", "3600", "Mon, 01 Dec 2025 00:00:07 GMT",
                                                   "soon"};
  size_t i = 0;
  f.webhook.answer = [&](const NotifyAttempt&) {
    DeliveryOutcome o = http(503);
    o.retry_after = i < asked.size() ? asked[i] : std::nullopt;
    ++i;
    return o;
  };
  n.add(f.finished("ra", "https://hooks.example.org/h"));
  // "5": the backoff (1 s x [0.5, 1.5)) is shorter, so 5 s, and never a moment earlier.
  CHECK(n.run_due() == 1);
  CHECK(*n.next_due() - f.clock.now() == milliseconds(5000));
  nlohmann::json w = f.report("ra")["notify"]["webhook"];
  CHECK(w["last_error"] == "HTTP 503; Retry-After \"5\": waits at least 5000 ms");
  f.clock.advance(milliseconds(4999));
  CHECK(n.run_due() == 0);
  f.clock.advance(milliseconds(1));
  // "3600": an hour, capped at retry_max_ms (8 s).
  CHECK(n.run_due() == 1);
  CHECK(*n.next_due() - f.clock.now() == milliseconds(8000));
  CHECK(f.report("ra")["notify"]["webhook"]["last_error"] ==
        "HTTP 503; Retry-After \"3600\": waits at least 8000 ms (capped at retry_max_ms)");
  f.clock.advance(milliseconds(8000));
  // An HTTP-date 7 s after the fake wall clock's start, now 13 s past it: no wait asked, so the
  // backoff (4 s nominal after attempt 3) stands.
  CHECK(n.run_due() == 1);
  auto delay = *n.next_due() - f.clock.now();
  CHECK(delay >= milliseconds(2000));
  CHECK(delay < milliseconds(6000));
  f.clock.advance(delay);
  // A value that does not parse is ignored, and said so.
  CHECK(n.run_due() == 1);
  delay = *n.next_due() - f.clock.now();
  CHECK(delay >= milliseconds(4000));
  CHECK(delay <= milliseconds(8000));
  CHECK(f.report("ra")["notify"]["webhook"]["last_error"] ==
        "HTTP 503; Retry-After \"soon\" ignored (neither delta-seconds nor an HTTP-date)");
}

TEST_CASE("notifier: Retry-After counts only on a 429 or 503 and a 429 honours it too") {
  NotifierFixture f;
  Notifier& n = f.make();
  int status = 500;
  f.webhook.answer = [&status](const NotifyAttempt&) {
    DeliveryOutcome o = http(status);
    if (status == 429) {
      o.kind = Kind::kRetry;
      o.failure = CommandFailure::kErrorAnswer;
    }
    o.retry_after = "7";
    return o;
  };
  n.add(f.finished("rb", "https://hooks.example.org/h"));
  CHECK(n.run_due() == 1);
  CHECK(*n.next_due() - f.clock.now() < milliseconds(1500));  // a 500's Retry-After: ignored
  CHECK(f.report("rb")["notify"]["webhook"]["last_error"] == "HTTP 500");
  f.clock.advance(*n.next_due() - f.clock.now());
  status = 429;
  CHECK(n.run_due() == 1);
  CHECK(*n.next_due() - f.clock.now() == milliseconds(7000));
}

TEST_CASE("notifier: webhook_format text sends a one-line summary and the command the report") {
  NotifierFixture f;
  Notifier& n = f.make();
  NotifySpec spec;
  spec.webhook = "https://hooks.example.org/chat";
  spec.command = "tell";
  spec.webhook_format = WebhookFormat::kText;
  const std::string body =
      R"({"id": "t1", "state": "failed", "duration_seconds": 12.34, "counts": {"total": 8,)"
      R"( "succeeded": 5, "failed": 3, "skipped": 0, "cancelled": 0}, "failed_documents":)"
      R"( [{"input": "/in/b.json", "error": "json.minify: not JSON"}]})";
  NotifyRecord r = *make_notify_record("t1", JobState::kFailed, spec, body);
  TempFolder::write(f.spool + "/failed/t1.json", "{}");
  TempFolder::write(f.spool + "/failed/t1.report.json", report_with_notify(r));
  REQUIRE(store_notify_record(f.spool, r, false));
  // The format survives a restart in the record.
  Result<NotifyRecord> back = parse_notify_record(notify_record_to_json(r));
  REQUIRE(back);
  CHECK(back->webhook_format == WebhookFormat::kText);
  n.add(*back);
  CHECK(n.run_due() == 2);
  REQUIRE(f.webhook.bodies.size() == 1);
  CHECK(f.webhook.bodies[0] ==
        R"({"text":"docpipe job t1 failed: 5 succeeded, 3 failed, 0 skipped of 8 (12.3 s); )"
        R"(first failure: /in/b.json: json.minify: not JSON"})");
  REQUIRE(f.command.bodies.size() == 1);
  CHECK(f.command.bodies[0] == body);
}

TEST_CASE("notifier: a record that ended unrecorded is counted as failed and not kept") {
  NotifierFixture f;
  Notifier& n = f.make();
  NotifySpec spec;
  spec.webhook = "https://hooks.example.org/h";
  spec.command = "tell";
  NotifyRecord r = *make_notify_record("u1", JobState::kSucceeded, spec, "{}");
  fail_unrecorded(r, "cannot record the notification in /s/notify: no");
  CHECK_FALSE(r.pending());
  CHECK(r.channels[0].last_error == "cannot record the notification in /s/notify: no");
  n.add(r);
  CHECK(n.pending() == 0);
  CHECK(n.run_due() == 0);
  CHECK_FALSE(n.next_due());
  CHECK(f.counter("webhook", "failed") == 1);
  CHECK(f.counter("command", "failed") == 1);
  CHECK(f.webhook.attempts.empty());
  CHECK(f.command.attempts.empty());
}

TEST_CASE("notifier: a record cannot be stored where SPOOL/notify is a file and that is for good") {
  TempFolder tmp{"/tmp", "notify-file"};
  TempFolder::write(tmp.root() + "/notify", "not a folder");
  NotifySpec spec;
  spec.webhook = "https://hooks.example.org/h";
  NotifyRecord r = *make_notify_record("nf", JobState::kSucceeded, spec, "{}");
  Status st = store_notify_record(tmp.root(), r, false);
  REQUIRE_FALSE(st);
  CHECK(st.error().sys_errno == ENOTDIR);
  CHECK_FALSE(is_transient(st.error()));  // the job table finishes the job without it
  CHECK(st.error().message.find(tmp.root() + "/notify") != std::string::npos);
}

TEST_CASE("notify summary: one escaped line cut between UTF-8 characters") {
  // The reason when no document failed; cancelled documents counted; controls become spaces.
  CHECK(report_summary(R"({"id": "c", "state": "cancelled", "reason": "cancelled by\nalice",)"
                       R"( "duration_seconds": 0.04, "counts": {"total": 4, "succeeded": 1,)"
                       R"( "failed": 0, "skipped": 0, "cancelled": 3}, "failed_documents": []})") ==
        "docpipe job c cancelled: 1 succeeded, 0 failed, 0 skipped, 3 cancelled of 4 (0.0 s); "
        "reason: cancelled by alice");
  // A file name cannot mention a channel or forge a link in Slack.
  CHECK(report_summary(R"({"id": "e", "state": "failed", "counts": {"total": 1, "failed": 1},)"
                       R"( "failed_documents": [{"input": "<!channel>&.md", "error": "x"}]})") ==
        "docpipe job e failed: 0 succeeded, 1 failed, 0 skipped of 1; first failure: "
        "&lt;!channel&gt;&amp;.md: x");
  // Long errors: at most kMaxSummaryBytes, never half a character.
  std::string error;
  for (int i = 0; i < 600; ++i) error += "\u00e9";  // é, two bytes each
  const std::string s = report_summary(
      R"({"id": "l", "state": "failed", "counts": {"total": 1, "failed": 1}, "failed_documents":)"
      R"( [{"input": "/in/a", "error": ")" +
      error + R"("}]})");
  CHECK(s.size() <= kMaxSummaryBytes);
  CHECK(s.size() > kMaxSummaryBytes - 5);
  CHECK(s.substr(s.size() - 3) == "...");
  const nlohmann::json round = nlohmann::json::parse(nlohmann::json{{"text", s}}.dump());
  CHECK(round["text"] == s);  // valid UTF-8, or dump() would have thrown
  // Unicode line breaks (NEL, U+2028), C1 controls and bidi overrides (a name faking its
  // extension) are spaces too; other characters pass.
  CHECK(
      report_summary(
          R"({"id": "u", "state": "failed", "counts": {"total": 1, "failed": 1},)"
          R"( "failed_documents": [{"input": "a\u0085b\u2028c\u202etxt.exe\u2066", "error": "\u00e9"}]})") ==
      "docpipe job u failed: 0 succeeded, 1 failed, 0 skipped of 1; first failure: "
      "a b c txt.exe : \u00e9");
  // Not a report at all: still one line.
  CHECK(report_summary("garbage") == "docpipe job  : 0 succeeded, 0 failed, 0 skipped of 0");
}

}  // namespace
}  // namespace docpipe::notifier_test
