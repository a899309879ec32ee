#pragma once
// Glob patterns for job `include`/`exclude`, matched against paths relative to the input dir:
// `*` and `?` never cross '/', `**` as a whole path segment matches zero or more segments,
// `[abc]`, `[a-z]` and `[!a]` classes, `\` escapes the next character.

#include <string_view>

namespace docpipe {

bool glob_match(std::string_view pattern, std::string_view path);

// For pruning a walk at folder `dir` (relative, no trailing '/'):
// true if some path below dir could match `pattern` (include: otherwise skip the folder) ...
bool glob_may_match_under(std::string_view pattern, std::string_view dir);
// ... and true if every path below dir matches `pattern` (exclude "drafts/**": skip the folder).
bool glob_matches_all_under(std::string_view pattern, std::string_view dir);

}  // namespace docpipe
