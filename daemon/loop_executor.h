#pragma once
// The Executor of the daemon: `work` on the libuv threadpool, `after` on the loop thread
// (uv_queue_work). A request in the pool keeps the loop alive until its `after` has run.

#include <uv.h>

#include "daemon/executor.h"

namespace docpipe {

class LoopExecutor final : public Executor {
 public:
  explicit LoopExecutor(uv_loop_t* loop) : loop_(loop) {}
  void run(std::function<void()> work, std::function<void()> after) override;

 private:
  uv_loop_t* loop_;
};

}  // namespace docpipe
