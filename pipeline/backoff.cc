#include "pipeline/backoff.h"

#include <algorithm>
#include <cmath>

namespace docpipe {

using Duration = Clock::duration;

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

uint64_t RetryJitter::random_seed() {
  std::random_device device;
  return (uint64_t{device()} << 32) ^ device();
}

Duration RetryJitter::delay(int attempt) {
  double unit;
  {
    std::lock_guard lock(mu_);
    // generate_canonical, not uniform_real_distribution: the standard specifies its algorithm,
    // so a seed gives the same delays with every standard library.
    unit = std::generate_canonical<double, 53>(rng_);
  }
  // generate_canonical may round up to 1.0 (LWG 2524): keep the band half-open.
  if (unit >= 1.0) unit = std::nextafter(1.0, 0.0);
  return backoff_delay(attempt, unit);
}

}  // namespace docpipe
