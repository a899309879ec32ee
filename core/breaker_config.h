#pragma once
// A command's "breaker" in the daemon config's `commands` (the breaker itself is
// core/command_breaker.h). Apart, so that core/transform.h, which CommandSpec is in, need not
// include the breaker and its Clock.

#include <cstdint>

namespace docpipe {

struct BreakerConfig {
  int failures = 5;              // consecutive failures that open it; 0 turns the breaker off
  int64_t open_ms = 30000;       // how long it stays open before the first probe
  int64_t max_open_ms = 600000;  // the cap of the open period, doubled by each failed probe
  bool operator==(const BreakerConfig&) const = default;
};

}  // namespace docpipe
