// Retry-After as a webhook receiver sends it (daemon/retry_after.h): delta-seconds and the three
// HTTP-date forms, read strictly; anything else is no value.

#include "daemon/retry_after.h"

#include <doctest/doctest.h>

#include <string>

namespace docpipe {
namespace {

constexpr int64_t kNow = 1'764'547'200'000;  // Mon, 01 Dec 2025 00:00:00 GMT

TEST_CASE("retry-after: delta-seconds in milliseconds with whitespace around") {
  CHECK(parse_retry_after("2", kNow) == 2000);
  CHECK(parse_retry_after("0", kNow) == 0);
  CHECK(parse_retry_after(" 120\t", kNow) == 120000);
  CHECK(parse_retry_after("007", kNow) == 7000);
  // A year's worth or a thousand digits: saturates (the notifier caps it at retry_max_ms).
  CHECK(parse_retry_after("31536000", kNow) == int64_t{31536000} * 1000);
  CHECK(parse_retry_after(std::string(1000, '9'), kNow) == kMaxRetryAfterSeconds * 1000);
}

TEST_CASE("retry-after: an HTTP-date in each of its three forms is the time until it") {
  CHECK(parse_retry_after("Mon, 01 Dec 2025 00:00:10 GMT", kNow) == 10000);
  CHECK(parse_retry_after("Monday, 01-Dec-25 00:01:00 GMT", kNow) == 60000);
  CHECK(parse_retry_after("Mon Dec  1 01:00:00 2025", kNow) == 3600000);
  CHECK(parse_retry_after("Wed Dec 31 00:00:00 2025", kNow) == int64_t{30} * 86400 * 1000);
  // A date past asks for no wait.
  CHECK(parse_retry_after("Sun, 30 Nov 2025 23:59:59 GMT", kNow) == 0);
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", kNow) == 0);
  // A leap year's 29 February.
  CHECK(parse_retry_after("Tue, 29 Feb 2028 00:00:00 GMT", kNow).has_value());
}

TEST_CASE("retry-after: anything else is no value") {
  for (const char* bad : {"",
                          "   ",
                          "-1",
                          "+5",
                          "1.5",
                          "2s",
                          "2, 3",
                          "0x10",
                          "soon",
                          "Mon, 01 Dec 2025 00:00:10 UTC",
                          "Mon, 1 Dec 2025 00:00:10 GMT",
                          "Tue, 01 Dec 2025 00:00:10 GMT",  // the wrong weekday
                          "mon, 01 Dec 2025 00:00:10 GMT",
                          "Mon, 01 Dec 2025 24:00:00 GMT",
                          "Mon, 01 Dec 2025 00:60:00 GMT",
                          "Mon, 31 Nov 2025 00:00:10 GMT",
                          "Fri, 29 Feb 2025 00:00:00 GMT",
                          "Mon, 01 Dec 2025 00:00:10 GMT x",
                          "Mon, 01 Xyz 2025 00:00:10 GMT",
                          "Monday, 01-Dec-2025 00:01:00 GMT",
                          "Mon Dec 1 01:00:00 2025",
                          "2..."}) {
    CHECK_MESSAGE(!parse_retry_after(bad, kNow), bad);
  }
  const std::string with_nul("5\0", 2);
  CHECK_FALSE(parse_retry_after(with_nul, kNow));
}

}  // namespace
}  // namespace docpipe
