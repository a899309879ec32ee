#pragma once
// The notifier tests' fixture (tests/daemon/notifier_test.cpp, notifier_format_test.cpp): fake
// receivers scripted by the test, a spool in a temp folder, a FakeClock, and readers of the
// reports and metrics the notifier leaves.

#include <doctest/doctest.h>
#include <prometheus/registry.h>

#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "core/fs_util.h"
#include "core/result.h"
#include "daemon/notifier.h"
#include "tests/support/fake_clock.h"
#include "tests/support/temp_folder.h"

namespace docpipe::notifier_test {

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

inline DeliveryOutcome http(int status) {
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

}  // namespace docpipe::notifier_test
