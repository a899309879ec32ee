#pragma once

#include <cstdint>
#include <string>

namespace docpipe {

int64_t wall_clock_ms();                // milliseconds since the Unix epoch
std::string format_utc(int64_t unix_ms);  // "2026-11-25T01:02:03.456Z"

}  // namespace docpipe
