#pragma once
// The RetryTimer of the daemon: one libuv timer (a UvHandle, daemon/uv_handle.h). open() before
// use, close() at shutdown; arm() on a timer that is not open does nothing. Loop thread only.

#include <uv.h>

#include <functional>

#include "daemon/retry_queue.h"
#include "daemon/uv_handle.h"

namespace docpipe {

class LoopTimer final : public RetryTimer {
 public:
  int open(uv_loop_t* loop);
  void close(std::function<void()> on_closed = nullptr);

  void arm(Clock::duration delay, std::function<void()> fire) override;
  void disarm() override;

 private:
  UvHandle<uv_timer_t> timer_;
  std::function<void()> fire_;
};

}  // namespace docpipe
