#include "daemon/retry_queue.h"

#include <utility>
#include <vector>

namespace docpipe {

void RetryQueue::add(Clock::duration delay, std::function<void()> attempt) {
  due_.emplace(clock_.now() + delay, std::move(attempt));
  arm();
}

void RetryQueue::clear() {
  due_.clear();
  timer_.disarm();
}

void RetryQueue::run_due() {
  Clock::time_point now = clock_.now();
  std::vector<std::function<void()>> due;
  while (!due_.empty() && due_.begin()->first <= now) {
    due.push_back(std::move(due_.begin()->second));
    due_.erase(due_.begin());
  }
  // An attempt may add a retry (arming the timer); arm() below settles on the earliest.
  for (auto& attempt : due) attempt();
  arm();
}

void RetryQueue::arm() {
  if (due_.empty()) {
    timer_.disarm();
    return;
  }
  Clock::duration wait = due_.begin()->first - clock_.now();
  timer_.arm(wait > Clock::duration::zero() ? wait : Clock::duration::zero(),
             [this] { run_due(); });
}

}  // namespace docpipe
