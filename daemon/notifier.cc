#include "daemon/notifier.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/fs_util.h"
#include "core/spool.h"
#include "daemon/command_breaker_monitor.h"
#include "daemon/log.h"
#include "daemon/retry_after.h"

namespace docpipe {

using std::chrono::milliseconds;

namespace {

// While a half-open probe of the host runs, others look again this often at the latest (a
// change of state wakes them at once).
constexpr milliseconds kProbeWait{1000};

std::string ends_with_json_stem(const std::string& name) {
  constexpr std::string_view kExt = ".json";
  if (name.size() <= kExt.size() || name.compare(name.size() - kExt.size(), kExt.size(), kExt) != 0)
    return "";
  return name.substr(0, name.size() - kExt.size());
}

}  // namespace

NotifierSettings notifier_settings(const DaemonConfig& config) {
  return {.notify = config.notify,
          .allowed_webhook_hosts = config.allowed_webhook_hosts,
          .commands = config.commands};
}

Notifier::Notifier(Deps deps, NotifierSettings settings)
    : deps_(std::move(deps)),
      settings_(std::move(settings)),
      rng_(deps_.jitter_seed ? *deps_.jitter_seed : std::random_device{}()),
      host_breakers_(deps_.clock) {
  if (deps_.reports == nullptr) {
    own_reports_ = std::make_unique<FinishedReports>(deps_.spool_root, deps_.durable);
    deps_.reports = own_reports_.get();
  }
  if (deps_.registry != nullptr) {
    total_ = &prometheus::BuildCounter()
                  .Name("docpipe_notifications_total")
                  .Help(
                      "Completion notification attempts by channel and outcome: delivered, "
                      "failed (for good) or retried")
                  .Register(*deps_.registry);
    for (const char* channel : {"webhook", "command"}) {
      for (const char* outcome : {"delivered", "failed", "retried"}) {
        total_->Add({{"channel", channel}, {"outcome", outcome}});
      }
    }
    pending_gauge_ = &prometheus::BuildGauge()
                          .Name("docpipe_notifications_pending")
                          .Help(
                              "Completion notifications (one per channel) not yet delivered "
                              "or failed")
                          .Register(*deps_.registry)
                          .Add({});
    host_state_ = &prometheus::BuildGauge()
                       .Name("docpipe_webhook_breaker_state")
                       .Help(
                           "State of a webhook host's circuit breaker: 0 closed, 1 open, "
                           "2 half-open")
                       .Register(*deps_.registry);
  }
  host_subscription_ =
      host_breakers_.subscribe([this](const BreakerTransition& t) { on_host_transition(t); });
  if (deps_.command_breakers != nullptr) {
    // A command's breaker closing lets its waiting notifications go.
    command_subscription_ = deps_.command_breakers->subscribe([this](const BreakerTransition&) {
      { std::lock_guard lock(mu_); }
      cv_.notify_all();
    });
  }
  configure(settings_);
}

Notifier::~Notifier() {
  stop();
  host_breakers_.unsubscribe(host_subscription_);
  if (deps_.command_breakers != nullptr) deps_.command_breakers->unsubscribe(command_subscription_);
}

void Notifier::configure(NotifierSettings settings) {
  std::map<std::string, BreakerConfig> hosts;
  for (const std::string& entry : settings.allowed_webhook_hosts) {
    std::string problem;
    if (auto a = parse_allowed_host(entry, problem))
      hosts.emplace(a->key(), settings.notify.breaker);
  }
  {
    std::lock_guard lock(mu_);
    settings_ = std::move(settings);
  }
  host_breakers_.configure(hosts);  // outside mu_: it tells observers, which take mu_
  {
    std::lock_guard lock(gauges_mu_);
    configure_host_gauges_locked();
  }
  cv_.notify_all();
}

void Notifier::configure_host_gauges_locked() {
  if (host_state_ == nullptr) return;
  std::map<std::string, prometheus::Gauge*> next;
  for (const BreakerSnapshot& s : host_breakers_.snapshot()) {
    auto it = host_gauges_.find(s.command);
    prometheus::Gauge* g =
        it != host_gauges_.end() ? it->second : &host_state_->Add({{"host", s.command}});
    g->Set(static_cast<double>(static_cast<int>(s.state)));
    next.emplace(s.command, g);
    if (it != host_gauges_.end()) host_gauges_.erase(it);
  }
  for (auto& [host, gauge] : host_gauges_) host_state_->Remove(gauge);  // dropped by a reload
  host_gauges_ = std::move(next);
}

void Notifier::on_host_transition(const BreakerTransition& t) {
  {
    std::lock_guard lock(gauges_mu_);
    auto it = host_gauges_.find(t.command);
    if (it != host_gauges_.end()) {
      if (auto s = host_breakers_.snapshot(t.command)) {
        it->second->Set(static_cast<double>(static_cast<int>(s->state)));
      }
    }
  }
  if (t.from != t.to) {
    switch (t.to) {
      case BreakerState::kOpen:
        log_warn(t.from == BreakerState::kHalfOpen
                     ? "webhook breaker: the probe failed; open again, for twice as long (capped)"
                     : "webhook breaker: open; notifications to the host wait",
                 {{"host", t.command},
                  {"consecutive_failures", std::to_string(t.consecutive_failures)},
                  {"open_ms", std::to_string(t.open_ms)},
                  {"failure", t.detail}});
        break;
      case BreakerState::kHalfOpen:
        log_info("webhook breaker: half-open; one notification probes the host",
                 {{"host", t.command}});
        break;
      case BreakerState::kClosed:
        log_info("webhook breaker: closed; notifications to the host go again",
                 {{"host", t.command}});
        break;
    }
  }
  { std::lock_guard lock(mu_); }  // a worker between its check and its wait still hears this
  cv_.notify_all();
}

void Notifier::start(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { worker(); });
}

void Notifier::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void Notifier::worker() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    const Clock::time_point now = deps_.clock.now();
    Clock::time_point earliest = Clock::time_point::max();
    std::optional<Task> task = pick_locked(now, earliest);
    if (!task) {
      // Woken by add(), configure(), a breaker's change and stop(); the hour bounds the wait.
      deps_.clock.wait_until(cv_, lock, std::min(earliest, now + std::chrono::hours(1)));
      continue;
    }
    lock.unlock();
    run(*task);
    lock.lock();
  }
}

size_t Notifier::run_due() {
  size_t ran = 0;
  for (;;) {
    std::optional<Task> task;
    {
      std::lock_guard lock(mu_);
      if (stop_) return ran;
      Clock::time_point earliest = Clock::time_point::max();
      task = pick_locked(deps_.clock.now(), earliest);
    }
    if (!task) return ran;
    run(*task);
    ++ran;
  }
}

std::optional<std::string> Notifier::host_key_locked(const NotifyChannelState& c) const {
  std::string problem;
  std::optional<WebhookUrl> url = parse_webhook_url(c.target, problem);
  if (!url) return std::nullopt;
  return allowed_host_for(*url, settings_.allowed_webhook_hosts);
}

std::optional<Notifier::Task> Notifier::pick_locked(Clock::time_point now,
                                                    Clock::time_point& earliest) {
  for (auto& [id, entry] : entries_) {
    for (size_t i = 0; i < entry->record.channels.size(); ++i) {
      const NotifyChannelState& c = entry->record.channels[i];
      if (c.state != DeliveryState::kPending || entry->busy[i]) continue;
      if (entry->due[i] > now) {
        earliest = std::min(earliest, entry->due[i]);
        continue;
      }
      // Waiting on an open breaker is not an attempt: nothing is charged.
      std::optional<Clock::time_point> blocked;
      if (c.channel == NotifyChannel::kWebhook) {
        if (std::optional<std::string> host = host_key_locked(c)) {
          blocked = host_breakers_.blocked_until(*host);
        }
      } else if (deps_.command_breakers != nullptr) {
        blocked = deps_.command_breakers->blocked_until(c.target);
      }
      if (blocked) {
        earliest =
            std::min(earliest, *blocked == Clock::time_point::max() ? now + kProbeWait : *blocked);
        continue;
      }
      entry->busy[i] = true;
      return Task{entry, i};
    }
  }
  return std::nullopt;
}

Clock::duration Notifier::backoff_locked(int attempts) {
  const int64_t base = settings_.notify.retry_base_ms;
  const int64_t max = settings_.notify.retry_max_ms;
  int64_t nominal = base;
  for (int i = 1; i < attempts && nominal < max; ++i) nominal *= 2;
  nominal = std::min(nominal, max);
  const double unit = std::generate_canonical<double, 53>(rng_);
  const auto jittered = static_cast<int64_t>(static_cast<double>(nominal) * (0.5 + unit));
  return milliseconds(std::clamp<int64_t>(jittered, 1, max));
}

Clock::duration Notifier::retry_delay_locked(int attempts, const DeliveryOutcome& outcome,
                                             std::string& note) {
  const Clock::duration backoff = backoff_locked(attempts);
  if (!outcome.retry_after || (outcome.http_status != 429 && outcome.http_status != 503)) {
    return backoff;
  }
  // The receiver's words, printable only (it chose them), for the report and the log.
  std::string said;
  for (char ch : *outcome.retry_after) {
    const auto u = static_cast<unsigned char>(ch);
    said += (u >= 0x20 && u < 0x7f) ? ch : '?';
  }
  std::optional<int64_t> asked = parse_retry_after(*outcome.retry_after, deps_.clock.wall_ms());
  if (!asked) {
    note = "Retry-After \"" + said + "\" ignored (neither delta-seconds nor an HTTP-date)";
    return backoff;
  }
  const int64_t max = settings_.notify.retry_max_ms;
  const int64_t wait = std::min(*asked, max);
  note = "Retry-After \"" + said + "\": waits at least " + std::to_string(wait) + " ms" +
         (*asked > max ? " (capped at retry_max_ms)" : "");
  return std::max<Clock::duration>(backoff, milliseconds(wait));
}

void Notifier::run(const Task& task) {
  Entry& e = *task.entry;
  NotifyAttempt attempt;
  CommandBreakers* breakers = nullptr;
  std::string breaker_key;
  std::optional<DeliveryOutcome> refused;  // decided without an attempt at the receiver
  {
    std::lock_guard lock(mu_);
    const NotifyChannelState& c = e.record.channels[task.channel];
    attempt.job_id = e.record.id;
    attempt.channel = c.channel;
    attempt.target = c.target;
    // Never changed while the record lives.
    attempt.body = c.channel == NotifyChannel::kWebhook ? &e.webhook_body : &e.record.body;
    attempt.attempt = c.attempts + 1;
    attempt.timeout_ms = settings_.notify.timeout_ms;
    if (c.channel == NotifyChannel::kWebhook) {
      std::optional<std::string> host = host_key_locked(c);
      if (!host) {
        refused = DeliveryOutcome{.kind = DeliveryOutcome::Kind::kFailed,
                                  .error =
                                      "the URL's host is not (any more) in the daemon "
                                      "config's allowed_webhook_hosts"};
      } else {
        attempt.host = *host;
        breakers = &host_breakers_;
        breaker_key = *host;
      }
    } else {
      auto it = settings_.commands.find(c.target);
      if (it == settings_.commands.end() || it->second.mode == CommandMode::kPool) {
        refused = DeliveryOutcome{.kind = DeliveryOutcome::Kind::kFailed,
                                  .error = "command \"" + c.target +
                                           "\" is not (any more) a process command of the "
                                           "daemon config's commands"};
      } else {
        attempt.command = it->second;
        attempt.timeout_ms = it->second.timeout_ms;
        breakers = deps_.command_breakers;
        breaker_key = c.target;
      }
    }
  }

  CommandRun run;
  if (!refused && breakers != nullptr) {
    CommandAdmission admission = breakers->admit(breaker_key);
    if (!admission.admitted) {
      // Raced with the breaker opening: wait like the others, uncharged.
      std::lock_guard lock(mu_);
      e.busy[task.channel] = false;
      e.due[task.channel] = admission.retry_at == Clock::time_point::max()
                                ? deps_.clock.now() + kProbeWait
                                : admission.retry_at;
      return;
    }
    run = std::move(admission.run);
  }

  DeliveryOutcome outcome;
  if (refused) {
    outcome = *refused;
  } else {
    NotifyTransport& transport =
        attempt.channel == NotifyChannel::kWebhook ? deps_.webhook : deps_.command;
    outcome = transport.deliver(attempt, stop_);
  }

  using Kind = DeliveryOutcome::Kind;
  switch (outcome.kind) {
    case Kind::kDelivered:
    case Kind::kFailed:  // the receiver answered (or nothing was sent): not the host's outage
      run.succeeded();
      break;
    case Kind::kRetry:
      run.failed(outcome.failure, outcome.error);
      break;
    case Kind::kAborted:
      run.abandon();
      break;
  }

  const char* counted = nullptr;
  LogFields fields{{"job", attempt.job_id},
                   {"channel", notify_channel_name(attempt.channel)},
                   {"attempt", std::to_string(attempt.attempt)}};
  if (attempt.channel == NotifyChannel::kWebhook) {
    // The host only: a webhook's path often holds its secret.
    if (!attempt.host.empty()) fields.emplace_back("host", attempt.host);
  } else {
    fields.emplace_back("command", attempt.target);
  }
  if (outcome.http_status != 0)
    fields.emplace_back("http_status", std::to_string(outcome.http_status));
  {
    std::lock_guard lock(mu_);
    e.busy[task.channel] = false;
    NotifyChannelState& c = e.record.channels[task.channel];
    if (outcome.kind == Kind::kAborted) {
      // Stopping: the record stays as it was, for the next start. (Not stopping, a transport
      // that gives up this way is asked again a little later, never in a tight loop.)
      e.due[task.channel] = deps_.clock.now() + kProbeWait;
      cv_.notify_all();
      return;
    }
    c.attempts = attempt.attempt;
    c.last_attempt_ms = deps_.clock.wall_ms();
    if (outcome.http_status != 0) c.http_status = outcome.http_status;
    c.next_attempt_ms = 0;
    if (outcome.kind == Kind::kDelivered) {
      c.state = DeliveryState::kDelivered;
      counted = "delivered";
    } else {
      c.last_error = outcome.error;
      fields.emplace_back("error", outcome.error);
      if (outcome.kind == Kind::kRetry && c.attempts < settings_.notify.max_attempts) {
        std::string note;
        const Clock::duration delay = retry_delay_locked(c.attempts, outcome, note);
        if (!note.empty()) {
          c.last_error += "; " + note;
          fields.back().second = c.last_error;  // the "error" field just added
        }
        e.due[task.channel] = deps_.clock.now() + delay;
        c.next_attempt_ms =
            c.last_attempt_ms + std::chrono::duration_cast<milliseconds>(delay).count();
        fields.emplace_back(
            "retry_in_ms", std::to_string(std::chrono::duration_cast<milliseconds>(delay).count()));
        counted = "retried";
      } else {
        c.state = DeliveryState::kFailed;
        counted = "failed";
      }
    }
    update_pending_locked();
  }
  count(attempt.channel, counted);
  if (std::string_view(counted) == "delivered") {
    log_info("notification delivered", fields);
  } else if (std::string_view(counted) == "retried") {
    log_warn("notification attempt failed; retrying", fields);
  } else {
    log_error("notification failed", fields);
  }
  persist(task.entry);
}

void Notifier::persist(const std::shared_ptr<Entry>& entry) {
  std::lock_guard io(entry->io_mu);
  NotifyRecord snapshot;
  {
    std::lock_guard lock(mu_);
    snapshot = entry->record;
  }
  // The record first: what the report says never runs ahead of what a restart resumes from. At
  // the end, the record is written in its final state, then the report, and only then removed:
  // retention keeps the job while the record exists, so it never prunes a report about to be
  // rewritten; a crash in between finishes the report at the next start (resume_pending).
  const std::string record_path = notify_record_path(deps_.spool_root, snapshot.id);
  Status st = snapshot.pending()
                  ? store_notify_record(deps_.spool_root, snapshot, deps_.durable)
                  : write_file_atomic(record_path, notify_record_to_json(snapshot), deps_.durable);
  if (!st) {
    log_warn("cannot update the notification record",
             {{"job", snapshot.id}, {"error", st.error().message}});
  }
  bool report_written = true;
  // The report is rewritten only while its job is there (a job removed by hand stays removed),
  // from what it says now (a retry may have linked itself since the job finished).
  Status written = deps_.reports->update(
      snapshot.id,
      [&](nlohmann::ordered_json& report) {
        set_notify_section(report, snapshot);
        return true;
      },
      snapshot.body);
  if (!written && written.error().code != ErrorCode::kNotFound) {
    report_written = false;
    log_warn("cannot update the report's notify section",
             {{"job", snapshot.id}, {"error", written.error().message}});
  }
  if (!snapshot.pending() && report_written) {
    st = store_notify_record(deps_.spool_root, snapshot, deps_.durable);  // removes it
    if (!st) {
      log_warn("cannot remove the notification record",
               {{"job", snapshot.id}, {"error", st.error().message}});
    }
  }
  if (!snapshot.pending()) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(snapshot.id);
    if (it != entries_.end() && it->second == entry && !entry->record.pending()) entries_.erase(it);
  }
}

void Notifier::update_pending_locked() {
  if (pending_gauge_ == nullptr) return;
  size_t n = 0;
  for (const auto& [id, e] : entries_) {
    for (const NotifyChannelState& c : e->record.channels) n += c.state == DeliveryState::kPending;
  }
  pending_gauge_->Set(static_cast<double>(n));
}

void Notifier::count(NotifyChannel channel, const char* outcome) {
  if (total_ == nullptr || outcome == nullptr) return;
  total_->Add({{"channel", notify_channel_name(channel)}, {"outcome", outcome}}).Increment();
}

void Notifier::add(NotifyRecord record) {
  if (!record.pending()) {
    for (const NotifyChannelState& c : record.channels) {
      count(c.channel, c.state == DeliveryState::kDelivered ? "delivered" : "failed");
    }
    return;
  }
  auto entry = std::make_shared<Entry>();
  entry->webhook_body = webhook_body(record);
  const Clock::time_point now = deps_.clock.now();
  const int64_t wall = deps_.clock.wall_ms();
  for (const NotifyChannelState& c : record.channels) {
    // A resumed record keeps its backoff: due when it was due, or now if that has passed.
    const int64_t wait_ms = c.next_attempt_ms > wall ? c.next_attempt_ms - wall : 0;
    entry->due.push_back(now + milliseconds(wait_ms));
    entry->busy.push_back(false);
  }
  entry->record = std::move(record);
  {
    std::lock_guard lock(mu_);
    const std::string id = entry->record.id;
    entries_[id] = std::move(entry);
    update_pending_locked();
  }
  cv_.notify_all();
}

void Notifier::resume_pending() {
  const std::string dir = notify_folder(deps_.spool_root);
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;  // none yet
  std::vector<std::string> names;
  while (struct dirent* ent = ::readdir(d)) names.emplace_back(ent->d_name);
  ::closedir(d);
  const Spool spool(deps_.spool_root, deps_.durable);
  size_t resumed = 0;
  for (const std::string& name : names) {
    if (name == "." || name == "..") continue;
    const std::string path = dir + "/" + name;
    if (name[0] == '.') {
      ::unlink(path.c_str());  // a temp file a crash left
      continue;
    }
    const std::string id = ends_with_json_stem(name);
    if (id.empty()) continue;                         // set aside earlier (.corrupt)
    if (path_exists(spool.active_job(id))) continue;  // its finish writes the record again
    Result<std::string> text = read_file(path);
    Result<NotifyRecord> record =
        text ? parse_notify_record(*text) : Result<NotifyRecord>(text.error());
    if (record && record->id != id) {
      record = make_error(ErrorCode::kCorruptInput,
                          "notification record of job \"" + record->id + "\" under another name");
    }
    if (!record) {
      const std::string aside = path + ".corrupt";
      ::rename(path.c_str(), aside.c_str());
      log_error("cannot resume a notification; its record is set aside",
                {{"file", path}, {"error", record.error().message}, {"moved_to", aside}});
      continue;
    }
    if (!record->pending()) {
      // Every channel had ended; the crash came before the record was removed.
      auto entry = std::make_shared<Entry>();
      entry->record = std::move(*record);
      persist(entry);
      continue;
    }
    ++resumed;
    add(std::move(*record));
  }
  if (resumed > 0) log_info("notifications resumed", {{"records", std::to_string(resumed)}});
}

size_t Notifier::pending() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [id, e] : entries_) {
    for (const NotifyChannelState& c : e->record.channels) n += c.state == DeliveryState::kPending;
  }
  return n;
}

std::optional<Clock::time_point> Notifier::next_due() const {
  std::lock_guard lock(mu_);
  std::optional<Clock::time_point> out;
  for (const auto& [id, e] : entries_) {
    for (size_t i = 0; i < e->due.size(); ++i) {
      if (e->record.channels[i].state != DeliveryState::kPending) continue;
      if (!out || e->due[i] < *out) out = e->due[i];
    }
  }
  return out;
}

nlohmann::json Notifier::status() const {
  return {{"pending", pending()}, {"webhook_hosts", breakers_status(host_breakers_)}};
}

}  // namespace docpipe
