#pragma once
// Blocking work (file moves, journals, validation) kept off the loop thread. The job table and
// the intake flows hand work to an Executor: `work` runs elsewhere, then `after` runs on the loop
// thread, where job state lives. Production: LoopExecutor (daemon/loop_executor.h, the libuv
// threadpool). Unit tests: an executor they run by hand, so that every step is deterministic.

#include <functional>

namespace docpipe {

class Executor {
 public:
  virtual ~Executor() = default;
  // Never drops the work: `after` always runs, once, after `work`.
  virtual void run(std::function<void()> work, std::function<void()> after) = 0;
};

}  // namespace docpipe
