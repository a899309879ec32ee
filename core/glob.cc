#include "core/glob.h"

#include <algorithm>
#include <unordered_map>

namespace docpipe {
namespace {

// Index just past the `]` closing the class that opens at p[i] == '[', or npos if unterminated
// (an unterminated '[' is a literal). A ']' right after "[" or "[!" is a member, not the end.
size_t class_end(std::string_view p, size_t i) {
  size_t j = i + 1;
  if (j < p.size() && (p[j] == '!' || p[j] == '^')) ++j;
  if (j < p.size() && p[j] == ']') ++j;
  while (j < p.size() && p[j] != ']') {
    if (p[j] == '\\' && j + 1 < p.size()) ++j;
    ++j;
  }
  return j < p.size() ? j + 1 : std::string_view::npos;
}

// The members of the class p[begin, end) (including its brackets).
std::bitset<256> class_members(std::string_view p, size_t begin, size_t end) {
  std::bitset<256> set;
  size_t j = begin + 1;
  bool negate = false;
  if (p[j] == '!' || p[j] == '^') {
    negate = true;
    ++j;
  }
  const size_t last = end - 1;  // the closing ']'
  while (j < last) {
    char lo = p[j];
    if (lo == '\\' && j + 1 < last) lo = p[++j];
    ++j;
    char hi = lo;
    if (j + 1 < last && p[j] == '-') {
      hi = p[j + 1];
      j += 2;
      if (hi == '\\' && j < last) hi = p[j++];
    }
    for (unsigned c = static_cast<unsigned char>(lo); c <= static_cast<unsigned char>(hi); ++c) {
      set.set(c);
    }
  }
  if (negate) set.flip();
  return set;
}

// Splits on '/' outside classes and escapes.
std::vector<std::string_view> split_pattern(std::string_view p) {
  std::vector<std::string_view> out;
  size_t start = 0, i = 0;
  while (i < p.size()) {
    if (p[i] == '\\') {
      i += 2;
    } else if (p[i] == '[') {
      size_t end = class_end(p, i);
      i = end == std::string_view::npos ? i + 1 : end;
    } else if (p[i] == '/') {
      out.push_back(p.substr(start, i - start));
      start = ++i;
    } else {
      ++i;
    }
  }
  out.push_back(p.substr(start, std::min(i, p.size()) - start));
  return out;
}

}  // namespace

GlobPattern::GlobPattern(std::string_view pattern) {
  std::unordered_map<std::string_view, size_t> seen;
  for (std::string_view seg : split_pattern(pattern)) {
    if (seg == "**") {
      segments_.push_back(kGlobstar);
      continue;
    }
    auto [it, added] = seen.try_emplace(seg, matchers_.size());
    segments_.push_back(it->second);
    if (!added) continue;
    Matcher m;
    for (size_t i = 0; i < seg.size();) {
      const char c = seg[i];
      if (c == '*') {
        // A run of stars is one star (within a segment "**" is a plain star).
        if (m.tokens.empty() || m.tokens.back().kind != Token::kStar) {
          m.tokens.push_back(Token{Token::kStar});
        }
        ++i;
      } else if (c == '?') {
        m.tokens.push_back(Token{Token::kAny});
        ++i;
      } else if (c == '[' && class_end(seg, i) != std::string_view::npos) {
        const size_t end = class_end(seg, i);
        classes_.push_back(class_members(seg, i, end));
        m.tokens.push_back(Token{Token::kClass, 0, classes_.size() - 1});
        i = end;
      } else {
        size_t lit = i;
        if (c == '\\' && i + 1 < seg.size()) ++lit;
        m.tokens.push_back(Token{Token::kLiteral, static_cast<unsigned char>(seg[lit])});
        i = lit + 1;
      }
    }
    m.literal_only = std::all_of(m.tokens.begin(), m.tokens.end(),
                                 [](const Token& t) { return t.kind == Token::kLiteral; });
    m.any = !m.tokens.empty() && m.tokens.size() == 1 && m.tokens[0].kind == Token::kStar;
    if (m.literal_only) {
      for (const Token& t : m.tokens) m.text.push_back(static_cast<char>(t.c));
    }
    matchers_.push_back(std::move(m));
  }
}

// Matches one pattern segment against one name (neither contains a separator). The classic
// greedy algorithm with one backtrack point is exact for a single kind of star, and costs at
// most O(tokens x name).
bool GlobPattern::segment_matches(size_t matcher, std::string_view s) const {
  const Matcher& m = matchers_[matcher];
  if (m.literal_only) return s == m.text;
  if (m.any) return true;
  const std::vector<Token>& toks = m.tokens;
  size_t ti = 0, si = 0;
  size_t star_t = std::string_view::npos, star_s = 0;
  while (si < s.size()) {
    if (ti < toks.size()) {
      const Token& t = toks[ti];
      if (t.kind == Token::kStar) {
        star_t = ++ti;
        star_s = si;
        continue;
      }
      const unsigned char c = static_cast<unsigned char>(s[si]);
      if (t.kind == Token::kAny || (t.kind == Token::kLiteral && t.c == c) ||
          (t.kind == Token::kClass && classes_[t.cls][c])) {
        ++ti;
        ++si;
        continue;
      }
    }
    if (star_t == std::string_view::npos) return false;
    ti = star_t;
    si = ++star_s;
  }
  while (ti < toks.size() && toks[ti].kind == Token::kStar) ++ti;
  return ti == toks.size();
}

// The pattern positions reachable after consuming a path: live(j) means segments [0, j) can
// match the segments consumed. A "**" at j may also consume nothing, hence the closure. Each
// distinct pattern segment is tried at most once per path segment (memo).
class GlobPattern::Run {
 public:
  explicit Run(const GlobPattern& g) : g_(g) {
    // Per-thread scratch: matching allocates nothing once warmed up, and stays thread-safe.
    thread_local std::vector<char> states, next, memo;
    states_ = &states;
    next_ = &next;
    memo_ = &memo;
    states_->assign(g_.segments_.size() + 1, 0);
    (*states_)[0] = 1;
    close();
  }

  // Consumes every segment of a relative path ("" has none).
  void consume(std::string_view path) {
    size_t start = 0;
    while (!path.empty() && start <= path.size()) {
      size_t slash = path.find('/', start);
      if (slash == std::string_view::npos) slash = path.size();
      if (!step(path.substr(start, slash - start))) return;
      start = slash + 1;
    }
  }

  bool accepts() const { return states_->back() != 0; }

  // Some live state still has pattern left, so one or more further segments could match.
  bool may_continue() const {
    for (size_t j = 0; j < g_.segments_.size(); ++j) {
      if ((*states_)[j]) return true;
    }
    return false;
  }

  // From some live state, the rest of the pattern matches every sequence of one or more segments:
  // it holds a "**" and at most one match-anything segment besides "**"s.
  bool accepts_every_continuation() const {
    const auto& segs = g_.segments_;
    for (size_t j = 0; j < segs.size(); ++j) {
      if (!(*states_)[j]) continue;
      bool globstar = false;
      size_t singles = 0;
      bool all_any = true;
      for (size_t k = j; k < segs.size() && all_any; ++k) {
        if (segs[k] == kGlobstar) {
          globstar = true;
        } else if (g_.matchers_[segs[k]].any) {
          ++singles;
        } else {
          all_any = false;
        }
      }
      if (all_any && globstar && singles <= 1) return true;
    }
    return false;
  }

 private:
  // Returns false once no state is live (nothing further can match).
  bool step(std::string_view name) {
    const auto& segs = g_.segments_;
    std::vector<char>& next = *next_;
    next.assign(states_->size(), 0);
    memo_->assign(g_.matchers_.size(), -1);
    bool any = false;
    for (size_t j = 0; j < segs.size(); ++j) {
      if (!(*states_)[j]) continue;
      if (segs[j] == kGlobstar) {
        next[j] = 1;
        any = true;
        continue;
      }
      char& known = (*memo_)[segs[j]];
      if (known < 0) known = g_.segment_matches(segs[j], name) ? 1 : 0;
      if (known) {
        next[j + 1] = 1;
        any = true;
      }
    }
    states_->swap(next);
    close();
    return any;
  }

  void close() {
    const auto& segs = g_.segments_;
    for (size_t j = 0; j < segs.size(); ++j) {
      if ((*states_)[j] && segs[j] == kGlobstar) (*states_)[j + 1] = 1;
    }
  }

  const GlobPattern& g_;
  std::vector<char>* states_;
  std::vector<char>* next_;
  std::vector<char>* memo_;
};

bool GlobPattern::match(std::string_view path) const {
  Run run(*this);
  run.consume(path);
  return run.accepts();
}

bool GlobPattern::may_match_under(std::string_view dir) const {
  Run run(*this);
  run.consume(dir);
  return run.may_continue();
}

bool GlobPattern::matches_all_under(std::string_view dir) const {
  Run run(*this);
  run.consume(dir);
  return run.accepts_every_continuation();
}

GlobSet::GlobSet(const std::vector<std::string>& include, const std::vector<std::string>& exclude) {
  include_.reserve(include.size());
  for (const std::string& p : include) include_.emplace_back(p);
  exclude_.reserve(exclude.size());
  for (const std::string& p : exclude) exclude_.emplace_back(p);
}

bool GlobSet::selected(std::string_view rel) const {
  bool included = false;
  for (const GlobPattern& p : include_) {
    if (p.match(rel)) {
      included = true;
      break;
    }
  }
  if (!included) return false;
  for (const GlobPattern& p : exclude_) {
    if (p.match(rel)) return false;
  }
  return true;
}

bool GlobSet::should_descend(std::string_view rel) const {
  for (const GlobPattern& p : exclude_) {
    if (p.matches_all_under(rel)) return false;
  }
  for (const GlobPattern& p : include_) {
    if (p.may_match_under(rel)) return true;
  }
  return false;
}

bool glob_match(std::string_view pattern, std::string_view path) {
  return GlobPattern(pattern).match(path);
}

bool glob_may_match_under(std::string_view pattern, std::string_view dir) {
  return GlobPattern(pattern).may_match_under(dir);
}

bool glob_matches_all_under(std::string_view pattern, std::string_view dir) {
  return GlobPattern(pattern).matches_all_under(dir);
}

}  // namespace docpipe
