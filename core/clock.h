#pragma once
// Time as a dependency (Envoy's TimeSource, ninja's VirtualFileSystem::Tick): code that measures
// durations, waits for deadlines or stamps reports reads the Clock it is given, so that unit tests
// run on a FakeClock (tests/support/fake_clock.h) advanced by hand instead of on the wall clock.
//
// now() is monotonic (deadlines, timeouts, settle and retry delays); wall_ms() is calendar time
// (what reports and status show). wait_until() blocks on a condition variable until the clock
// reaches `deadline` or the variable is notified: the system clock waits for real, a fake clock
// wakes its waiters when it is advanced.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace docpipe {

class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;

  virtual ~Clock() = default;
  virtual time_point now() const = 0;
  virtual int64_t wall_ms() const = 0;  // milliseconds since the Unix epoch
  // Like cv.wait_until(lock, deadline) by this clock; may return early (spuriously), so callers
  // re-check their condition and the time. `lock` holds the mutex that guards what notifies `cv`.
  virtual void wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                          time_point deadline) const = 0;
};

// The real clocks: std::chrono::steady_clock and system_clock. One instance for the process.
const Clock& system_clock();

}  // namespace docpipe
