// Completion notifications through the real daemon (issue 14) with a real HTTP receiver in the
// test process: the report JSON as the webhook's body; a receiver that fails twice then accepts
// (delivered on attempt 3, in the report, status and /metrics); a host that is not allowed
// refuses the job; a command notification reads the report on stdin; kill -9 with a
// notification pending, delivered after the restart; a 503 with Retry-After holds the next
// attempt; webhook_format "text" posts a chat line; a cancelled job notifies; a record that
// cannot be written (SPOOL/notify a file) fails the notification, not the job.

#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>

#include "tests/e2e/harness.h"
#include "tests/e2e/http_receiver.h"

namespace e2e {
namespace {

using std::chrono::milliseconds;

// A daemon whose config allows the receiver's host:port and the command `tell`, which copies
// its stdin (the report) to TMP/told.json.
struct NotifyDaemon {
  TempDir tmp;
  std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  HttpReceiver receiver;
  std::unique_ptr<DaemonProcess> daemon;

  std::string binary;  // empty: build/docpipe

  explicit NotifyDaemon(std::vector<Reply> statuses, int64_t retry_base_ms = 100,
                        int64_t retry_max_ms = 1000, std::string binary_path = "")
      : receiver(std::move(statuses)), binary(std::move(binary_path)) {
    const std::string script = tmp / "tell.sh";
    write_file(script, "cat > '" + tmp / "told.tmp" + "' && mv '" + tmp / "told.tmp" + "' '" +
                           tmp / "told.json" + "'\n");
    nlohmann::json config = {
        {"allowed_webhook_hosts", {receiver.host_port()}},
        {"notify",
         {{"max_attempts", 5},
          {"retry_base_ms", retry_base_ms},
          {"retry_max_ms", std::max<int64_t>(retry_base_ms, retry_max_ms)},
          {"timeout_ms", 5000}}},
        {"commands", {{"tell", {{"argv", {"/bin/sh", script}}, {"timeout_ms", 10000}}}}}};
    write_file(tmp / "docpipe.json", config.dump(2) + "\n");
    write_file(in + "/a.txt", "alpha\n");
    write_file(in + "/b.txt", "beta\n");
    start();
  }

  void start() {
    daemon = std::make_unique<DaemonProcess>(
        spool, std::vector<std::string>{"--config", tmp / "docpipe.json", "--durability", "fsync"});
    if (!binary.empty()) daemon->set_binary(binary);
    daemon->start();
  }

  nlohmann::json job(const std::string& id, const nlohmann::json& notify) {
    nlohmann::json j = make_job(id, in, out);
    j["notify"] = notify;
    return j;
  }
  std::string hook() const { return "http://" + receiver.host_port() + "/hooks/done?token=s3cret"; }

  nlohmann::json report(const std::string& folder, const std::string& id) {
    return read_json(spool + "/" + folder + "/" + id + ".report.json");
  }
  // Polls the report until its notify section's channel is in `state`; returns the section.
  nlohmann::json wait_notify(const std::string& id, const std::string& channel,
                             const std::string& state, const std::string& folder = "done") {
    nlohmann::json section;
    bool ok = poll_until(kJobTimeout, [&] {
      if (!file_exists(spool + "/" + folder + "/" + id + ".report.json")) return false;
      section = report(folder, id)
                    .value("notify", nlohmann::json::object())
                    .value(channel, nlohmann::json());
      return section.is_object() && section.value("state", "") == state;
    });
    INFO("notify section: " << section.dump() << "\nlog:\n" << daemon->log());
    REQUIRE(ok);
    return section;
  }
  double notifications(const std::string& channel, const std::string& outcome) {
    return daemon
        ->metric("docpipe_notifications_total", {{"channel", channel}, {"outcome", outcome}})
        .value_or(-1);
  }
};

TEST_CASE("e2e notify: a webhook receives the report JSON and the report says delivered") {
  NotifyDaemon d({200});
  CHECK(d.daemon->metric("docpipe_webhook_breaker_state", {{"host", d.receiver.host_port()}}) == 0);
  drop_job(d.spool, "n1.json", d.job("n1", {{"webhook", d.hook()}}));
  JobOutcome outcome = d.daemon->wait_for_job("n1");
  CHECK(outcome.folder == "done");
  nlohmann::json section = d.wait_notify("n1", "webhook", "delivered");
  CHECK(section["attempts"] == 1);
  CHECK(section["http_status"] == 200);
  CHECK(section["url"] == d.hook());
  REQUIRE(d.receiver.count() == 1);
  ReceivedRequest r = d.receiver.requests()[0];
  CHECK(r.method == "POST");
  CHECK(r.path == "/hooks/done?token=s3cret");
  CHECK(r.headers["content-type"] == "application/json");
  CHECK(r.headers["x-docpipe-job"] == "n1");
  CHECK(r.headers["x-docpipe-attempt"] == "1");
  const nlohmann::json body = nlohmann::json::parse(r.body);
  CHECK(body["id"] == "n1");
  CHECK(body["state"] == "succeeded");
  CHECK(body["counts"]["succeeded"] == 2);
  CHECK_FALSE(body.contains("notify"));
  CHECK(d.daemon->wait_for_metric("docpipe_notifications_total",
                                  {{"channel", "webhook"}, {"outcome", "delivered"}}, 1) == 1);
  CHECK(d.daemon->metric("docpipe_notifications_pending") == 0);
  // The record goes right after the report's last rewrite.
  CHECK(poll_until(kJobTimeout, [&] { return !file_exists(d.spool + "/notify/n1.json"); }));
  // The token in the URL's query never reaches the log.
  CHECK(d.daemon->log().find("s3cret") == std::string::npos);
  CHECK_FALSE(d.daemon->log_lines_with({"notification delivered", "job=n1"}).empty());
  // `docpipe status ID` shows the outcome.
  CommandResult st = docpipe({"status", "--spool", d.spool, "n1"}, d.tmp.path());
  INFO("stdout: " << st.out << "\nstderr: " << st.err);
  CHECK(st.exit_code == 0);
  CHECK(st.out.find("notify webhook: delivered after 1 attempt(s), HTTP 200") != std::string::npos);
}

TEST_CASE("e2e notify: a receiver that fails twice then accepts gets it on attempt 3") {
  NotifyDaemon d({500, 500, 200});
  drop_job(d.spool, "n2.json", d.job("n2", {{"webhook", d.hook()}}));
  d.daemon->wait_for_job("n2");
  nlohmann::json section = d.wait_notify("n2", "webhook", "delivered");
  CHECK(section["attempts"] == 3);
  CHECK(section["http_status"] == 200);
  CHECK(section["last_error"] == "HTTP 500; answer: receiver says no?");
  std::vector<ReceivedRequest> rs = d.receiver.requests();
  REQUIRE(rs.size() == 3);
  for (int i = 0; i < 3; ++i) {
    CHECK(rs[i].headers["x-docpipe-attempt"] == std::to_string(i + 1));
    CHECK(rs[i].body == rs[0].body);  // the same report each time
  }
  CHECK(d.daemon->wait_for_metric("docpipe_notifications_total",
                                  {{"channel", "webhook"}, {"outcome", "delivered"}}, 1) == 1);
  CHECK(d.notifications("webhook", "retried") == 2);
  CHECK(d.notifications("webhook", "failed") == 0);
  CHECK(d.daemon->log_lines_with({"notification attempt failed; retrying", "job=n2"}).size() == 2);
  nlohmann::json status = daemon_status(d.spool, d.tmp.path());
  CHECK(status["daemon"]["notifications"]["pending"] == 0);
  CHECK(status["daemon"]["notifications"]["webhook_hosts"][d.receiver.host_port()]["state"] ==
        "closed");
}

TEST_CASE("e2e notify: a webhook host that is not allowed gets the job rejected with the reason") {
  NotifyDaemon d({200});
  HttpReceiver other({200});
  const std::string url = "http://" + other.host_port() + "/x";
  drop_job(d.spool, "n3.json", d.job("n3", {{"webhook", url}}));
  nlohmann::json error = d.daemon->wait_for_rejection("n3.json");
  const std::string text = error.dump();
  INFO(text);
  CHECK(text.find("notify.webhook") != std::string::npos);
  CHECK(text.find("host \\\"" + other.host_port() +
                  "\\\" is not in the daemon config's "
                  "allowed_webhook_hosts") != std::string::npos);
  CHECK(text.find("allowed: " + d.receiver.host_port()) != std::string::npos);
  // `docpipe submit` through the socket is refused the same way, before anything is written.
  write_file(d.tmp / "n3b.json", d.job("n3b", {{"webhook", url}}).dump());
  CommandResult r = docpipe({"submit", "--spool", d.spool, d.tmp / "n3b.json"}, d.tmp.path());
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("allowed_webhook_hosts") != std::string::npos);
  CHECK(other.count() == 0);
}

TEST_CASE("e2e notify: a command notification reads the report on stdin, also for a cancel") {
  NotifyDaemon d({200});
  drop_job(d.spool, "n4.json", d.job("n4", {{"command", "tell"}, {"on", {"succeeded"}}}));
  d.daemon->wait_for_job("n4");
  nlohmann::json section = d.wait_notify("n4", "command", "delivered");
  CHECK(section["attempts"] == 1);
  CHECK(section["command"] == "tell");
  nlohmann::json told = read_json(d.tmp / "told.json");
  CHECK(told["id"] == "n4");
  CHECK(told["state"] == "succeeded");
  CHECK(d.daemon->wait_for_metric("docpipe_notifications_total",
                                  {{"channel", "command"}, {"outcome", "delivered"}}, 1) == 1);

  // `on` without "failed": a failed job tells nobody and has no notify section.
  nlohmann::json failing = d.job("n5", {{"webhook", d.hook()}, {"on", {"succeeded", "cancelled"}}});
  failing["input"] = {{"files", {d.tmp / "missing.txt"}}};
  write_file(d.tmp / "missing.txt", "x");
  failing["transforms"] = {{{"op", "gunzip"}}};  // not gzip: the document fails
  drop_job(d.spool, "n5.json", failing);
  JobOutcome o = d.daemon->wait_for_job("n5");
  CHECK(o.folder == "failed");
  CHECK_FALSE(o.report.contains("notify"));
  CHECK(d.receiver.count() == 0);
}

TEST_CASE("e2e notify: kill -9 with a notification pending, delivered after the restart") {
  // Down at first; the retry is due 1 to 3 s later, so that the kill lands while it waits.
  NotifyDaemon d({503}, /*retry_base_ms=*/2000);
  drop_job(d.spool, "n6.json", d.job("n6", {{"webhook", d.hook()}}));
  d.daemon->wait_for_job("n6");
  REQUIRE(poll_until(kJobTimeout, [&] {
    return d.report("done", "n6")["notify"]["webhook"].value("attempts", 0) == 1;
  }));
  CHECK(d.report("done", "n6")["notify"]["webhook"]["state"] == "pending");
  CHECK(file_exists(d.spool + "/notify/n6.json"));
  REQUIRE(::kill(d.daemon->pid(), SIGKILL) == 0);
  CHECK(d.daemon->wait_exit() == 128 + SIGKILL);
  CHECK(d.receiver.count() == 1);

  d.receiver.answer({200});
  d.start();
  nlohmann::json section = d.wait_notify("n6", "webhook", "delivered");
  CHECK(section["attempts"] == 2);  // the attempt before the kill still counts
  CHECK(d.receiver.count() == 2);
  CHECK(nlohmann::json::parse(d.receiver.requests()[1].body)["id"] == "n6");
  CHECK_FALSE(d.daemon->log_lines_with({"notifications resumed", "records=1"}).empty());
  CHECK(poll_until(kJobTimeout, [&] { return !file_exists(d.spool + "/notify/n6.json"); }));
}

TEST_CASE("e2e notify: a 503 with Retry-After 2 holds the next attempt for at least 2 s") {
  // Without Retry-After the retry would come 50 to 150 ms later (retry_base_ms 100).
  NotifyDaemon d({Reply(503, "Retry-After: 2\r\n"), 200}, /*retry_base_ms=*/100,
                 /*retry_max_ms=*/10000);
  drop_job(d.spool, "n7.json", d.job("n7", {{"webhook", d.hook()}}));
  d.daemon->wait_for_job("n7");
  nlohmann::json section = d.wait_notify("n7", "webhook", "delivered");
  CHECK(section["attempts"] == 2);
  CHECK(section["last_error"] ==
        "HTTP 503; answer: receiver says no?; Retry-After \"2\": waits at least 2000 ms");
  std::vector<ReceivedRequest> rs = d.receiver.requests();
  REQUIRE(rs.size() == 2);
  CHECK(rs[1].received_at - rs[0].received_at >= milliseconds(2000));
  CHECK(d.notifications("webhook", "retried") == 1);
  CHECK_FALSE(
      d.daemon->log_lines_with({"notification attempt failed; retrying", "retry_in_ms=2000"})
          .empty());
}

TEST_CASE("e2e notify: webhook_format text posts one chat line and the command the report") {
  NotifyDaemon d({200});
  nlohmann::json j =
      d.job("n8", {{"webhook", d.hook()}, {"webhook_format", "text"}, {"command", "tell"}});
  j["input"] = {{"files", {d.in + "/a.txt"}}};
  j["transforms"] = {{{"op", "gunzip"}}};  // not gzip: the document fails
  drop_job(d.spool, "n8.json", j);
  JobOutcome o = d.daemon->wait_for_job("n8");
  CHECK(o.folder == "failed");
  d.wait_notify("n8", "webhook", "delivered", "failed");
  d.wait_notify("n8", "command", "delivered", "failed");
  REQUIRE(d.receiver.count() == 1);
  ReceivedRequest r = d.receiver.requests()[0];
  const nlohmann::json& failed = o.report["failed_documents"][0];
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.1f", o.report["duration_seconds"].get<double>());
  const std::string line = "docpipe job n8 failed: 0 succeeded, 1 failed, 0 skipped of 1 (" +
                           std::string(seconds) +
                           " s); first failure: " + failed["input"].get<std::string>() + ": " +
                           failed["error"].get<std::string>();
  INFO("body: " << r.body);
  CHECK(r.body == nlohmann::json{{"text", line}}.dump());
  CHECK(r.headers["content-type"] == "application/json");
  CHECK(r.headers["x-docpipe-job"] == "n8");
  CHECK(r.headers["x-docpipe-attempt"] == "1");
  // The command still reads the report.
  nlohmann::json told = read_json(d.tmp / "told.json");
  CHECK(told["id"] == "n8");
  CHECK(told["state"] == "failed");
  // A format that does not exist is refused with the allowed ones.
  drop_job(d.spool, "n8b.json", d.job("n8b", {{"webhook", d.hook()}, {"webhook_format", "slack"}}));
  const std::string error = d.daemon->wait_for_rejection("n8b.json").dump();
  INFO(error);
  CHECK(error.find("notify.webhook_format: expected one of \\\"report\\\"") != std::string::npos);
}

TEST_CASE("e2e notify: a cancelled job notifies its webhook and its command") {
  NotifyDaemon d({200}, 100, 1000, DOCPIPE_TEST_BINARY);
  nlohmann::json j =
      d.job("n10", {{"webhook", d.hook()}, {"command", "tell"}, {"on", {"cancelled"}}});
  j["transforms"] = {{{"op", "test.sleep"}, {"ms", 60000}}};
  drop_job(d.spool, "n10.json", j);
  REQUIRE(d.daemon->wait_for_metric("docpipe_jobs_active", {}, 1) == 1);
  CommandResult cancel = docpipe({"cancel", "--spool", d.spool, "n10"}, d.tmp.path());
  INFO("stdout: " << cancel.out << "\nstderr: " << cancel.err);
  CHECK(cancel.exit_code == 0);
  JobOutcome o = d.daemon->wait_for_job("n10");
  CHECK(o.folder == "failed");
  CHECK(o.report["state"] == "cancelled");
  d.wait_notify("n10", "webhook", "delivered", "failed");
  d.wait_notify("n10", "command", "delivered", "failed");
  REQUIRE(d.receiver.count() == 1);
  CHECK(nlohmann::json::parse(d.receiver.requests()[0].body)["state"] == "cancelled");
  CHECK(read_json(d.tmp / "told.json")["state"] == "cancelled");
}

TEST_CASE("e2e notify: a record that cannot be written fails the notification and the job ends") {
  NotifyDaemon d({200});
  // A regular file where the folder of records goes: every write there fails with ENOTDIR.
  write_file(d.spool + "/notify", "not a folder\n");
  drop_job(d.spool, "n9.json", d.job("n9", {{"webhook", d.hook()}, {"command", "tell"}}));
  JobOutcome o = d.daemon->wait_for_job("n9");
  CHECK(o.folder == "done");
  INFO("report: " << o.report.dump(2) << "\nlog:\n" << d.daemon->log());
  for (const char* channel : {"webhook", "command"}) {
    const nlohmann::json& c = o.report["notify"][channel];
    CHECK(c["state"] == "failed");
    CHECK(c["attempts"] == 0);
    const std::string error = c.value("last_error", "");
    CHECK(error.rfind("cannot record the notification in ", 0) == 0);
    CHECK(error.find("/notify: ") != std::string::npos);
    CHECK(error.find("Not a directory") != std::string::npos);
  }
  CHECK(d.daemon->wait_for_metric("docpipe_notifications_total",
                                  {{"channel", "webhook"}, {"outcome", "failed"}}, 1) == 1);
  CHECK(d.notifications("command", "failed") == 1);
  CHECK(d.daemon->metric("docpipe_notifications_pending") == 0);
  CHECK(d.daemon->log_lines_with({"cannot record the job's notification", "job=n9"}).size() == 1);
  CHECK(d.receiver.count() == 0);
  CHECK_FALSE(file_exists(d.tmp / "told.json"));
  CHECK_FALSE(file_exists(d.spool + "/active/n9.json"));
}

}  // namespace
}  // namespace e2e
