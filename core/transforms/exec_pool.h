#pragma once
// A pool of long-lived processes for one `exec` command in "mode": "pool" (docs/design.md "exec
// pools (issue 13)"). Processes start lazily, at most `size` of them, shared by every job; a
// document checks one out (waiting, interruptibly, at most queue_timeout_ms when all are busy),
// streams through it (exec_pool_transform.h) and gives it back. A process is replaced after
// max_documents, and ended on a crash, a timeout, a protocol violation or a failed health check;
// starts that keep failing back off instead of spinning.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "core/transform.h"
#include "core/transforms/pool_process.h"

namespace docpipe {

// What became of one document in a pool, decided in one place (PoolTransform::settle) so that
// callers such as a per-command circuit breaker can hook there.
enum class PoolDocumentOutcome {
  kSucceeded,    // the process answered 'O'
  kFailed,       // the process answered 'F' with a message (it lives on)
  kCrashed,      // the process died or closed its output mid-document
  kTimedOut,     // timeout_ms passed
  kProtocol,     // the process broke the protocol
  kInterrupted,  // cancelled, document_timeout_ms, or abandoned by the pipeline
  kUnavailable,  // no process: none could be started, or none came free in queue_timeout_ms
};
inline constexpr int kPoolDocumentOutcomes = 7;
const char* pool_outcome_name(PoolDocumentOutcome o);

// Cumulative counts for one command name, kept across pool generations (a reload that changes
// the command starts a new pool under the same name), read by the metrics at scrape time.
struct PoolCounters {
  std::atomic<uint64_t> recycles[kRecycleReasons] = {};
  std::atomic<uint64_t> starts{0};
  std::atomic<uint64_t> start_failures{0};
  std::atomic<uint64_t> documents[kPoolDocumentOutcomes] = {};
  std::atomic<uint64_t> pongs{0};  // health checks an idle process passed
};

// Processes of a pool by state, at one moment.
struct PoolStateCounts {
  int starting = 0;  // spawned, waiting for the ready frame
  int idle = 0;
  int busy = 0;      // serving a document
  int checking = 0;  // idle, being pinged
  int stopping = 0;  // told to end (EOF, SIGTERM), not reaped yet
};

// Delays between failed starts: 100 ms doubling to 30 s; a successful start resets it. Pure, so
// that a test can drive it with made-up times.
class StartBackoff {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kFirst{100};
  static constexpr std::chrono::milliseconds kMax{30000};

  void failed(Clock::time_point now);
  void succeeded() { failures_ = 0; }
  bool allows(Clock::time_point now) const { return failures_ == 0 || now >= next_; }
  int failures() const { return failures_; }
  Clock::time_point next_attempt() const { return next_; }

 private:
  int failures_ = 0;
  Clock::time_point next_{};
};

class CommandPool {
 public:
  using Clock = std::chrono::steady_clock;

  CommandPool(std::string name, CommandSpec spec, PoolCounters& counters);
  ~CommandPool();  // stops and ends every process at once (SIGKILL)
  CommandPool(const CommandPool&) = delete;
  CommandPool& operator=(const CommandPool&) = delete;

  const std::string& name() const { return name_; }
  const CommandSpec& spec() const { return spec_; }
  // "exec: command \"NAME\"", the head of every error.
  const std::string& label() const { return label_; }
  int size() const { return size_; }
  PoolCounters& counters() { return counters_; }

  // A ready process for one document: an idle one, a new one (started in the caller's thread) if
  // fewer than size() live, or the next one given back. Asks `interrupted` every 50 ms.
  // `start_failed` (if given) says whether the error is that of a start this call attempted: the
  // one failure that speaks of the command (a refusal during the start backoff, a queue timeout,
  // a stop or the document's own interruption do not).
  Result<std::unique_ptr<PoolProcess>> acquire(const std::function<Status()>& interrupted,
                                               bool* start_failed = nullptr);

  // Gives back a process after its document. With no reason it is kept for the next document,
  // unless it has served max_documents (then it is replaced); with a reason it is ended at once.
  void release(std::unique_ptr<PoolProcess> p, std::optional<RecycleReason> reason);

  // Housekeeping, from the registry's thread: idle processes that exited or wrote something are
  // replaced, idle ones unused for health_interval_ms are pinged, and stopping ones are reaped
  // (SIGKILL once stop_grace_ms have passed). Returns when it is done; pings block it.
  void maintain();

  // No more documents: idle processes are told to end (EOF on stdin and SIGTERM to the group,
  // SIGKILL after stop_grace_ms); busy ones end when given back. Then waits until all are reaped
  // (wait = true) or returns at once.
  void stop(bool wait);
  bool stopped() const;
  // No process in any state.
  bool empty() const;

  PoolStateCounts counts() const;
  // Pids of live processes (idle, busy, checking), for tests and logs.
  std::vector<pid_t> pids() const;

 private:
  struct Stopping {
    std::unique_ptr<PoolProcess> p;
    Clock::time_point kill_at;
  };
  // Under mu_: ends `p` politely (counted under `reason`).
  void retire_locked(std::unique_ptr<PoolProcess> p, RecycleReason reason);
  // Under mu_: kills and reaps `p` at once.
  void kill_locked(std::unique_ptr<PoolProcess> p, RecycleReason reason);
  void reap_stopping();
  // Kills and reaps `p`, ended while idle for `reason`, and reports it (not under mu_).
  void end_idle(std::unique_ptr<PoolProcess> p, RecycleReason reason, const std::string& why);
  Error unavailable_locked(Clock::time_point now) const;

  const std::string name_;
  const CommandSpec spec_;
  const std::string label_;
  const int size_;
  PoolCounters& counters_;

  mutable std::mutex mu_;
  std::condition_variable freed_;                   // a process came back or a slot came free
  std::vector<std::unique_ptr<PoolProcess>> idle_;  // most recently used last
  std::vector<Stopping> stopping_;
  std::vector<pid_t> busy_pids_;
  int starting_ = 0;
  int checking_ = 0;
  int reaping_ = 0;  // taken from stopping_, being reaped outside the lock
  bool stopped_ = false;
  StartBackoff backoff_;
  std::string last_start_error_;
  ErrorCode last_start_code_ = ErrorCode::kIo;
};

// size 0 in the config: the number of cores, at least 1 and at most 8.
int default_pool_size();

// Where pools tell what no document's report shows: an idle process that died, wrote out of
// turn or failed its health check, and was replaced. The daemon sets its log; unset: nowhere.
using PoolEventSink = std::function<void(const std::string& command, const std::string& what)>;
void set_pool_event_sink(PoolEventSink sink);

}  // namespace docpipe
