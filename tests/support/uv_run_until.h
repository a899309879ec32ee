#pragma once
// For unit tests on a real libuv loop: turn the loop until a condition holds. The loop blocks on
// its own events (descriptors, fs requests, timers) between checks, so nothing polls the wall
// clock; a guard timer ends a wait that would otherwise hang (a broken unit) and makes it fail.

#include <uv.h>

#include <cstdint>
#include <functional>

namespace docpipe::test {

// Checks `done()` (which may act, e.g. read a socket) once before each loop turn and once after
// the last; true once it holds, false when `guard_ms` passed first.
inline bool uv_run_until(uv_loop_t* loop, const std::function<bool()>& done,
                         uint64_t guard_ms = 20000) {
  bool expired = false;
  uv_timer_t guard;
  uv_timer_init(loop, &guard);
  guard.data = &expired;
  uv_timer_start(
      &guard, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; }, guard_ms, 0);
  bool ok = done();
  while (!ok && !expired) {
    uv_run(loop, UV_RUN_ONCE);
    ok = done();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&guard), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);  // runs the guard's close
  return ok;
}

}  // namespace docpipe::test
