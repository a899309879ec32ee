#pragma once
// A validation problem at a JSON path ("transforms[2].level: expected integer 1..9").

#include <cstddef>
#include <string>
#include <vector>

namespace docpipe {

struct FieldError {
  std::string path;    // JSON path from the document root; empty for the document itself
  std::string reason;  // what is wrong and, where useful, what was expected
};

using FieldErrors = std::vector<FieldError>;

// "path: reason", or just "reason" when the path is empty.
std::string format_field_error(const FieldError& e);

// Every error formatted, joined by "; " (for one log field or one report reason).
std::string join_field_errors(const FieldErrors& errors);

// How many problems one job file reports at most (rejected/NAME.error.json, `docpipe validate`,
// a refused submit). A job naming 100,000 missing files would otherwise write a 20 MB error file;
// the first hundred say what is wrong as well as all of them would.
inline constexpr size_t kMaxReportedFieldErrors = 100;

// Keeps the first `max` errors and replaces the rest by one final entry that counts them, so a
// capped list has at most max + 1 entries.
inline void cap_field_errors(FieldErrors& errors, size_t max = kMaxReportedFieldErrors) {
  if (errors.size() <= max + 1) return;  // replacing one error by "1 more" says nothing new
  const size_t rest = errors.size() - max;
  errors.resize(max);
  errors.push_back({"", "... and " + std::to_string(rest) + " more errors (not listed)"});
}

}  // namespace docpipe
