#include "core/command_breaker.h"

#include <algorithm>
#include <utility>

namespace docpipe {

using std::chrono::milliseconds;

namespace {

BreakerTransition transition(const std::string& command, BreakerState from, BreakerState to,
                             int consecutive, int64_t open_ms = 0, std::string detail = "") {
  BreakerTransition t;
  t.command = command;
  t.from = from;
  t.to = to;
  t.consecutive_failures = consecutive;
  t.open_ms = open_ms;
  t.detail = std::move(detail);
  return t;
}

}  // namespace

const char* breaker_state_name(BreakerState s) {
  switch (s) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half-open";
  }
  return "unknown";
}

const char* command_failure_name(CommandFailure f) {
  switch (f) {
    case CommandFailure::kCrashed:
      return "crashed";
    case CommandFailure::kExited:
      return "exited non-zero";
    case CommandFailure::kTimedOut:
      return "timed out";
    case CommandFailure::kCannotStart:
      return "could not start";
    case CommandFailure::kErrorAnswer:
      return "answered with an error";
  }
  return "unknown";
}

// ---- CommandRun ---------------------------------------------------------------------------------

CommandRun& CommandRun::operator=(CommandRun&& other) noexcept {
  if (this == &other) return *this;
  abandon();
  owner_ = std::exchange(other.owner_, nullptr);
  command_ = std::move(other.command_);
  epoch_ = other.epoch_;
  probe_ = other.probe_;
  return *this;
}

void CommandRun::succeeded() {
  if (owner_ == nullptr) return;
  owner_->report(*this, std::nullopt, "", false);
  owner_ = nullptr;
}

void CommandRun::failed(CommandFailure why, const std::string& detail) {
  if (owner_ == nullptr) return;
  owner_->report(*this, why, detail, false);
  owner_ = nullptr;
}

void CommandRun::abandon() {
  if (owner_ == nullptr) return;
  owner_->report(*this, std::nullopt, "", true);
  owner_ = nullptr;
}

// ---- CommandBreakers ----------------------------------------------------------------------------

void CommandBreakers::configure(const std::map<std::string, BreakerConfig>& commands) {
  std::vector<BreakerTransition> changes;
  {
    std::lock_guard lock(mu_);
    for (auto it = breakers_.begin(); it != breakers_.end();) {
      if (commands.count(it->first) == 0) {
        // Documents may be waiting on it (held while its probe runs, whose outcome would now be
        // reported into nothing): closing it is a change, which lets them go.
        if (it->second.state != BreakerState::kClosed) {
          changes.push_back(transition(it->first, it->second.state, BreakerState::kClosed,
                                       it->second.consecutive, 0, kBreakerRemovedByReload));
          --not_closed_;
        }
        it = breakers_.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto& [name, config] : commands) {
      auto [at, added] = breakers_.try_emplace(name);
      Breaker& b = at->second;
      if (added) b.epoch = ++last_epoch_;
      b.config = config;
      if (config.failures == 0 && b.state != BreakerState::kClosed) {
        changes.push_back(transition(name, b.state, BreakerState::kClosed, b.consecutive));
        b.state = BreakerState::kClosed;
        --not_closed_;
        b.probe_running = false;
        b.opened_at_ms = 0;
        ++b.transitions;
      }
      if (config.failures == 0) {
        b.epoch = ++last_epoch_;
        b.consecutive = 0;
        b.failed_probes = 0;
      }
    }
  }
  announce(changes);
}

CommandAdmission CommandBreakers::admit(const std::string& command) {
  CommandAdmission a;
  std::vector<BreakerTransition> changes;
  {
    std::lock_guard lock(mu_);
    auto it = breakers_.find(command);
    if (it == breakers_.end() || it->second.config.failures == 0) {
      a.admitted = true;  // not watched
      return a;
    }
    Breaker& b = it->second;
    const Clock::time_point now = clock_.now();
    if (b.state == BreakerState::kOpen && now >= b.open_until) {
      changes.push_back(
          transition(command, BreakerState::kOpen, BreakerState::kHalfOpen, b.consecutive));
      b.state = BreakerState::kHalfOpen;
      b.probe_running = false;
      ++b.transitions;
    }
    auto why = [&b] {
      return std::to_string(b.consecutive) + " consecutive failures (last: " + b.last_failure + ")";
    };
    switch (b.state) {
      case BreakerState::kClosed:
        a.admitted = true;
        break;
      case BreakerState::kOpen:
        a.retry_at = b.open_until;
        a.reason = "its circuit breaker is open after " + why();
        break;
      case BreakerState::kHalfOpen:
        if (b.probe_running) {
          a.retry_at = Clock::time_point::max();
          a.reason = "its circuit breaker is half-open after " + why() + " and a probe is running";
        } else {
          a.admitted = true;
          a.run.probe_ = true;
          b.probe_running = true;
        }
        break;
    }
    if (a.admitted) {
      a.run.owner_ = this;
      a.run.command_ = command;
      a.run.epoch_ = b.epoch;
    }
  }
  announce(changes);
  return a;
}

std::optional<Clock::time_point> CommandBreakers::blocked_until(const std::string& command) const {
  if (not_closed_.load(std::memory_order_acquire) == 0) return std::nullopt;
  std::lock_guard lock(mu_);
  auto it = breakers_.find(command);
  if (it == breakers_.end() || it->second.config.failures == 0) return std::nullopt;
  const Breaker& b = it->second;
  switch (b.state) {
    case BreakerState::kClosed:
      return std::nullopt;
    case BreakerState::kOpen:
      if (clock_.now() >= b.open_until) return std::nullopt;  // a probe is due
      return b.open_until;
    case BreakerState::kHalfOpen:
      if (!b.probe_running) return std::nullopt;  // the last probe was abandoned: another may go
      return Clock::time_point::max();
  }
  return std::nullopt;
}

void CommandBreakers::open_locked(const std::string& command, Breaker& b, Clock::duration period,
                                  const std::string& detail,
                                  std::vector<BreakerTransition>& changes) {
  const BreakerState from = b.state;
  if (from == BreakerState::kClosed) ++not_closed_;
  b.state = BreakerState::kOpen;
  b.probe_running = false;
  b.open_period = period;
  b.open_until = clock_.now() + period;
  if (from == BreakerState::kClosed) b.opened_at_ms = clock_.wall_ms();
  b.epoch = ++last_epoch_;
  ++b.transitions;
  changes.push_back(transition(command, from, BreakerState::kOpen, b.consecutive,
                               std::chrono::duration_cast<milliseconds>(period).count(), detail));
}

void CommandBreakers::report(const CommandRun& run, std::optional<CommandFailure> failure,
                             const std::string& detail, bool abandoned) {
  std::vector<BreakerTransition> changes;
  {
    std::lock_guard lock(mu_);
    auto it = breakers_.find(run.command_);
    if (it == breakers_.end()) return;
    Breaker& b = it->second;
    // Reported into a state that moved on (the breaker opened, or was turned off, since the run
    // was admitted): no verdict on the state now.
    if (run.epoch_ != b.epoch || b.config.failures == 0) return;
    if (abandoned) {
      if (run.probe_ && b.state == BreakerState::kHalfOpen && b.probe_running) {
        b.probe_running = false;
        // Not a state change, but documents waiting for the probe's outcome may go now.
        changes.push_back(transition(run.command_, b.state, b.state, b.consecutive));
      }
    } else if (!failure) {
      if (b.state == BreakerState::kHalfOpen && run.probe_) {
        changes.push_back(transition(run.command_, b.state, BreakerState::kClosed, b.consecutive));
        b.state = BreakerState::kClosed;
        --not_closed_;
        b.probe_running = false;
        b.opened_at_ms = 0;
        b.failed_probes = 0;
        ++b.transitions;
      }
      if (b.state == BreakerState::kClosed) b.consecutive = 0;
    } else {
      const std::string what = std::string(command_failure_name(*failure)) + ": " + detail;
      if (b.state == BreakerState::kClosed) {
        b.last_failure = what;
        ++b.consecutive;
        if (b.consecutive >= b.config.failures) {
          open_locked(run.command_, b, milliseconds(b.config.open_ms), what, changes);
        }
      } else if (b.state == BreakerState::kHalfOpen && run.probe_) {
        b.last_failure = what;
        ++b.consecutive;
        ++b.failed_probes;
        // Each failed probe doubles the open period, up to max_open_ms.
        const Clock::duration cap = milliseconds(std::max(b.config.max_open_ms, b.config.open_ms));
        const Clock::duration doubled = b.open_period >= cap / 2 ? cap : b.open_period * 2;
        open_locked(run.command_, b, doubled, what, changes);
      }
    }
  }
  announce(changes);
}

BreakerSnapshot CommandBreakers::snapshot_locked(const std::string& command,
                                                 const Breaker& b) const {
  BreakerSnapshot s;
  s.command = command;
  s.config = b.config;
  s.state = b.state;
  s.consecutive_failures = b.consecutive;
  s.failed_probes = b.failed_probes;
  s.open_ms = b.state == BreakerState::kClosed
                  ? 0
                  : std::chrono::duration_cast<milliseconds>(b.open_period).count();
  s.opened_at_ms = b.state == BreakerState::kClosed ? 0 : b.opened_at_ms;
  if (b.state == BreakerState::kOpen) {
    const Clock::duration left = std::max(Clock::duration::zero(), b.open_until - clock_.now());
    s.next_probe_ms = clock_.wall_ms() + std::chrono::ceil<milliseconds>(left).count();
  }
  s.probe_running = b.state == BreakerState::kHalfOpen && b.probe_running;
  s.last_failure = b.last_failure;
  s.transitions = b.transitions;
  return s;
}

std::vector<BreakerSnapshot> CommandBreakers::snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<BreakerSnapshot> out;
  out.reserve(breakers_.size());
  for (const auto& [name, b] : breakers_) out.push_back(snapshot_locked(name, b));
  return out;
}

std::optional<BreakerSnapshot> CommandBreakers::snapshot(const std::string& command) const {
  std::lock_guard lock(mu_);
  auto it = breakers_.find(command);
  if (it == breakers_.end()) return std::nullopt;
  return snapshot_locked(command, it->second);
}

uint64_t CommandBreakers::subscribe(Observer observer) {
  std::lock_guard lock(observers_mu_);
  const uint64_t handle = next_observer_++;
  observers_.emplace(handle, std::move(observer));
  return handle;
}

void CommandBreakers::unsubscribe(uint64_t handle) {
  // Waits for a call in progress: announce() holds the lock while it calls.
  std::lock_guard lock(observers_mu_);
  observers_.erase(handle);
}

void CommandBreakers::announce(const std::vector<BreakerTransition>& changes) {
  if (changes.empty()) return;
  std::lock_guard lock(observers_mu_);
  for (const BreakerTransition& t : changes) {
    for (const auto& [handle, observer] : observers_) observer(t);
  }
}

}  // namespace docpipe
