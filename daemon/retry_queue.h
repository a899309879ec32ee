#pragma once
// Attempts to make again after a delay (a job's finish that failed for want of space or
// descriptors, a job file to reopen). Due times are read from an injected Clock, and one
// RetryTimer fires at the earliest: production wires a libuv timer (daemon/loop_timer.h), unit
// tests a timer they fire by hand after advancing a FakeClock. Loop thread only.

#include <cstddef>
#include <functional>
#include <map>

#include "core/clock.h"

namespace docpipe {

class RetryTimer {
 public:
  virtual ~RetryTimer() = default;
  // Calls `fire` once after `delay` (replacing what was armed before).
  virtual void arm(Clock::duration delay, std::function<void()> fire) = 0;
  virtual void disarm() = 0;
};

class RetryQueue {
 public:
  RetryQueue(const Clock& clock, RetryTimer& timer) : clock_(clock), timer_(timer) {}

  // Runs `attempt` once `delay` has passed by the clock.
  void add(Clock::duration delay, std::function<void()> attempt);
  // Drops every pending attempt (shutdown: what is left is done at the next start).
  void clear();
  size_t size() const { return due_.size(); }

 private:
  void run_due();
  void arm();

  const Clock& clock_;
  RetryTimer& timer_;
  std::multimap<Clock::time_point, std::function<void()>> due_;
};

}  // namespace docpipe
