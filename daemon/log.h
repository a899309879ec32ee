#pragma once
// One line per event on stderr: text ("2026-11-25T01:02:03.456Z info job finished id=x") or JSON,
// with a "<N>" syslog priority prefix when stderr is the journald stream (JOURNAL_STREAM names it).
// Thread-safe: each line is one write(2).

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace docpipe {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Parses "debug".."error"; returns false on anything else.
bool parse_log_level(std::string_view text, LogLevel& out);

using LogFields = std::vector<std::pair<std::string_view, std::string>>;

void log_configure(LogLevel level, bool json);
bool log_enabled(LogLevel level);
void log_event(LogLevel level, std::string_view message, const LogFields& fields = {});

inline void log_debug(std::string_view m, const LogFields& f = {}) {
  log_event(LogLevel::kDebug, m, f);
}
inline void log_info(std::string_view m, const LogFields& f = {}) {
  log_event(LogLevel::kInfo, m, f);
}
inline void log_warn(std::string_view m, const LogFields& f = {}) {
  log_event(LogLevel::kWarn, m, f);
}
inline void log_error(std::string_view m, const LogFields& f = {}) {
  log_event(LogLevel::kError, m, f);
}

}  // namespace docpipe
