#include "pipeline/backoff.h"

#include <algorithm>
#include <random>

namespace docpipe {

using Duration = std::chrono::steady_clock::duration;

Duration backoff_nominal(int attempt) {
  // 2^7 x 100 ms already passes the cap: the shift stays far from overflow.
  const int doublings = std::clamp(attempt - 1, 0, 16);
  const Duration delay = Duration(kBackoffBase) * (int64_t{1} << doublings);
  return std::min<Duration>(delay, kBackoffMax);
}

Duration backoff_delay(int attempt, double unit) {
  unit = std::clamp(unit, 0.0, 1.0);
  return std::chrono::duration_cast<Duration>(backoff_nominal(attempt) * (0.5 + unit));
}

Duration random_backoff_delay(int attempt) {
  thread_local std::mt19937 rng{std::random_device{}()};
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  return backoff_delay(attempt, unit(rng));
}

}  // namespace docpipe
