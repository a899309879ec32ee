#pragma once
// Intake paused by an operator (`docpipe pause` / `docpipe resume`): while paused, no job starts
// (running ones go on), job files wait in incoming/ untouched and socket submissions are queued.
// The state is kept in the spool, SPOOL/paused.json, so that a restart stays paused: an operator
// who paused for a downstream outage does not want an upgrade's restart to start the night's
// jobs. docs/design.md "Pausing intake" has the whole contract.

#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace docpipe {

struct IntakePause {
  int64_t since_ms = 0;  // wall clock
  uid_t by_uid = 0;      // the peer that paused
  std::string reason;    // as given, at most kMaxPauseReasonChars; may be empty
};

inline constexpr size_t kMaxPauseReasonChars = 200;

// `text` cut to kMaxPauseReasonChars bytes (plus "..."), on a UTF-8 character boundary.
std::string pause_reason(std::string_view text);

// SPOOL/paused.json.
std::string pause_file_path(const std::string& spool_root);

// The pause recorded at `path`: nullopt when the file does not exist (intake open). A file that
// cannot be read or parsed is an Error: the caller stays paused (it was paused by someone) and
// says why.
Result<std::optional<IntakePause>> load_intake_pause(const std::string& path);

// Records `pause` at `path` (write_file_atomic), or with nullopt removes the file; with
// `durable`, the folder is synced so that the change survives a crash.
Status store_intake_pause(const std::string& path, const std::optional<IntakePause>& pause,
                          bool durable);

// {"state": "paused", "since": "2026-...Z", "since_ms": N, "by_uid": N, "reason": "..."}, or
// {"state": "open"}.
nlohmann::json intake_pause_json(const std::optional<IntakePause>& pause);

}  // namespace docpipe
