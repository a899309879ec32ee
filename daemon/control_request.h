#pragma once
// One control-socket request line (NDJSON), parsed and checked without libuv, so that it can be
// unit-tested and fuzzed: {"op": "submit", "job": {...}, "base_dir": "/abs"}, {"op": "status"
// [, "id": ID]}, {"op": "cancel", "id": ID}, {"op": "retry", "id": ID[, "new_id": ID]},
// {"op": "list"}, {"op": "pause"[, "reason": TEXT]} or {"op": "resume"}. Hostile lines cost
// O(size): size and nesting are checked before anything is built, and nothing a client sends is
// echoed back unbounded.

#include <cstddef>
#include <string>
#include <string_view>

#include "core/json_util.h"
#include "core/result.h"

namespace docpipe {

// A line longer than this is refused (and the connection closed, since the rest of the stream
// cannot be trusted to be framed).
inline constexpr size_t kMaxControlRequestBytes = 4u << 20;
// Arrays and objects nested deeper than this (the job's own depth limit) are refused before
// parsing: printing or copying a parsed value recurses once per level.
inline constexpr size_t kMaxControlRequestDepth = kMaxJsonDepth;

struct ControlRequest {
  enum class Op { kSubmit, kStatus, kCancel, kList, kPause, kResume, kWhich, kPlan, kRetry };
  Op op = Op::kList;
  std::string id;        // status: one job (empty: all of the caller's); cancel, retry: the job
  std::string new_id;    // retry: the new job's id (empty: the daemon picks "ID-retry-N")
  std::string job_text;  // submit: the job as compact JSON text
  std::string base_dir;  // submit: where relative paths resolve (absolute); empty: incoming/
  std::string reason;    // pause: why (cut to kMaxPauseReasonChars); may be empty
  // which: {"op": "which", "path": ABSOLUTE_OUTPUT_PATH}; plan: as submit, plus an optional
  // "list": how many documents the reply lists (0..kMaxPlanListed, default kDefaultPlanListed).
  std::string path;
  size_t list = 0;
};

inline constexpr size_t kDefaultPlanListed = 1000;
inline constexpr size_t kMaxPlanListed = 10000;

// Parses one line (without its newline). Errors are kInvalidArgument (or kTooLarge) with the
// message the client is sent.
Result<ControlRequest> parse_control_request(std::string_view line);

// A client-chosen text (an op, a job id) quoted in an error reply: at most `max_chars` of it,
// unprintable bytes, quotes and backslashes as '?', "..." when cut; so that a reply never grows
// with what was sent.
std::string quote_client_text(std::string_view text, size_t max_chars);

}  // namespace docpipe
