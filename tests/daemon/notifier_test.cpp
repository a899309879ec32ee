// The completion notifier (daemon/notifier.h) on a FakeClock with fake receivers, driven by
// run_due(): delivery and the report's notify section, jittered exponential backoff and its cap,
// max_attempts, answers that are not worth another attempt, the circuit breaker per host (waits
// uncharged, one half-open probe), hosts dropped by a reload, stopping, and records resumed from
// SPOOL/notify/ after a restart. Retry-After, the text format and unrecordable records are in
// notifier_format_test.cpp.

#include "daemon/notifier.h"

#include "tests/daemon/notifier_fixture.h"

namespace docpipe::notifier_test {
namespace {

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

}  // namespace
}  // namespace docpipe::notifier_test
