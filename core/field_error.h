#pragma once
// A validation problem at a JSON path ("transforms[2].level: expected integer 1..9").

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

}  // namespace docpipe
