#include "daemon/command_breaker_monitor.h"

#include <nlohmann/json.hpp>

#include "core/time_util.h"
#include "daemon/log.h"

namespace docpipe {

nlohmann::json breakers_status(const CommandBreakers& breakers) {
  nlohmann::json out = nlohmann::json::object();
  for (const BreakerSnapshot& s : breakers.snapshot()) {
    nlohmann::json c{{"state", breaker_state_name(s.state)},
                     {"failures", s.config.failures},
                     {"consecutive_failures", s.consecutive_failures},
                     {"failed_probes", s.failed_probes},
                     {"transitions", s.transitions}};
    if (s.state != BreakerState::kClosed) {
      c["opened_at"] = format_utc(s.opened_at_ms);
      c["open_ms"] = s.open_ms;
      c["probe_running"] = s.probe_running;
    }
    if (s.state == BreakerState::kOpen) c["next_probe_at"] = format_utc(s.next_probe_ms);
    if (!s.last_failure.empty()) c["last_failure"] = s.last_failure;
    out[s.command] = std::move(c);
  }
  return out;
}

CommandBreakerMonitor::CommandBreakerMonitor(CommandBreakers& breakers,
                                             prometheus::Registry& registry)
    : breakers_(breakers),
      state_(prometheus::BuildGauge()
                 .Name("docpipe_command_breaker_state")
                 .Help("State of a command's circuit breaker: 0 closed, 1 open, 2 half-open")
                 .Register(registry)),
      transitions_(prometheus::BuildCounter()
                       .Name("docpipe_command_breaker_transitions_total")
                       .Help("State changes of a command's circuit breaker, by the state entered")
                       .Register(registry)) {
  subscription_ = breakers_.subscribe([this](const BreakerTransition& t) { on_transition(t); });
}

CommandBreakerMonitor::~CommandBreakerMonitor() { breakers_.unsubscribe(subscription_); }

void CommandBreakerMonitor::configure(const std::map<std::string, CommandSpec>& commands) {
  std::map<std::string, BreakerConfig> configs;
  for (const auto& [name, spec] : commands) configs.emplace(name, spec.breaker);
  breakers_.configure(configs);
  std::lock_guard lock(mu_);
  for (auto it = gauges_.begin(); it != gauges_.end();) {
    if (configs.count(it->first) == 0) {
      state_.Remove(it->second);
      for (BreakerState to :
           {BreakerState::kClosed, BreakerState::kOpen, BreakerState::kHalfOpen}) {
        transitions_.Remove(
            &transitions_.Add({{"command", it->first}, {"to", breaker_state_name(to)}}));
      }
      it = gauges_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [name, config] : configs) set_state_locked(name);
}

// Observers hear of changes in no guaranteed order across threads: the gauge is set from the
// state now, not from the change reported.
void CommandBreakerMonitor::set_state_locked(const std::string& command) {
  std::optional<BreakerSnapshot> s = breakers_.snapshot(command);
  if (!s) return;
  prometheus::Gauge*& g = gauges_[command];
  if (g == nullptr) g = &state_.Add({{"command", command}});
  g->Set(static_cast<double>(static_cast<int>(s->state)));
}

void CommandBreakerMonitor::on_transition(const BreakerTransition& t) {
  if (t.from == t.to) return;  // an abandoned probe: no change to show
  {
    std::lock_guard lock(mu_);
    if (gauges_.count(t.command) == 0) return;  // dropped by a reload meanwhile
    transitions_.Add({{"command", t.command}, {"to", breaker_state_name(t.to)}}).Increment();
    set_state_locked(t.command);
  }
  switch (t.to) {
    case BreakerState::kOpen:
      log_warn(t.from == BreakerState::kHalfOpen
                   ? "command breaker: the probe failed; open again, for twice as long (capped)"
                   : "command breaker: open; documents that need the command wait",
               {{"command", t.command},
                {"consecutive_failures", std::to_string(t.consecutive_failures)},
                {"open_ms", std::to_string(t.open_ms)},
                {"failure", t.detail}});
      break;
    case BreakerState::kHalfOpen:
      log_info("command breaker: half-open; one document probes the command",
               {{"command", t.command}});
      break;
    case BreakerState::kClosed:
      log_info(t.from == BreakerState::kHalfOpen && t.detail.empty()
                   ? "command breaker: the probe succeeded; closed, documents run again"
               : t.detail == kBreakerRemovedByReload
                   ? "command breaker: its command was removed by a reload; documents waiting "
                     "on it go"
                   : "command breaker: turned off by a reload; closed",
               {{"command", t.command}});
      break;
  }
}

}  // namespace docpipe
