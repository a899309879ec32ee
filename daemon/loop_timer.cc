#include "daemon/loop_timer.h"

#include <chrono>
#include <utility>

namespace docpipe {

int LoopTimer::open(uv_loop_t* loop) {
  return timer_.open(this, [loop](uv_timer_t* t) { return uv_timer_init(loop, t); });
}

void LoopTimer::close(std::function<void()> on_closed) {
  fire_ = nullptr;
  timer_.close(std::move(on_closed));
}

void LoopTimer::arm(Clock::duration delay, std::function<void()> fire) {
  if (!timer_.is_open()) return;
  fire_ = std::move(fire);
  // Rounded up: firing a millisecond early would find nothing due and arm again for 0 ms.
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(delay).count();
  uv_timer_start(
      timer_.get(),
      [](uv_timer_t* t) {
        auto* self = UvHandle<uv_timer_t>::owner_of<LoopTimer>(t);
        // Moved out: the callback may arm again, replacing fire_.
        std::function<void()> fire = std::move(self->fire_);
        self->fire_ = nullptr;
        if (fire) fire();
      },
      static_cast<uint64_t>(ms < 0 ? 0 : ms), 0);
}

void LoopTimer::disarm() {
  fire_ = nullptr;
  if (timer_.is_open()) uv_timer_stop(timer_.get());
}

}  // namespace docpipe
