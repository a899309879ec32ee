#pragma once
// Glob patterns for job `include`/`exclude`, matched against paths relative to the input dir:
// `*` and `?` never cross '/', `**` as a whole path segment matches zero or more segments,
// `[abc]`, `[a-z]` and `[!a]` classes, `\` escapes the next character.
//
// Cost: a pattern is compiled once (GlobPattern, GlobSet) into per-segment matchers. Matching a
// path is an NFA over the pattern's segments, so it never backtracks across segments; a segment
// is matched with one backtrack point per star run, and each distinct pattern segment is tried
// at most once per path segment. A match costs at most O(pattern bytes x path bytes), whatever
// the pattern, and the limits below bound both factors for a job's lists.

#include <bitset>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace docpipe {

// Limits of a job's input.include and input.exclude, checked by parse_job: with them the walk
// spends at most about kMaxGlobPatterns x 2 x kMaxGlobPatternBytes x PATH_MAX steps per entry.
inline constexpr size_t kMaxGlobPatterns = 64;       // per list
inline constexpr size_t kMaxGlobPatternBytes = 512;  // per pattern

class GlobPattern {
 public:
  explicit GlobPattern(std::string_view pattern);

  bool match(std::string_view path) const;
  // For pruning a walk at folder `dir` (relative, no trailing '/'):
  // true if some path below dir could match (include: otherwise skip the folder) ...
  bool may_match_under(std::string_view dir) const;
  // ... and true if every path below dir matches (exclude "drafts/**": skip the folder).
  bool matches_all_under(std::string_view dir) const;

 private:
  // One pattern segment other than "**", as a list of tokens.
  struct Token {
    enum Kind : unsigned char { kLiteral, kAny, kClass, kStar } kind;
    unsigned char c = 0;  // kLiteral
    size_t cls = 0;       // kClass: index into classes_
  };
  struct Matcher {
    std::vector<Token> tokens;
    bool literal_only = false;  // compare as a string
    bool any = false;           // stars only: every name matches
    std::string text;           // literal_only: the name
  };

  class Run;
  bool segment_matches(size_t matcher, std::string_view name) const;

  // Each segment: kGlobstar or an index into matchers_ (equal segments share one matcher).
  static constexpr size_t kGlobstar = static_cast<size_t>(-1);
  std::vector<size_t> segments_;
  std::vector<Matcher> matchers_;
  std::vector<std::bitset<256>> classes_;
};

// A job's include and exclude lists, compiled once for a whole walk.
class GlobSet {
 public:
  GlobSet(const std::vector<std::string>& include, const std::vector<std::string>& exclude);
  // A file at `rel` is taken: some include matches and no exclude does.
  bool selected(std::string_view rel) const;
  // The folder at `rel` is worth opening: no exclude covers all below it and an include may match.
  bool should_descend(std::string_view rel) const;

 private:
  std::vector<GlobPattern> include_;
  std::vector<GlobPattern> exclude_;
};

// One-off forms (each compiles the pattern).
bool glob_match(std::string_view pattern, std::string_view path);
bool glob_may_match_under(std::string_view pattern, std::string_view dir);
bool glob_matches_all_under(std::string_view pattern, std::string_view dir);

}  // namespace docpipe
