#include "daemon/log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "core/time_util.h"

namespace docpipe {

namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<bool> g_json{false};

// systemd sets JOURNAL_STREAM to "DEV:INODE" of the stream it connected to stderr; a child that
// merely inherited the variable has another stderr, so both must match (systemd.exec(5)).
bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st;
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

const bool g_journal = stderr_is_journal();

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

// syslog priorities: debug 7, info 6, warning 4, err 3.
const char* journal_prefix(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "<7>";
    case LogLevel::kInfo:
      return "<6>";
    case LogLevel::kWarn:
      return "<4>";
    case LogLevel::kError:
      return "<3>";
  }
  return "<6>";
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20) return true;
  }
  return false;
}

}  // namespace

bool parse_log_level(std::string_view text, LogLevel& out) {
  for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
    if (text == level_name(l)) {
      out = l;
      return true;
    }
  }
  return false;
}

void log_configure(LogLevel level, bool json) {
  g_level = static_cast<int>(level);
  g_json = json;
}

bool log_enabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

void log_event(LogLevel level, std::string_view message, const LogFields& fields) {
  if (!log_enabled(level)) return;
  std::string line;
  if (g_journal) line += journal_prefix(level);
  if (g_json) {
    nlohmann::ordered_json j;
    if (!g_journal) j["ts"] = format_utc(wall_clock_ms());
    j["level"] = level_name(level);
    j["msg"] = message;
    for (const auto& [k, v] : fields) j[std::string(k)] = v;
    line += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    if (!g_journal) {
      line += format_utc(wall_clock_ms());
      line += ' ';
    }
    line += level_name(level);
    line += ' ';
    line += message;
    for (const auto& [k, v] : fields) {
      line += ' ';
      line += k;
      line += '=';
      if (needs_quotes(v)) {
        line += nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      } else {
        line += v;
      }
    }
  }
  line += '\n';
  ssize_t unused = ::write(STDERR_FILENO, line.data(), line.size());
  (void)unused;
}

}  // namespace docpipe
