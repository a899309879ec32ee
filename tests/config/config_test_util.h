#pragma once
// What the config tests share: a config text parsed as if read from BASE/FILE, and the
// ConfigError message a text gives.

#include <string>

#include "config/daemon_config.h"

namespace docpipe::test {

inline DaemonConfig parse_config_text(const std::string& text,
                                      const std::string& file = "config.json",
                                      const std::string& base = "/etc/docpipe") {
  return parse_config(text, base, file);
}

// The ConfigError message for `text` (read as /etc/docpipe/FILE), or "" if it parsed.
inline std::string config_error_of(const std::string& text,
                                   const std::string& file = "config.json") {
  try {
    parse_config_text(text, file);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace docpipe::test
