#pragma once
// A circuit breaker per external command (issue 13): after `failures` consecutive failures of a
// command, documents that need it wait instead of failing one by one; once the open period has
// passed, exactly one document runs it as a probe, and its outcome closes the breaker or opens it
// again for twice as long (capped at max_open_ms).
//
//   closed --failures in a row--> open --open period over, one document admitted--> half-open
//   half-open --probe succeeded--> closed;  half-open --probe failed--> open (period doubled)
//   half-open --probe abandoned (cancel, document timeout, output error)--> half-open, no probe
//
// What counts (docs/design.md "Circuit breaker per command"): a failure is the command crashing
// (a signal), exiting non-zero, passing its timeout_ms, or not starting; a success is exit 0.
// Anything that ends a run without a verdict on the command (the document cancelled or over
// its document_timeout_ms, the output side failing, the daemon stopping) is neither: the run is
// abandoned, which frees the probe's place and leaves the count as it was.
//
// The interface is by command name, so that every way of running a command (one process per
// document, a pool of processes) reports to the same breaker: admit() before a run, then
// succeeded() or failed() on the CommandRun it returned; a run dropped without either is
// abandoned. Runs admitted before the breaker last opened report into a state that has moved on:
// their outcomes are ignored.
//
// Thread-safe. Observers are told of each state change outside the lock, in no guaranteed order
// across threads: they read the current state (snapshot()) rather than trust an order.
// Times come from the Clock given, so tests run the state machine on a FakeClock.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/breaker_config.h"
#include "core/clock.h"

namespace docpipe {

// Values of docpipe_command_breaker_state.
enum class BreakerState { kClosed = 0, kOpen = 1, kHalfOpen = 2 };
const char* breaker_state_name(BreakerState s);  // "closed", "open", "half-open"

// Why a run counts as a failure.
// kErrorAnswer: a webhook receiver answered with an error status (the notifier's breakers per
// host reuse this state machine: daemon/notifier.h).
enum class CommandFailure { kCrashed, kExited, kTimedOut, kCannotStart, kErrorAnswer };
const char* command_failure_name(CommandFailure f);  // "crashed", "exited non-zero", ...

class CommandBreakers;

// One admitted run of a command. Move-only; destroyed without a verdict, the run is abandoned.
class CommandRun {
 public:
  CommandRun() = default;
  CommandRun(CommandRun&& other) noexcept { *this = std::move(other); }
  CommandRun& operator=(CommandRun&& other) noexcept;
  CommandRun(const CommandRun&) = delete;
  CommandRun& operator=(const CommandRun&) = delete;
  ~CommandRun() { abandon(); }

  // A breaker watches this run (false: no breakers, or this command's is off): its failures
  // are the breaker's business, and the caller may treat them as worth another attempt.
  bool watched() const { return owner_ != nullptr; }
  bool probe() const { return probe_; }
  void succeeded();
  // `detail` is what the failure was ("exited with status 1"), for the log and status.
  void failed(CommandFailure why, const std::string& detail);
  void abandon();

 private:
  friend class CommandBreakers;
  CommandBreakers* owner_ = nullptr;
  std::string command_;
  uint64_t epoch_ = 0;
  bool probe_ = false;
};

// What admit() says.
struct CommandAdmission {
  bool admitted = false;
  CommandRun run;  // admitted: report its outcome through it
  // Not admitted: when to ask again at the earliest; time_point::max() while a probe runs (a
  // state change is then announced to the observers).
  Clock::time_point retry_at{};
  std::string reason;  // not admitted: "open after 5 consecutive failures (last: ...)"
};

// What status and metrics show of one command's breaker.
struct BreakerSnapshot {
  std::string command;
  BreakerConfig config;
  BreakerState state = BreakerState::kClosed;
  int consecutive_failures = 0;
  int failed_probes = 0;       // since it last closed
  int64_t open_ms = 0;         // the current open period (doubled by failed probes)
  int64_t opened_at_ms = 0;    // wall clock; 0 unless open or half-open
  int64_t next_probe_ms = 0;   // wall clock; open: when a document may probe; else 0
  bool probe_running = false;  // half-open: a probe document is running the command
  std::string last_failure;    // what the last counted failure was; "" if none
  uint64_t transitions = 0;    // state changes since start
};

// A state change, as observers hear of it. from == to (half-open): not a change, but its probe
// was abandoned, so documents waiting for the probe's outcome may go (one of them probes).
struct BreakerTransition {
  std::string command;
  BreakerState from = BreakerState::kClosed;
  BreakerState to = BreakerState::kClosed;
  int consecutive_failures = 0;
  int64_t open_ms = 0;  // to open: how long it stays open
  std::string detail;   // to open: the failure that opened it; else kBreakerRemovedByReload or ""
};

// The detail of the change to closed of a breaker whose command a reload removed.
inline constexpr const char* kBreakerRemovedByReload = "the command was removed by a reload";

class CommandBreakers {
 public:
  // `clock` must outlive this object.
  explicit CommandBreakers(const Clock& clock = system_clock()) : clock_(clock) {}
  CommandBreakers(const CommandBreakers&) = delete;
  CommandBreakers& operator=(const CommandBreakers&) = delete;

  // Sets the commands and their breaker configs (start and reload). A breaker keeps its state
  // across a reload unless it is turned off (then it closes); commands no longer configured are
  // forgotten (a job already running with one admits it freely).
  void configure(const std::map<std::string, BreakerConfig>& commands);

  // Asks to run `command` now. Unknown commands and breakers turned off always admit (with an
  // unwatched run). Open: refused until its open period is over; the first asker after that is
  // the half-open probe, and everyone else waits for its outcome.
  CommandAdmission admit(const std::string& command);

  // nullopt: a document needing `command` may go now (closed, off, unknown, or a probe is due);
  // else the earliest time to ask again (max(): until the running probe ends). Changes no state.
  std::optional<Clock::time_point> blocked_until(const std::string& command) const;

  std::vector<BreakerSnapshot> snapshot() const;  // by command name
  std::optional<BreakerSnapshot> snapshot(const std::string& command) const;

  // Observers are called after each state change, outside the lock, from the thread that caused
  // it. Returns a handle for unsubscribe(); an observer must not outlive its subscription.
  using Observer = std::function<void(const BreakerTransition&)>;
  uint64_t subscribe(Observer observer);
  void unsubscribe(uint64_t handle);

 private:
  friend class CommandRun;
  struct Breaker {
    BreakerConfig config;
    BreakerState state = BreakerState::kClosed;
    int consecutive = 0;
    int failed_probes = 0;
    Clock::duration open_period{};
    Clock::time_point open_until{};
    int64_t opened_at_ms = 0;
    bool probe_running = false;
    // A new one at each change to open or to off: older runs' outcomes are ignored.
    uint64_t epoch = 0;
    std::string last_failure;
    uint64_t transitions = 0;
  };

  void report(const CommandRun& run, std::optional<CommandFailure> failure,
              const std::string& detail, bool abandoned);
  void open_locked(const std::string& command, Breaker& b, Clock::duration period,
                   const std::string& detail, std::vector<BreakerTransition>& changes);
  BreakerSnapshot snapshot_locked(const std::string& command, const Breaker& b) const;
  void announce(const std::vector<BreakerTransition>& changes);

  const Clock& clock_;
  mutable std::mutex mu_;
  std::map<std::string, Breaker> breakers_;
  uint64_t last_epoch_ = 0;  // epochs are unique across breakers, even one forgotten and re-added
  // Breakers not closed, changed under mu_: while there are none (nearly always) blocked_until()
  // answers without the lock, so the scheduler's per-document gate costs one atomic load.
  std::atomic<int> not_closed_{0};
  std::mutex observers_mu_;  // never held with mu_
  std::map<uint64_t, Observer> observers_;
  uint64_t next_observer_ = 1;
};

}  // namespace docpipe
