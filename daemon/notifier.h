#pragma once
// Completion notifications (docs/design.md "Completion notifications (issue 14)"): delivers the
// records of SPOOL/notify/ (daemon/notify_record.h) on threads of its own, never on the loop:
//
//   add (a job's finish wrote its record) / resume_pending (start) -> due now
//   due --breaker of the host (or command) open--> waits, uncharged, until a probe may go
//   due --attempt--> delivered | failed for good (a 4xx, max_attempts) | retried after a
//                    jittered exponential backoff (retry_base_ms doubling up to retry_max_ms)
//   each attempt: the record and the report's "notify" section rewritten atomically; the record
//   removed once every channel has ended
//
// A receiver that keeps failing trips the circuit breaker of its host (the allow-list entry it
// matched: core/command_breaker.h's state machine, one CommandBreakers keyed by host), so that
// the notifications of other jobs wait for one half-open probe instead of each trying it. A
// command's notifications ask that command's own breaker, the one its exec documents use.
//
// Time comes from the Clock given and the transports are interfaces, so unit tests run the whole
// state machine on a FakeClock with fake receivers (tests/daemon/notifier_test.cpp), driving it
// with run_due() instead of threads.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "config/daemon_config.h"
#include "core/clock.h"
#include "core/command_breaker.h"
#include "daemon/finished_reports.h"
#include "daemon/notify_record.h"

namespace docpipe {

// One attempt to deliver one channel of one record.
struct NotifyAttempt {
  std::string job_id = "";
  NotifyChannel channel = NotifyChannel::kWebhook;
  std::string target = "";            // the URL, or the command's name
  std::string host = "";              // webhook: the allow-list entry the URL matched
  const std::string* body = nullptr;  // the report JSON, or {"text": ...} (webhook_format)
  int attempt = 1;                    // 1 for the first
  int64_t timeout_ms = 0;             // webhook: the whole attempt; command: its timeout_ms
  CommandSpec command;                // command channel: argv and timeout_ms
};

struct DeliveryOutcome {
  enum class Kind {
    kDelivered,  // a 2xx answer; the command exited 0
    kRetry,      // worth another attempt: no answer, a timeout, 5xx/408/429, a non-zero exit
    kFailed,     // will not get better: a 4xx, a redirect (never followed), a URL libcurl reads
                 // otherwise than docpipe did
    kAborted,    // the notifier is stopping: the attempt does not count
  };
  Kind kind = Kind::kRetry;
  int http_status = 0;
  std::string error = "";  // what went wrong, the receiver's answer cut to a few hundred bytes
  CommandFailure failure = CommandFailure::kCannotStart;  // kRetry: what the breaker hears
  // The answer's Retry-After as sent (bounded: daemon/retry_after.h); honoured on a 429 or 503.
  std::optional<std::string> retry_after = std::nullopt;
};

// Delivers one attempt; blocking. Returns kAborted soon after `stop` becomes true.
class NotifyTransport {
 public:
  virtual ~NotifyTransport() = default;
  virtual DeliveryOutcome deliver(const NotifyAttempt& attempt, const std::atomic<bool>& stop) = 0;
};

// What the notifier takes from the daemon config (start and reload).
struct NotifierSettings {
  NotifyConfig notify;
  std::vector<std::string> allowed_webhook_hosts;
  std::map<std::string, CommandSpec> commands;
};
NotifierSettings notifier_settings(const DaemonConfig& config);

class Notifier {
 public:
  struct Deps {
    std::string spool_root;
    bool durable = true;
    const Clock& clock;
    NotifyTransport& webhook;
    NotifyTransport& command;
    CommandBreakers* command_breakers = nullptr;         // the exec commands' breakers; null: none
    prometheus::Registry* registry = nullptr;            // null: no metrics (unit tests)
    std::optional<uint64_t> jitter_seed = std::nullopt;  // unset: random
    // Rewrites the finished reports (daemon/finished_reports.h); null: one of the notifier's own.
    FinishedReports* reports = nullptr;
  };

  Notifier(Deps deps, NotifierSettings settings);
  ~Notifier();  // stop()
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Reload: new hosts, commands, retry settings and breaker settings; state is kept. A URL whose
  // host is no longer allowed, or a command no longer listed, fails at its next attempt.
  void configure(NotifierSettings settings);

  // Delivery threads; 0: none (tests call run_due()).
  void start(int threads);
  // Ends the threads; an attempt in flight is cut short and not counted, and its record stays for
  // the next start. Idempotent.
  void stop();

  // At start (blocking): the records an earlier run left, except those of jobs still in active/
  // (their finish writes the record again). Removes leftover temp files of the folder.
  void resume_pending();

  // A job's finish wrote this record (any thread). A record of the same id replaces the old one.
  // A record with no channel pending (it could not be written: daemon/job_table_finish.cc) is
  // only counted, each channel as failed.
  void add(NotifyRecord record);

  // Tests: runs every attempt due now on this thread, until none is; returns how many ran.
  size_t run_due();

  size_t pending() const;                             // channels not yet delivered or failed
  std::optional<Clock::time_point> next_due() const;  // earliest due attempt (tests)
  const CommandBreakers& host_breakers() const { return host_breakers_; }
  // `docpipe status`: {"pending": N, "webhook_hosts": {HOST: breaker...}}.
  nlohmann::json status() const;

 private:
  struct Entry {
    NotifyRecord record;
    std::string webhook_body;            // webhook_body(record), built once
    std::vector<Clock::time_point> due;  // per channel
    std::vector<bool> busy;              // per channel: an attempt runs
    std::mutex io_mu;                    // one writer of this record's files at a time
  };
  struct Task {
    std::shared_ptr<Entry> entry;
    size_t channel = 0;
  };

  std::optional<Task> pick_locked(Clock::time_point now, Clock::time_point& earliest);
  // A webhook's host key by the current settings; nullopt: not allowed (any more).
  std::optional<std::string> host_key_locked(const NotifyChannelState& c) const;
  void run(const Task& task);
  void persist(const std::shared_ptr<Entry>& entry);
  Clock::duration backoff_locked(int attempts);
  // The delay after a failed attempt: the backoff, or longer when a 429 or 503 answer's
  // Retry-After asks (capped at retry_max_ms). `note` says what was made of Retry-After.
  Clock::duration retry_delay_locked(int attempts, const DeliveryOutcome& outcome,
                                     std::string& note);
  void worker();
  void update_pending_locked();
  void on_host_transition(const BreakerTransition& t);
  void configure_host_gauges_locked();
  void count(NotifyChannel channel, const char* outcome);

  Deps deps_;
  std::unique_ptr<FinishedReports> own_reports_;  // when deps_.reports was null
  mutable std::mutex mu_;
  std::condition_variable cv_;
  NotifierSettings settings_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;  // by job id
  std::mt19937_64 rng_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  CommandBreakers host_breakers_;
  uint64_t host_subscription_ = 0;
  uint64_t command_subscription_ = 0;

  // Metrics (null without a registry).
  prometheus::Family<prometheus::Counter>* total_ = nullptr;
  prometheus::Gauge* pending_gauge_ = nullptr;
  prometheus::Family<prometheus::Gauge>* host_state_ = nullptr;
  std::mutex gauges_mu_;
  std::map<std::string, prometheus::Gauge*> host_gauges_;
};

}  // namespace docpipe
