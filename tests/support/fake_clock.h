#pragma once
// A Clock for unit tests (Envoy's SimulatedTimeSystem): time moves only when the test calls
// advance(), which also wakes every thread blocked in wait_until() so that it re-checks its
// deadline (or, with set_advance_on_wait(), when a thread waits). No unit test waits on the wall
// clock.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>
#include <vector>

#include "core/clock.h"

namespace docpipe::test {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t wall_ms = 1'764'547'200'000)  // 2025-12-01T00:00:00Z
      : wall_start_ms_(wall_ms) {}

  time_point now() const override {
    std::lock_guard lock(mu_);
    return now_;
  }
  int64_t wall_ms() const override {
    std::lock_guard lock(mu_);
    return wall_start_ms_ +
           std::chrono::duration_cast<std::chrono::milliseconds>(now_.time_since_epoch()).count();
  }

  // Registers the waiter under the caller's lock, so an advance() that runs between the caller's
  // check and its wait still wakes it: advance() takes the same mutex before notifying.
  void wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                  time_point deadline) const override {
    {
      std::lock_guard guard(mu_);
      if (now_ >= deadline) return;
      if (advance_on_wait_) {
        now_ = deadline;
        // Others waiting on this variable may be due now too; the caller holds its mutex.
        cv.notify_all();
        return;
      }
      waiters_.push_back({&cv, lock.mutex()});
      ++blocked_;
    }
    blocked_cv_.notify_all();
    cv.wait(lock);
    std::lock_guard guard(mu_);
    auto it = std::find(waiters_.begin(), waiters_.end(), Waiter{&cv, lock.mutex()});
    if (it != waiters_.end()) waiters_.erase(it);
  }

  // Moves time forward and wakes every waiter.
  void advance(duration d) {
    std::vector<Waiter> wake;
    {
      std::lock_guard lock(mu_);
      now_ += d;
      wake = waiters_;
    }
    for (const Waiter& w : wake) {
      std::lock_guard lock(*w.mu);
      w.cv->notify_all();
    }
  }

  // On: a wait_until() on a deadline ahead moves time to that deadline and returns at once (as
  // if nothing else happened meanwhile), for tests that need retries to come but do not measure
  // when. Other waiters are woken only if they wait on the same condition variable.
  void set_advance_on_wait(bool on) {
    std::lock_guard lock(mu_);
    advance_on_wait_ = on;
  }

  // Threads blocked in wait_until() now (to advance only once a worker waits).
  size_t waiters() const {
    std::lock_guard lock(mu_);
    return waiters_.size();
  }

  // How many times, in all, a wait_until() call began to block (a deadline already reached does
  // not block). Lets a test see that a worker woken by advance() checked and blocked again.
  size_t blocked_count() const {
    std::lock_guard lock(mu_);
    return blocked_;
  }

  // Blocks the test (on a condition variable, not by polling) until blocked_count() >= n; false
  // if `safety` of real time passes first, which only a broken worker should ever cause.
  bool await_blocked(size_t n, std::chrono::milliseconds safety = std::chrono::seconds(30)) const {
    std::unique_lock lock(mu_);
    return blocked_cv_.wait_for(lock, safety, [&] { return blocked_ >= n; });
  }

 private:
  struct Waiter {
    std::condition_variable* cv;
    std::mutex* mu;
    bool operator==(const Waiter&) const = default;
  };
  mutable std::mutex mu_;
  mutable time_point now_{std::chrono::hours(1)};  // wait_until() moves it with advance_on_wait_
  int64_t wall_start_ms_;
  mutable std::vector<Waiter> waiters_;
  mutable size_t blocked_ = 0;
  bool advance_on_wait_ = false;
  mutable std::condition_variable blocked_cv_;
};

}  // namespace docpipe::test
