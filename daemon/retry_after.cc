#include "daemon/retry_after.h"

#include <algorithm>
#include <array>
#include <string>

namespace docpipe {
namespace {

constexpr std::array<std::string_view, 7> kDays = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 7> kLongDays = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                       "Thursday", "Friday", "Saturday"};
constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Exactly `n` digits at `s[pos]`; advances pos.
std::optional<int> digits(std::string_view s, size_t& pos, size_t n) {
  if (pos + n > s.size()) return std::nullopt;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!is_digit(s[pos + i])) return std::nullopt;
    v = v * 10 + (s[pos + i] - '0');
  }
  pos += n;
  return v;
}

bool literal(std::string_view s, size_t& pos, std::string_view lit) {
  if (s.substr(pos, lit.size()) != lit) return false;
  pos += lit.size();
  return true;
}

template <size_t N>
std::optional<int> name_of(std::string_view s, size_t& pos,
                           const std::array<std::string_view, N>& names) {
  for (size_t i = 0; i < N; ++i) {
    if (literal(s, pos, names[i])) return static_cast<int>(i);
  }
  return std::nullopt;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int days_in_month(int y, int m) {
  static constexpr int kDaysIn[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDaysIn[m - 1];
}

// "HH:MM:SS" into seconds of the day.
std::optional<int> time_of_day(std::string_view s, size_t& pos) {
  auto h = digits(s, pos, 2);
  if (!h || !literal(s, pos, ":")) return std::nullopt;
  auto m = digits(s, pos, 2);
  if (!m || !literal(s, pos, ":")) return std::nullopt;
  auto sec = digits(s, pos, 2);
  if (!sec || *h > 23 || *m > 59 || *sec > 60) return std::nullopt;  // 60: a leap second
  return *h * 3600 + *m * 60 + *sec;
}

// Unix ms of a valid date whose weekday is `weekday` (0 = Sunday); nullopt otherwise.
std::optional<int64_t> to_ms(int year, int month, int day, int seconds, int weekday) {
  if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month)) return std::nullopt;
  const int64_t days = days_from_civil(year, month, day);
  // 1970-01-01 was a Thursday (4).
  if (((days % 7 + 7 + 4) % 7) != weekday) return std::nullopt;
  return (days * 86400 + seconds) * 1000;
}

std::optional<int64_t> parse_http_date(std::string_view s, int64_t now_wall_ms) {
  size_t pos = 0;
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
  if (auto wd = name_of(s, pos, kDays); wd && literal(s, pos, ", ")) {
    auto day = digits(s, pos, 2);
    if (!day || !literal(s, pos, " ")) return std::nullopt;
    auto month = name_of(s, pos, kMonths);
    if (!month || !literal(s, pos, " ")) return std::nullopt;
    auto year = digits(s, pos, 4);
    if (!year || !literal(s, pos, " ")) return std::nullopt;
    auto secs = time_of_day(s, pos);
    if (!secs || !literal(s, pos, " GMT") || pos != s.size()) return std::nullopt;
    return to_ms(*year, *month + 1, *day, *secs, *wd);
  }
  pos = 0;
  // rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT"
  if (auto wd = name_of(s, pos, kLongDays); wd && literal(s, pos, ", ")) {
    auto day = digits(s, pos, 2);
    if (!day || !literal(s, pos, "-")) return std::nullopt;
    auto month = name_of(s, pos, kMonths);
    if (!month || !literal(s, pos, "-")) return std::nullopt;
    auto yy = digits(s, pos, 2);
    if (!yy || !literal(s, pos, " ")) return std::nullopt;
    auto secs = time_of_day(s, pos);
    if (!secs || !literal(s, pos, " GMT") || pos != s.size()) return std::nullopt;
    // A two-digit year more than 50 years ahead is the most recent past year ending so.
    const int64_t now_year = 1970 + now_wall_ms / 31'556'952'000;  // ms in a Gregorian year
    int year = 2000 + *yy;
    if (year > now_year + 50) year -= 100;
    return to_ms(year, *month + 1, *day, *secs, *wd);
  }
  pos = 0;
  // asctime-date: "Sun Nov  6 08:49:37 1994" (the day padded with a space)
  if (auto wd = name_of(s, pos, kDays); wd && literal(s, pos, " ")) {
    auto month = name_of(s, pos, kMonths);
    if (!month || !literal(s, pos, " ")) return std::nullopt;
    std::optional<int> day;
    if (pos < s.size() && s[pos] == ' ') {
      ++pos;
      day = digits(s, pos, 1);
    } else {
      day = digits(s, pos, 2);
    }
    if (!day || !literal(s, pos, " ")) return std::nullopt;
    auto secs = time_of_day(s, pos);
    if (!secs || !literal(s, pos, " ")) return std::nullopt;
    auto year = digits(s, pos, 4);
    if (!year || pos != s.size()) return std::nullopt;
    return to_ms(*year, *month + 1, *day, *secs, *wd);
  }
  return std::nullopt;
}

}  // namespace

std::optional<int64_t> parse_retry_after(std::string_view value, int64_t now_wall_ms) {
  // Optional whitespace around a field value is not part of it.
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), is_digit)) {
    int64_t seconds = 0;
    for (char c : value) {
      seconds = std::min(kMaxRetryAfterSeconds, seconds * 10 + (c - '0'));
    }
    return seconds * 1000;
  }
  std::optional<int64_t> at = parse_http_date(value, now_wall_ms);
  if (!at) return std::nullopt;
  return std::max<int64_t>(0, *at - now_wall_ms);
}

}  // namespace docpipe
