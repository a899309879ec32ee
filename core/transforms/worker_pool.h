#pragma once
// The daemon's side of isolated transforms (isolated_worker.h): worker processes, a pool of idle
// ones per transform and limits, and the DocumentTransform that hands a document to one.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "core/result.h"
#include "core/transforms/isolated_worker.h"

namespace docpipe {

// Which workers can serve a document: the transform, the limits they were started with and what
// they prepared (WorkerOptions::variant).
struct WorkerKey {
  std::string op;
  WorkerLimits limits;
  std::string variant;
  bool operator<(const WorkerKey& o) const {
    return std::tie(op, limits.memory_bytes, limits.cpu_seconds, variant) <
           std::tie(o.op, o.limits.memory_bytes, o.limits.cpu_seconds, o.variant);
  }
};

// One worker process: its pipes (non-blocking on our side) and a pidfd. Destroying it kills and
// reaps the process.
class WorkerProcess {
 public:
  // Starts a worker and waits (at most kStartTimeout) for its hello, which it sends once its
  // sandbox is in place.
  static Result<std::unique_ptr<WorkerProcess>> start(const WorkerKey& key);
  static constexpr std::chrono::milliseconds kStartTimeout{10000};

  ~WorkerProcess();
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  const WorkerKey& key() const { return key_; }
  pid_t pid() const { return pid_; }
  int to_worker() const { return to_fd_; }
  int from_worker() const { return from_fd_; }
  int pidfd() const { return pidfd_; }
  uint64_t cpu_usec = 0;  // as last reported

  // Not exited (it may still be dying).
  bool alive() const;
  // Waits up to `grace` for it to exit by itself, then kills it; reaps it; its wait status.
  int reap(std::chrono::milliseconds grace);
  // SIGKILL, then reap. Idempotent.
  void kill_and_reap();

 private:
  explicit WorkerProcess(WorkerKey key) : key_(std::move(key)) {}
  WorkerKey key_;
  pid_t pid_ = -1;
  int to_fd_ = -1;
  int from_fd_ = -1;
  int pidfd_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

// Idle workers, reused document after document. A worker is taken by one document at a time and
// given back only after a complete, well-formed answer; any other ending kills it.
class WorkerPool {
 public:
  static WorkerPool& instance();

  Result<std::unique_ptr<WorkerProcess>> take(const WorkerKey& key);
  void give_back(std::unique_ptr<WorkerProcess> worker);

  // Idle workers kept across all keys (default 16); 0 starts a worker per document (to measure
  // what the pool saves). Extra ones are killed.
  void set_max_idle(size_t n);
  size_t idle_count();

 private:
  std::mutex mu_;
  std::map<WorkerKey, std::vector<std::unique_ptr<WorkerProcess>>> idle_;
  size_t idle_total_ = 0;
  size_t max_idle_ = 16;
};

// Why a worker ended (its wait status), as the document's error: its memory limit, its CPU limit,
// a forbidden system call, or the signal that killed it.
Error worker_death_error(const WorkerKey& key, int status);

// The step isolated_step() returns in the daemon.
std::shared_ptr<const TransformStep> make_worker_step(const std::string& op,
                                                      const nlohmann::json& params,
                                                      const WorkerLimits& limits,
                                                      const WorkerOptions& options);

// How many documents of a concurrency group (WorkerOptions::concurrency_group) may be in their
// workers at once, process-wide; a group never set, or set to 0, is not limited. Set at start and
// on reload.
void set_worker_concurrency(const std::string& group, int limit);
// Documents of `group` in their workers now (for tests and status).
int worker_concurrency_in_use(const std::string& group);

}  // namespace docpipe
