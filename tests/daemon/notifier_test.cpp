// The completion notifier (daemon/notifier.h) on a FakeClock with fake receivers, driven by
// run_due(): delivery and the report's notify section, jittered exponential backoff and its cap,
// max_attempts, answers that are not worth another attempt, the circuit breaker per host (waits
// uncharged, one half-open probe), hosts dropped by a reload, stopping, and records resumed from
// SPOOL/notify/ after a restart.

#include "daemon/notifier.h"

#include <doctest/doctest.h>
#include <prometheus/registry.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/fs_util.h"
#include "core/result.h"
#include "tests/support/fake_clock.h"
#include "tests/support/temp_folder.h"

namespace docpipe {
namespace {

using std::chrono::milliseconds;
using test::FakeClock;
using test::TempFolder;
using Kind = DeliveryOutcome::Kind;

// A receiver scripted by the test: `answer` decides each attempt; every attempt is recorded.
struct FakeReceiver : NotifyTransport {
  std::function<DeliveryOutcome(const NotifyAttempt&)> answer = [](const NotifyAttempt&) {
    return DeliveryOutcome{.kind = Kind::kDelivered, .http_status = 200};
  };
  std::vector<NotifyAttempt> attempts;
  std::vector<std::string> bodies;
  DeliveryOutcome deliver(const NotifyAttempt& a, const std::atomic<bool>&) override {
    attempts.push_back(a);
    bodies.push_back(*a.body);
    return answer(a);
  }
};

DeliveryOutcome http(int status) {
  DeliveryOutcome o;
  o.http_status = status;
  if (status >= 200 && status < 300) {
    o.kind = Kind::kDelivered;
  } else if (status >= 500) {
    o.kind = Kind::kRetry;
    o.failure = CommandFailure::kErrorAnswer;
    o.error = "HTTP " + std::to_string(status);
  } else {
    o.kind = Kind::kFailed;
    o.error = "HTTP " + std::to_string(status);
  }
  return o;
}

struct NotifierFixture {
  TempFolder tmp{"/tmp", "notifier"};
  std::string spool = tmp.root();
  FakeClock clock;
  FakeReceiver webhook;
  FakeReceiver command;
  prometheus::Registry registry;
  std::unique_ptr<Notifier> notifier;

  NotifierFixture() {
    for (const char* d : {"done", "failed", "active"}) {
      std::filesystem::create_directories(spool + "/" + d);
    }
  }

  static NotifierSettings settings(int64_t max_attempts = 5, int failures = 3) {
    NotifierSettings s;
    s.notify.max_attempts = max_attempts;
    s.notify.retry_base_ms = 1000;
    s.notify.retry_max_ms = 8000;
    s.notify.breaker = {.failures = failures, .open_ms = 30000, .max_open_ms = 120000};
    s.allowed_webhook_hosts = {"hooks.example.org", "127.0.0.1:8080"};
    s.commands["tell"] = CommandSpec{.argv = {"/bin/true"}, .timeout_ms = 5000};
    return s;
  }

  Notifier& make(NotifierSettings s = settings()) {
    notifier = std::make_unique<Notifier>(Notifier::Deps{.spool_root = spool,
                                                         .durable = false,
                                                         .clock = clock,
                                                         .webhook = webhook,
                                                         .command = command,
                                                         .registry = &registry,
                                                         .jitter_seed = 7},
                                          std::move(s));
    return *notifier;
  }

  // A job that ended: its files in done/, and its record written as the job table writes it.
  NotifyRecord finished(const std::string& id, const std::string& url,
                        std::optional<std::string> cmd = std::nullopt) {
    NotifySpec spec;
    spec.webhook = url;
    spec.command = std::move(cmd);
    const std::string body = "{\n  \"id\": \"" + id + "\",\n  \"state\": \"succeeded\"\n}\n";
    NotifyRecord r = *make_notify_record(id, JobState::kSucceeded, spec, body);
    TempFolder::write(spool + "/done/" + id + ".json", "{}");
    TempFolder::write(spool + "/done/" + id + ".report.json", report_with_notify(r));
    REQUIRE(store_notify_record(spool, r, false));
    return r;
  }

  nlohmann::json report(const std::string& id) {
    return nlohmann::json::parse(TempFolder::read(spool + "/done/" + id + ".report.json"));
  }
  bool record_exists(const std::string& id) { return path_exists(notify_record_path(spool, id)); }
  double counter(const std::string& channel, const std::string& outcome) {
    for (const auto& family : registry.Collect()) {
      if (family.name != "docpipe_notifications_total") continue;
      for (const auto& m : family.metric) {
        std::map<std::string, std::string> labels;
        for (const auto& l : m.label) labels[l.name] = l.value;
        if (labels["channel"] == channel && labels["outcome"] == outcome) return m.counter.value;
      }
    }
    return -1;
  }
  double gauge(const std::string& name, const std::string& host = "") {
    for (const auto& family : registry.Collect()) {
      if (family.name != name) continue;
      for (const auto& m : family.metric) {
        if (!host.empty() && (m.label.empty() || m.label[0].value != host)) continue;
        return m.gauge.value;
      }
    }
    return -1;
  }
};

TEST_CASE("notifier: a webhook gets the report as its body and the report then says delivered") {
  NotifierFixture f;
  Notifier& n = f.make();
  NotifyRecord r = f.finished("j1", "https://HOOKS.example.org/hook?token=s3cret");
  n.add(r);
  CHECK(f.gauge("docpipe_notifications_pending") == 1);
  CHECK(n.run_due() == 1);
  REQUIRE(f.webhook.attempts.size() == 1);
  CHECK(f.webhook.attempts[0].host == "hooks.example.org");
  CHECK(f.webhook.attempts[0].attempt == 1);
  const nlohmann::json body = nlohmann::json::parse(f.webhook.bodies[0]);
  CHECK(body["id"] == "j1");
  CHECK(body["state"] == "succeeded");
  CHECK_FALSE(body.contains("notify"));  // the body is the report as the job ended
  const nlohmann::json rep = f.report("j1");
  CHECK(rep["notify"]["webhook"]["state"] == "delivered");
  CHECK(rep["notify"]["webhook"]["attempts"] == 1);
  CHECK(rep["notify"]["webhook"]["http_status"] == 200);
  CHECK(rep["id"] == "j1");  // the rest of the report is kept
  CHECK_FALSE(f.record_exists("j1"));
  CHECK(n.pending() == 0);
  CHECK(f.counter("webhook", "delivered") == 1);
  CHECK(f.gauge("docpipe_notifications_pending") == 0);
}

TEST_CASE("notifier: its rewrite keeps what was added to the report since the job ended") {
  NotifierFixture f;
  Notifier& n = f.make();
  NotifyRecord r = f.finished("linked", "https://hooks.example.org/h");
  // A retry linked itself into the report (daemon/job_retry.h) while the notification waited.
  const std::string path = f.spool + "/done/linked.report.json";
  nlohmann::json with_link = f.report("linked");
  with_link["retried_by"] = {"linked-retry-1"};
  TempFolder::write(path, with_link.dump(2));
  n.add(r);
  CHECK(n.run_due() == 1);
  const nlohmann::json rep = f.report("linked");
  CHECK(rep["notify"]["webhook"]["state"] == "delivered");
  CHECK(rep["retried_by"] == nlohmann::json{"linked-retry-1"});
  // The body is still the report as the job ended.
  CHECK_FALSE(nlohmann::json::parse(f.webhook.bodies.at(0)).contains("retried_by"));
}

TEST_CASE("notifier: failed attempts are retried after a jittered exponential backoff") {
  NotifierFixture f;
  Notifier& n = f.make();
  int calls = 0;
  f.webhook.answer = [&calls](const NotifyAttempt&) { return http(++calls <= 2 ? 500 : 204); };
  n.add(f.finished("j2", "http://127.0.0.1:8080/h"));
  CHECK(n.run_due() == 1);
  CHECK(calls == 1);
  // The first delay is retry_base_ms x [0.5, 1.5): not before 500 ms, due by 1.5 s.
  const Clock::time_point t0 = f.clock.now();
  REQUIRE(n.next_due());
  const auto first = *n.next_due() - t0;
  CHECK(first >= milliseconds(500));
  CHECK(first < milliseconds(1500));
  CHECK(f.report("j2")["notify"]["webhook"]["state"] == "pending");
  CHECK(f.report("j2")["notify"]["webhook"]["last_error"] == "HTTP 500");
  CHECK(f.report("j2")["notify"]["webhook"].contains("next_attempt_at"));
  CHECK(f.record_exists("j2"));
  f.clock.advance(first - milliseconds(1));
  CHECK(n.run_due() == 0);  // never early
  f.clock.advance(milliseconds(1));
  CHECK(n.run_due() == 1);
  CHECK(calls == 2);
  // The second delay doubles: 2 s x [0.5, 1.5).
  const auto second = *n.next_due() - f.clock.now();
  CHECK(second >= milliseconds(1000));
  CHECK(second < milliseconds(3000));
  f.clock.advance(second);
  CHECK(n.run_due() == 1);
  CHECK(calls == 3);
  const nlohmann::json w = f.report("j2")["notify"]["webhook"];
  CHECK(w["state"] == "delivered");
  CHECK(w["attempts"] == 3);
  CHECK(w["http_status"] == 204);
  CHECK(f.counter("webhook", "retried") == 2);
  CHECK(f.counter("webhook", "delivered") == 1);
  CHECK_FALSE(f.record_exists("j2"));
}

TEST_CASE("notifier: delays are capped at retry_max_ms and max_attempts ends in failed") {
  NotifierFixture f;
  Notifier& n = f.make(NotifierFixture::settings(/*max_attempts=*/6, /*failures=*/0));
  f.webhook.answer = [](const NotifyAttempt&) { return http(503); };
  n.add(f.finished("j3", "https://hooks.example.org/x"));
  for (int i = 1; i <= 6; ++i) {
    CHECK(n.run_due() == 1);
    if (i == 6) break;
    const auto delay = *n.next_due() - f.clock.now();
    CHECK(delay <= milliseconds(8000));  // 1, 2, 4, 8, 8 s nominal, jittered, never past the cap
    f.clock.advance(delay);
  }
  CHECK(f.webhook.attempts.size() == 6);
  CHECK(n.run_due() == 0);
  CHECK_FALSE(n.next_due());
  const nlohmann::json w = f.report("j3")["notify"]["webhook"];
  CHECK(w["state"] == "failed");
  CHECK(w["attempts"] == 6);
  CHECK(w["last_error"] == "HTTP 503");
  CHECK(f.counter("webhook", "failed") == 1);
  CHECK(f.counter("webhook", "retried") == 5);
  CHECK_FALSE(f.record_exists("j3"));
}

TEST_CASE("notifier: a 4xx answer fails at once and a host no longer allowed is not contacted") {
  NotifierFixture f;
  Notifier& n = f.make();
  f.webhook.answer = [](const NotifyAttempt&) { return http(404); };
  n.add(f.finished("j4", "https://hooks.example.org/gone"));
  CHECK(n.run_due() == 1);
  CHECK(f.report("j4")["notify"]["webhook"]["state"] == "failed");
  CHECK(f.report("j4")["notify"]["webhook"]["attempts"] == 1);

  // A reload drops the host: the pending notification fails without an attempt at it.
  f.webhook.answer = [](const NotifyAttempt&) { return http(500); };
  n.add(f.finished("j5", "http://127.0.0.1:8080/h"));
  CHECK(n.run_due() == 1);
  NotifierSettings s = NotifierFixture::settings();
  s.allowed_webhook_hosts = {"hooks.example.org"};
  n.configure(s);
  f.clock.advance(milliseconds(10000));
  CHECK(n.run_due() == 1);
  CHECK(f.webhook.attempts.size() == 2);  // the attempt after the reload never reached it
  const nlohmann::json w = f.report("j5")["notify"]["webhook"];
  CHECK(w["state"] == "failed");
  CHECK(w["last_error"].get<std::string>().find("allowed_webhook_hosts") != std::string::npos);
}

TEST_CASE("notifier: a failing host opens its breaker; others wait uncharged for one probe") {
  NotifierFixture f;
  Notifier& n = f.make(NotifierFixture::settings(/*max_attempts=*/10, /*failures=*/3));
  bool down = true;
  f.webhook.answer = [&down](const NotifyAttempt&) { return http(down ? 502 : 200); };
  for (int i = 0; i < 5; ++i)
    n.add(f.finished("b" + std::to_string(i), "https://hooks.example.org/h"));
  // Three failures in a row open the breaker; the other two jobs' notifications are not tried.
  CHECK(n.run_due() == 3);
  CHECK(f.webhook.attempts.size() == 3);
  REQUIRE(n.host_breakers().snapshot("hooks.example.org"));
  CHECK(n.host_breakers().snapshot("hooks.example.org")->state == BreakerState::kOpen);
  CHECK(f.gauge("docpipe_webhook_breaker_state", "hooks.example.org") == 1);
  CHECK(f.gauge("docpipe_webhook_breaker_state", "127.0.0.1:8080") == 0);
  // Retries fall due meanwhile, but nothing reaches the host while it is open.
  f.clock.advance(milliseconds(20000));
  CHECK(n.run_due() == 0);
  CHECK(f.webhook.attempts.size() == 3);
  for (int i = 3; i < 5; ++i) {
    CHECK(f.report("b" + std::to_string(i))["notify"]["webhook"]["attempts"] == 0);  // uncharged
  }
  // Open period over: exactly one probe, which fails: open again for twice as long.
  f.clock.advance(milliseconds(10000));
  CHECK(n.run_due() == 1);
  CHECK(f.webhook.attempts.size() == 4);
  CHECK(n.host_breakers().snapshot("hooks.example.org")->state == BreakerState::kOpen);
  CHECK(n.host_breakers().snapshot("hooks.example.org")->open_ms == 60000);
  f.clock.advance(milliseconds(59000));
  CHECK(n.run_due() == 0);
  // The receiver is back: the probe closes the breaker and everyone goes.
  down = false;
  f.clock.advance(milliseconds(1000));
  CHECK(n.run_due() == 5);
  CHECK(n.host_breakers().snapshot("hooks.example.org")->state == BreakerState::kClosed);
  CHECK(f.gauge("docpipe_webhook_breaker_state", "hooks.example.org") == 0);
  for (int i = 0; i < 5; ++i) {
    CHECK(f.report("b" + std::to_string(i))["notify"]["webhook"]["state"] == "delivered");
  }
  CHECK(f.webhook.attempts.size() == 9);
  CHECK(n.pending() == 0);
  const nlohmann::json status = n.status();
  CHECK(status["pending"] == 0);
  CHECK(status["webhook_hosts"]["hooks.example.org"]["state"] == "closed");
}

TEST_CASE("notifier: while a probe runs other notifications to the host wait for its outcome") {
  NotifierFixture f;
  Notifier& n = f.make(NotifierFixture::settings(10, 1));
  f.webhook.answer = [](const NotifyAttempt&) { return http(500); };
  n.add(f.finished("p0", "https://hooks.example.org/h"));
  CHECK(n.run_due() == 1);  // opens (failures 1)
  n.add(f.finished("p1", "https://hooks.example.org/h"));
  f.clock.advance(milliseconds(30000));
  // The first attempt taken is the probe; inside it, the other one is held back.
  size_t inside = 99;
  bool probing = false;
  f.webhook.answer = [&](const NotifyAttempt&) {
    if (!probing) {
      probing = true;
      inside = n.run_due();  // what else may run while the probe is out: nothing
    }
    return http(200);
  };
  CHECK(n.run_due() == 2);
  CHECK(inside == 0);
  CHECK(n.pending() == 0);
}

TEST_CASE("notifier: a command notification asks that command's breaker and waits while open") {
  NotifierFixture f;
  CommandBreakers commands(f.clock);
  commands.configure(
      {{"tell", BreakerConfig{.failures = 1, .open_ms = 1000, .max_open_ms = 1000}}});
  f.notifier = std::make_unique<Notifier>(Notifier::Deps{.spool_root = f.spool,
                                                         .durable = false,
                                                         .clock = f.clock,
                                                         .webhook = f.webhook,
                                                         .command = f.command,
                                                         .command_breakers = &commands,
                                                         .jitter_seed = 1},
                                          NotifierFixture::settings());
  // The notifier subscribes to `commands`: it must go first.
  struct Reset {
    std::unique_ptr<Notifier>& n;
    ~Reset() { n.reset(); }
  } reset{f.notifier};
  Notifier& n = *f.notifier;
  // An exec document's failure opened the command's breaker.
  CommandAdmission a = commands.admit("tell");
  a.run.failed(CommandFailure::kExited, "exited with status 1");
  n.add(f.finished("c1", "https://hooks.example.org/h", "tell"));
  CHECK(n.run_due() == 1);  // the webhook goes; the command waits
  CHECK(f.command.attempts.empty());
  CHECK(n.pending() == 1);
  f.clock.advance(milliseconds(1000));
  CHECK(n.run_due() == 1);
  REQUIRE(f.command.attempts.size() == 1);
  CHECK(f.command.attempts[0].command.argv == std::vector<std::string>{"/bin/true"});
  CHECK(nlohmann::json::parse(f.command.bodies[0])["id"] == "c1");
  CHECK(f.report("c1")["notify"]["command"]["state"] == "delivered");
  CHECK(f.report("c1")["notify"]["webhook"]["state"] == "delivered");
  CHECK(commands.snapshot("tell")->state == BreakerState::kClosed);
}

TEST_CASE("notifier: an attempt cut short by stop is not counted and the record stays") {
  NotifierFixture f;
  Notifier& n = f.make();
  // The transport sees the stop flag mid-attempt, as curl's progress callback does.
  f.webhook.answer = [&n](const NotifyAttempt&) {
    n.stop();
    return DeliveryOutcome{.kind = Kind::kAborted};
  };
  n.add(f.finished("s1", "https://hooks.example.org/h"));
  CHECK(n.run_due() == 1);
  CHECK(f.record_exists("s1"));
  Result<std::string> text = read_file(notify_record_path(f.spool, "s1"));
  REQUIRE(text);
  Result<NotifyRecord> r = parse_notify_record(*text);
  REQUIRE(r);
  CHECK(r->channels[0].attempts == 0);
  CHECK(r->channels[0].state == DeliveryState::kPending);
}

TEST_CASE("notifier: records left by an earlier run resume where they stopped") {
  NotifierFixture f;
  // A record two attempts in, as a killed daemon left it.
  NotifyRecord r = f.finished("r1", "https://hooks.example.org/h");
  r.channels[0].attempts = 2;
  r.channels[0].last_error = "HTTP 500";
  REQUIRE(store_notify_record(f.spool, r, false));
  // A job still in active/: its finish writes the record again, so it is left alone.
  f.finished("r2", "https://hooks.example.org/h");
  TempFolder::write(f.spool + "/active/r2.json", "{}");
  // What a crash in the middle of a write leaves, and a damaged record.
  TempFolder::write(f.spool + "/notify/.r3.json.docpipe-tmp.abc", "{");
  TempFolder::write(f.spool + "/notify/r4.json", "{\"notify_record\": 1}");
  // Every channel ended, but the crash came before the record was removed.
  NotifyRecord ended = f.finished("r5", "https://hooks.example.org/h");
  ended.channels[0].state = DeliveryState::kFailed;
  ended.channels[0].attempts = 10;
  TempFolder::write(notify_record_path(f.spool, "r5"), notify_record_to_json(ended));

  Notifier& n = f.make();
  n.resume_pending();
  CHECK(n.pending() == 1);
  CHECK(n.run_due() == 1);
  REQUIRE(f.webhook.attempts.size() == 1);
  CHECK(f.webhook.attempts[0].job_id == "r1");
  CHECK(f.webhook.attempts[0].attempt == 3);
  CHECK(f.report("r1")["notify"]["webhook"]["attempts"] == 3);
  CHECK(f.report("r1")["notify"]["webhook"]["state"] == "delivered");
  CHECK_FALSE(f.record_exists("r1"));
  CHECK(f.record_exists("r2"));
  CHECK(f.report("r5")["notify"]["webhook"]["state"] == "failed");
  CHECK(f.report("r5")["notify"]["webhook"]["attempts"] == 10);
  CHECK(TempFolder::names(f.spool + "/notify") ==
        std::vector<std::string>{"r2.json", "r4.json.corrupt"});
}

TEST_CASE("notifier: records round-trip and the notify section asks only for what `on` wants") {
  NotifySpec spec;
  spec.webhook = "https://hooks.example.org/h";
  spec.command = "tell";
  spec.on = kNotifyFailed | kNotifyCancelled;
  CHECK_FALSE(make_notify_record("x", JobState::kSucceeded, spec, "{}"));
  std::optional<NotifyRecord> r =
      make_notify_record("x", JobState::kCancelled, spec, "{\"id\":\"x\"}");
  REQUIRE(r);
  CHECK_FALSE(r->succeeded_folder);
  REQUIRE(r->channels.size() == 2);
  r->channels[1].state = DeliveryState::kFailed;
  r->channels[1].attempts = 4;
  r->channels[1].last_error = "command \"tell\" exited with status 1";
  Result<NotifyRecord> back = parse_notify_record(notify_record_to_json(*r));
  REQUIRE(back);
  CHECK(back->id == "x");
  CHECK(back->body == "{\"id\":\"x\"}");
  CHECK(back->channels[1].attempts == 4);
  CHECK(back->channels[1].state == DeliveryState::kFailed);
  CHECK(back->channels[1].last_error == r->channels[1].last_error);
  const nlohmann::json rep = nlohmann::json::parse(report_with_notify(*back));
  CHECK(rep["notify"]["command"]["command"] == "tell");
  CHECK(rep["notify"]["command"]["state"] == "failed");
  CHECK(rep["notify"]["webhook"]["url"] == "https://hooks.example.org/h");
  CHECK(rep["notify"]["webhook"]["state"] == "pending");
  CHECK_FALSE(parse_notify_record("[]"));
  CHECK_FALSE(parse_notify_record("{\"notify_record\": 2}"));
}

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
}  // namespace docpipe
