#pragma once
// Retry-After (RFC 9110 section 10.2.3), as a webhook receiver answering 429 or 503 sends it:
// delta-seconds ("120") or an HTTP-date ("Sun, 06 Nov 1994 08:49:37 GMT", and the two obsolete
// forms a recipient must still read: "Sunday, 06-Nov-94 08:49:37 GMT" and "Sun Nov  6 08:49:37
// 1994"). Read strictly: anything else (a sign, a fraction, a unit, a list of two values, a date
// whose weekday does not match it) is no value at all, and the notifier keeps its own backoff.
// The notifier caps what it honours at retry_max_ms (daemon/notifier.cc).

#include <cstdint>
#include <optional>
#include <string_view>

namespace docpipe {

// How long the receiver asks to wait, in milliseconds, from `now_wall_ms` (Unix ms): the seconds
// given, or the time until the date (0 for a date past). nullopt when `value` is neither.
// Delta-seconds saturate at kMaxRetryAfterSeconds (the cap applies long before).
std::optional<int64_t> parse_retry_after(std::string_view value, int64_t now_wall_ms);

inline constexpr int64_t kMaxRetryAfterSeconds = int64_t{1} << 31;

// At most this much of a Retry-After value is kept from an answer (no valid value is longer).
inline constexpr size_t kMaxRetryAfterBytes = 64;

}  // namespace docpipe
