#include "core/transforms/redact_matcher.h"

#include <re2/re2.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/transforms/regex_cache.h"

namespace docpipe {
namespace {

// A practical address: local@domain.tld. The local part is bounded so that a long run of
// letters without an '@' can only start a match in its last 64 bytes.
constexpr const char* kEmail = "[A-Za-z0-9._%+\\-]{1,64}@(?:[A-Za-z0-9\\-]+\\.)+[A-Za-z]{2,}";
// Dotted quad, each octet 0..255 without leading zeros; the context is checked in code.
constexpr const char* kIpv4 =
    "(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}"
    "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
// 13-19 digits with optional single space or dash separators; one digit more than a card can
// have, so that a run too long to be a card is seen as such. Luhn is checked in code.
constexpr const char* kCard = "[0-9](?:[ \\-]?[0-9]){12,19}";

constexpr size_t kMinCardDigits = 13;
constexpr size_t kMaxCardDigits = 19;
// Bytes of context the checks read on each side of a match (a separator and a digit).
constexpr size_t kContext = 2;
// In update(), scan only once this much beyond the hold-back has gathered, so that tiny chunks
// do not rescan the held-back tail over and over.
constexpr size_t kMinBatch = 16 * 1024;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_word(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_card_separator(char c) { return c == ' ' || c == '-'; }

std::shared_ptr<const RE2> compile_alternation(const std::vector<std::string>& patterns,
                                               int64_t max_mem) {
  if (patterns.empty()) return nullptr;
  std::string combined;
  for (const std::string& p : patterns) {
    if (!combined.empty()) combined += '|';
    combined += "(?:" + p + ")";
  }
  return cached_regex(combined, max_mem);
}

// A pattern as JSON text, for messages (at most about 80 bytes of it).
std::string quoted(const std::string& pattern) {
  std::string shown = pattern.size() > 80 ? pattern.substr(0, 77) + "..." : pattern;
  return nlohmann::json(shown).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Digits could be a card only when the text is digits with single space/dash separators.
bool card_shaped(std::string_view t) {
  size_t digits = 0;
  for (char c : t) {
    if (is_digit(c)) {
      ++digits;
    } else if (!is_card_separator(c)) {
      return false;
    }
  }
  return digits >= kMinCardDigits;
}

bool ipv4_shaped(std::string_view t) {
  size_t dots = 0;
  for (char c : t) {
    if (c == '.') {
      ++dots;
    } else if (!is_digit(c)) {
      return false;
    }
  }
  return dots == 3;
}

// Luhn over the first `count` of `digits` (ASCII).
bool luhn_valid(const char* digits, size_t count) {
  int sum = 0;
  bool twice = false;
  for (size_t i = count; i-- > 0;) {
    int d = digits[i] - '0';
    if (twice) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    twice = !twice;
  }
  return sum % 10 == 0;
}

}  // namespace

RedactMatcher::RedactMatcher(RedactConfig config) : config_(std::move(config)) {}
RedactMatcher::~RedactMatcher() = default;

std::shared_ptr<const RedactMatcher> RedactMatcher::create(RedactConfig config,
                                                           FieldErrors& errors) {
  // The main regex is shared by every worker thread; give its DFA cache room so that it does
  // not thrash on inputs with many distinct states.
  constexpr int64_t kMainMaxMem = 32 << 20;
  constexpr int64_t kFallbackMaxMem = 8 << 20;
  size_t errors_before = errors.size();
  config.max_match_bytes = std::max<size_t>(config.max_match_bytes, 64);
  if (config.custom.size() > kMaxCustomPatterns) {
    errors.push_back({"custom", "at most " + std::to_string(kMaxCustomPatterns) +
                                    " custom patterns, got " +
                                    std::to_string(config.custom.size())});
    return nullptr;
  }
  // Each pattern alone, under a small memory limit so that an oversized one (\pL{200}) fails
  // fast instead of compiling for a second; the sum of their sizes bounds the combination.
  int64_t total_size = 0;
  for (size_t i = 0; i < config.custom.size(); ++i) {
    const std::string& pattern = config.custom[i];
    std::string path = "custom[" + std::to_string(i) + "]";
    if (pattern.size() > kMaxCustomPatternBytes) {
      errors.push_back({path, "regular expression of " + std::to_string(pattern.size()) +
                                  " bytes, at most " + std::to_string(kMaxCustomPatternBytes)});
      continue;
    }
    std::shared_ptr<const RE2> re = cached_regex(pattern, kPatternMaxMem);
    if (!re->ok()) {
      if (re->error_code() == RE2::ErrorPatternTooLarge) {
        errors.push_back({path, "regular expression " + quoted(pattern) +
                                    " is too large: it compiles past RE2's limit of " +
                                    std::to_string(kPatternMaxMem >> 20) +
                                    " MiB per custom pattern (large classes such as \\pL "
                                    "repeated with {n} grow fast)"});
      } else {
        errors.push_back({path, "invalid regular expression: " + re->error()});
      }
    } else if (RE2::FullMatch("", *re)) {
      errors.push_back({path, "matches the empty string; a redaction needs at least one byte"});
    } else {
      total_size += re->ProgramSize();
    }
  }
  if (total_size > kMaxCustomProgramSize) {
    errors.push_back({"custom", "the custom patterns together compile to " +
                                    std::to_string(total_size) + " RE2 instructions, at most " +
                                    std::to_string(kMaxCustomProgramSize)});
  }
  if (!config.email && !config.card && !config.ipv4 && config.custom.empty()) {
    errors.push_back({"patterns", "no pattern to redact: patterns and custom are both empty"});
  }
  if (errors.size() != errors_before) return nullptr;

  // Order does not matter for leftmost-longest matching; custom patterns go last.
  std::vector<std::string> all, but_card, but_ipv4;
  auto add = [&](const std::string& p, bool is_card, bool is_ipv4) {
    all.push_back(p);
    if (!is_card) but_card.push_back(p);
    if (!is_ipv4) but_ipv4.push_back(p);
  };
  if (config.email) add(kEmail, false, false);
  if (config.ipv4) add(kIpv4, false, true);
  if (config.card) add(kCard, true, false);
  for (const std::string& p : config.custom) add(p, false, false);

  std::shared_ptr<RedactMatcher> m(new RedactMatcher(std::move(config)));
  m->all_ = compile_alternation(all, kMainMaxMem);
  if (m->config_.card) m->all_but_card_ = compile_alternation(but_card, kFallbackMaxMem);
  if (m->config_.ipv4) m->all_but_ipv4_ = compile_alternation(but_ipv4, kFallbackMaxMem);
  for (const RE2* re : {m->all_.get(), m->all_but_card_.get(), m->all_but_ipv4_.get()}) {
    if (re != nullptr && !re->ok()) {
      // Each pattern compiled alone, so this is the combination outgrowing RE2's memory limit.
      errors.push_back({"custom", "the patterns together are too large for RE2: " + re->error()});
      return nullptr;
    }
  }
  return m;
}

RedactScanner::RedactScanner(std::shared_ptr<const RedactMatcher> matcher)
    : matcher_(std::move(matcher)), config_(matcher_->config()) {}

void RedactScanner::update(std::string_view in, std::string& out) {
  buf_.append(in);
  if (buf_.size() - pos_ >= config_.max_match_bytes + kContext + kMinBatch) scan(false, out);
}

void RedactScanner::finish(std::string& out) {
  scan(true, out);
  buf_.clear();
  pos_ = 0;
}

void RedactScanner::scan(bool at_end, std::string& out) {
  const size_t size = buf_.size();
  const size_t hold = config_.max_match_bytes + kContext;
  // A start position below `limit` is final: every match starting there, and the context its
  // checks read, lies inside the buffer; more input cannot change the decision.
  const size_t limit = at_end ? size + 1 : (size > hold ? size - hold : 0);
  const re2::StringPiece text(buf_.data(), size);
  re2::StringPiece m;
  size_t next = pos_;  // positions before `next` are decided
  while (next < limit) {
    if (!matcher_->all_->Match(text, next, size, RE2::UNANCHORED, &m, 1)) break;
    size_t start = static_cast<size_t>(m.data() - buf_.data());
    if (start >= limit) break;
    Span span = accept(start, start + m.size());
    if (span.end == 0) {
      next = next_after_refused(start, limit);
      continue;
    }
    out.append(buf_, pos_, start - pos_);
    out.append(config_.replacement);
    pos_ = next = span.end;
  }
  // Everything before max(next, limit) is decided and holds no match: write it out.
  size_t decided = std::min(size, std::max(next, limit));
  out.append(buf_, pos_, decided - pos_);
  pos_ = decided;
  if (!at_end) {
    // Keep a little context before pos_ for \b and the card/ipv4 checks.
    size_t keep = std::min(pos_, kContext);
    buf_.erase(0, pos_ - keep);
    pos_ = keep;
  }
}

RedactScanner::Span RedactScanner::accept(size_t start, size_t end) const {
  if (end - start > config_.max_match_bytes) {
    // The longest match here is too long (or runs into the end of the buffer): what counts is
    // the longest one within max_match_bytes.
    Span bounded = longest_at(matcher_->all_.get(), start);
    if (bounded.end == 0) return bounded;
    end = bounded.end;
  }
  if (end == start) return Span{};
  std::string_view t(buf_.data() + start, end - start);
  // Only the card and ipv4 alternatives produce these shapes; anything else came from a pattern
  // that needs no check (email needs an '@').
  if (config_.card && card_shaped(t)) {
    Span card = card_at(start);
    Span other = longest_at(matcher_->all_but_card_.get(), start);
    return card.end > other.end ? card : other;
  }
  if (config_.ipv4 && ipv4_shaped(t)) {
    Span ip = ipv4_at(start);
    Span other = longest_at(matcher_->all_but_ipv4_.get(), start);
    return ip.end > other.end ? ip : other;
  }
  return Span{end};
}

// Where to look on after the match at `start` was refused. Inside a run of digits (joined by
// single separators) no card can start, since it would continue the run, so only the other
// patterns are searched there: one search per run instead of two per digit, which keeps long
// numbers and numeric tables fast.
size_t RedactScanner::next_after_refused(size_t start, size_t limit) const {
  if (!config_.card || !is_digit(buf_[start])) return start + 1;
  const size_t size = buf_.size();
  size_t end = start + 1;
  while (end < size && (is_digit(buf_[end]) || (is_card_separator(buf_[end]) && end + 1 < size &&
                                                is_digit(buf_[end + 1])))) {
    ++end;
  }
  end = std::min(end, limit);
  if (end <= start + 1) return start + 1;
  const RE2* others = matcher_->all_but_card_.get();
  if (others == nullptr) return end;
  const re2::StringPiece text(buf_.data(), size);
  re2::StringPiece m;
  if (others->Match(text, start + 1, size, RE2::UNANCHORED, &m, 1)) {
    const size_t found = static_cast<size_t>(m.data() - buf_.data());
    if (found < end) return found;
  }
  return end;
}

RedactScanner::Span RedactScanner::longest_at(const RE2* re, size_t start) const {
  if (re == nullptr) return Span{};
  const re2::StringPiece text(buf_.data(), buf_.size());
  size_t end = std::min(buf_.size(), start + config_.max_match_bytes);
  re2::StringPiece m;
  if (!re->Match(text, start, end, RE2::ANCHOR_START, &m, 1) || m.empty()) return Span{};
  return Span{start + m.size()};
}

// A card is a whole run of digits joined by single spaces or dashes: 13-19 digits that pass the
// Luhn check. A run that is longer or fails the check is left alone as a whole, so a row of
// numbers never has a Luhn-valid window cut out of it.
RedactScanner::Span RedactScanner::card_at(size_t start) const {
  const size_t size = buf_.size();
  if (start > 0) {
    char before = buf_[start - 1];
    if (is_digit(before)) return Span{};
    if (is_card_separator(before) && start > 1 && is_digit(buf_[start - 2])) return Span{};
  }
  char digits[kMaxCardDigits];
  size_t count = 0;
  size_t i = start;
  while (i < size) {
    char c = buf_[i];
    if (is_digit(c)) {
      if (count == kMaxCardDigits) return Span{};  // the run is too long to be a card
      digits[count++] = c;
      ++i;
    } else if (is_card_separator(c) && count > 0 && i + 1 < size && is_digit(buf_[i + 1])) {
      ++i;
    } else {
      break;
    }
  }
  if (count < kMinCardDigits || !luhn_valid(digits, count)) return Span{};
  return Span{i};
}

// A dotted quad that is not part of a longer number or dotted sequence ("1.2.3.4.5", "v1.2.3.4").
RedactScanner::Span RedactScanner::ipv4_at(size_t start) const {
  const size_t size = buf_.size();
  if (start > 0) {
    char before = buf_[start - 1];
    if (is_word(before)) return Span{};
    if (before == '.' && start > 1 && is_word(buf_[start - 2])) return Span{};
  }
  size_t i = start;
  for (int octet = 0; octet < 4; ++octet) {
    if (octet > 0) {
      if (i >= size || buf_[i] != '.') return Span{};
      ++i;
    }
    size_t first = i;
    int value = 0;
    while (i < size && is_digit(buf_[i]) && i - first < 3) value = value * 10 + (buf_[i++] - '0');
    size_t len = i - first;
    if (len == 0 || value > 255 || (len > 1 && buf_[first] == '0')) return Span{};
  }
  if (i < size) {
    char after = buf_[i];
    if (is_word(after)) return Span{};
    if (after == '.' && i + 1 < size && is_word(buf_[i + 1])) return Span{};
  }
  return Span{i};
}

}  // namespace docpipe
