#pragma once
// The engine behind the `redact` transform: the built-in patterns (email, card, ipv4) and custom
// ones combined into a single RE2, and a streaming scanner whose output does not depend on how a
// document is cut into chunks.
//
// Semantics, identical for a whole document and for any chunking: scanning left to right, the
// next redaction starts at the leftmost position s where an acceptable match of at most
// max_match_bytes starts; among the matches at s the longest is taken (leftmost-longest, POSIX).
// Matches of the card and ipv4 alternatives are checked in code (a whole digit run passing Luhn,
// octet ranges, no longer number or dotted sequence around the quad), and empty matches are never
// redacted. Because a match and the context its checks read span at most max_match_bytes + 2 bytes,
// the scanner only has to hold back that much between chunks.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/field_error.h"
#include "core/transforms/regex_cache.h"

namespace re2 {
class RE2;
}

namespace docpipe {

// Bounds on a job's custom patterns, so that validating and compiling them stays cheap (a custom
// pattern is compiled alone when the job is validated, then within the combined expressions).
inline constexpr size_t kMaxCustomPatterns = 32;
inline constexpr size_t kMaxCustomPatternBytes = 1024;
// RE2 memory for one custom pattern compiled alone: about 60,000 instructions (\pL{50}); a
// larger pattern fails to compile in ~0.02 s instead of compiling for up to seconds.
inline constexpr int64_t kPatternMaxMem = int64_t{1} << 20;
// The custom patterns' instructions together, which bounds the combined expressions.
inline constexpr int64_t kMaxCustomProgramSize = 150000;
struct RedactConfig {
  bool email = false;
  bool card = false;
  bool ipv4 = false;
  std::vector<std::string> custom;  // RE2 syntax
  std::string replacement = "[REDACTED]";
  size_t max_match_bytes = 1024;  // at least 64
};

// The compiled patterns of one redact step. Immutable and thread-safe (RE2 is), shared by every
// document of a job.
class RedactMatcher {
 public:
  // Returns nullptr after appending errors for custom patterns that do not compile or match the
  // empty string ("custom[1]: invalid regular expression: missing ): (a"), or when no pattern is
  // enabled at all.
  static std::shared_ptr<const RedactMatcher> create(RedactConfig config, FieldErrors& errors);

  ~RedactMatcher();
  RedactMatcher(const RedactMatcher&) = delete;
  RedactMatcher& operator=(const RedactMatcher&) = delete;

  const RedactConfig& config() const { return config_; }

 private:
  friend class RedactScanner;
  explicit RedactMatcher(RedactConfig config);

  RedactConfig config_;
  // Compiled once per process and shared (core/transforms/regex_cache.h).
  std::shared_ptr<const re2::RE2> all_;  // every enabled pattern
  // The same without card / ipv4: consulted at a position where a card or ipv4 candidate failed
  // its check, since another pattern may still match there. Null when nothing else is enabled.
  std::shared_ptr<const re2::RE2> all_but_card_;
  std::shared_ptr<const re2::RE2> all_but_ipv4_;
};

// Redacts one document, chunk by chunk. Holds back at most max_match_bytes + 2 bytes plus one
// scanning batch between calls, so memory per call is bounded by the chunk, not the document.
class RedactScanner {
 public:
  explicit RedactScanner(std::shared_ptr<const RedactMatcher> matcher);

  void update(std::string_view in, std::string& out);
  void finish(std::string& out);

 private:
  struct Span {
    size_t end = 0;  // 0: no acceptable match
  };
  void scan(bool at_end, std::string& out);
  Span accept(size_t start, size_t end) const;
  Span longest_at(const re2::RE2* re, size_t start) const;
  Span card_at(size_t start) const;
  size_t next_after_refused(size_t start, size_t limit) const;
  Span ipv4_at(size_t start) const;

  std::shared_ptr<const RedactMatcher> matcher_;
  const RedactConfig& config_;
  std::string buf_;  // held-back tail of the previous chunks, then the new chunk
  size_t pos_ = 0;   // everything before this in buf_ has been written out (or is context)
};

}  // namespace docpipe
