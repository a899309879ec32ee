#pragma once
// Every `exec` pool of the process, by command name, and the one thread that looks after them
// (health checks, idle processes that died, stopping ones to reap). Jobs get their command's pool
// when they are validated, so all jobs share it; a reload that changes or drops a command retires
// its pool, which ends once no job holds it any more. The daemon stops them all at its end.

#include <sys/types.h>

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/transforms/exec_pool.h"

namespace docpipe {

// One command's processes and counters, summed over its pools (a retired one may still drain).
struct CommandPoolStats {
  std::string command;
  PoolStateCounts processes;
  uint64_t recycles[kRecycleReasons] = {};
  uint64_t starts = 0;
  uint64_t start_failures = 0;
  uint64_t documents[kPoolDocumentOutcomes] = {};
  uint64_t pongs = 0;
};

class CommandPools {
 public:
  static CommandPools& instance();

  // The pool for `name` run as `spec` (mode pool); a new one if `spec` differs from the one the
  // current pool was made with (which is then retired).
  std::shared_ptr<CommandPool> get(const std::string& name, const CommandSpec& spec);

  // After a reload: pools of commands no longer configured as pools (or configured differently)
  // are retired.
  void retire_unlisted(const std::map<std::string, CommandSpec>& commands);

  // Stops every pool and waits until each process has ended (EOF and SIGTERM, SIGKILL after its
  // stop_grace_ms). A later get() starts afresh.
  void stop_all();

  std::vector<CommandPoolStats> stats();

  // How often the thread looks at idle processes.
  static constexpr std::chrono::milliseconds kTick{100};

 private:
  CommandPools() = default;
  void ensure_thread_locked();
  void loop();
  PoolCounters& counters_locked(const std::string& name);

  std::mutex mu_;
  std::condition_variable wake_;
  std::map<std::string, std::shared_ptr<CommandPool>> current_;
  // Replaced pools, ended once no job holds them (use_count 1: only this list).
  std::vector<std::shared_ptr<CommandPool>> retired_;
  std::map<std::string, std::unique_ptr<PoolCounters>> counters_;  // never removed
  bool thread_started_ = false;
};

}  // namespace docpipe
