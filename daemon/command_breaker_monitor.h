#pragma once
// What the daemon shows of the commands' circuit breakers (core/command_breaker.h): a log line
// at each state change, and the metrics
//
//   docpipe_command_breaker_state{command}              0 closed, 1 open, 2 half-open
//   docpipe_command_breaker_transitions_total{command,to}  state changes, by the state entered
//
// Every configured command has its state series from the start (0), so that an alert or a panel
// sees a command before its first failure; a command dropped by a reload loses its series.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "core/command_breaker.h"
#include "core/transform.h"

namespace docpipe {

// The "commands" object of `docpipe status`: per command name, its breaker's state,
// consecutive_failures, failures (the threshold; 0: off), opened_at and next_probe_at (UTC, while
// open or half-open), open_ms (the current open period), failed_probes, probe_running,
// last_failure and transitions.
nlohmann::json breakers_status(const CommandBreakers& breakers);

class CommandBreakerMonitor {
 public:
  // Subscribes to `breakers`, which must outlive this object.
  CommandBreakerMonitor(CommandBreakers& breakers, prometheus::Registry& registry);
  ~CommandBreakerMonitor();
  CommandBreakerMonitor(const CommandBreakerMonitor&) = delete;
  CommandBreakerMonitor& operator=(const CommandBreakerMonitor&) = delete;

  // Configures the breakers from the daemon config's commands (start and reload), and the
  // metrics series with them.
  void configure(const std::map<std::string, CommandSpec>& commands);

 private:
  void on_transition(const BreakerTransition& t);
  void set_state_locked(const std::string& command);

  CommandBreakers& breakers_;
  prometheus::Family<prometheus::Gauge>& state_;
  prometheus::Family<prometheus::Counter>& transitions_;
  std::mutex mu_;  // the series below; taken from pipeline threads and the loop
  std::map<std::string, prometheus::Gauge*> gauges_;
  uint64_t subscription_ = 0;
};

}  // namespace docpipe
