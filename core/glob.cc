#include "core/glob.h"

#include <algorithm>
#include <vector>

namespace docpipe {
namespace {

// Matching works on '/'-separated segments: a pattern segment other than "**" matches exactly one
// path segment, "**" matches any number of them. The segment level is an NFA simulated with a
// set of pattern positions, so "**/**/**" costs O(pattern x path) with no backtracking blow-up.

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

// Does the class p[begin, end) (including its brackets) match c?
bool class_matches(std::string_view p, size_t begin, size_t end, char c) {
  size_t j = begin + 1;
  bool negate = false;
  if (p[j] == '!' || p[j] == '^') {
    negate = true;
    ++j;
  }
  bool found = false;
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
    if (static_cast<unsigned char>(lo) <= static_cast<unsigned char>(c) &&
        static_cast<unsigned char>(c) <= static_cast<unsigned char>(hi)) {
      found = true;
    }
  }
  return found != negate;
}

// Matches one pattern segment against one path segment (neither contains a separator). The
// classic greedy algorithm with one backtrack point is exact for a single kind of star.
bool segment_match(std::string_view p, std::string_view s) {
  size_t pi = 0, si = 0;
  size_t star_p = std::string_view::npos, star_s = 0;
  while (si < s.size()) {
    if (pi < p.size()) {
      char pc = p[pi];
      if (pc == '*') {
        while (pi < p.size() && p[pi] == '*') ++pi;
        star_p = pi;
        star_s = si;
        continue;
      }
      if (pc == '?') {
        ++pi;
        ++si;
        continue;
      }
      if (pc == '[') {
        size_t end = class_end(p, pi);
        if (end != std::string_view::npos) {
          if (class_matches(p, pi, end, s[si])) {
            pi = end;
            ++si;
            continue;
          }
        } else if (s[si] == '[') {
          ++pi;
          ++si;
          continue;
        }
      } else {
        size_t lit = pi;
        if (pc == '\\' && pi + 1 < p.size()) ++lit;
        if (p[lit] == s[si]) {
          pi = lit + 1;
          ++si;
          continue;
        }
      }
    }
    if (star_p == std::string_view::npos) return false;
    pi = star_p;
    si = ++star_s;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
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

bool is_globstar(std::string_view seg) { return seg == "**"; }

// A segment pattern that every name matches: one or more '*' only.
bool matches_any_segment(std::string_view seg) {
  return !seg.empty() && seg.find_first_not_of('*') == std::string_view::npos;
}

// The pattern positions reachable after consuming `path`: states[j] means segs[0, j) can match
// the segments consumed. A "**" at j may also consume nothing, hence the closure.
class SegmentNfa {
 public:
  explicit SegmentNfa(std::string_view pattern)
      : segs_(split_pattern(pattern)), states_(segs_.size() + 1, 0), next_(states_.size()) {
    states_[0] = 1;
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

  bool accepts() const { return states_.back() != 0; }

  // Some live state still has pattern left, so one or more further segments could match.
  bool may_continue() const {
    for (size_t j = 0; j < segs_.size(); ++j) {
      if (states_[j]) return true;
    }
    return false;
  }

  // From some live state, the rest of the pattern matches every sequence of one or more segments:
  // it holds a "**" and at most one match-anything segment besides "**"s.
  bool accepts_every_continuation() const {
    for (size_t j = 0; j < segs_.size(); ++j) {
      if (!states_[j]) continue;
      bool globstar = false;
      size_t singles = 0;
      bool all_any = true;
      for (size_t k = j; k < segs_.size() && all_any; ++k) {
        if (is_globstar(segs_[k])) {
          globstar = true;
        } else if (matches_any_segment(segs_[k])) {
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
  bool step(std::string_view seg) {
    std::fill(next_.begin(), next_.end(), 0);
    bool any = false;
    for (size_t j = 0; j < segs_.size(); ++j) {
      if (!states_[j]) continue;
      if (is_globstar(segs_[j])) {
        next_[j] = 1;
        any = true;
      } else if (segment_match(segs_[j], seg)) {
        next_[j + 1] = 1;
        any = true;
      }
    }
    states_.swap(next_);
    close();
    return any;
  }

  void close() {
    for (size_t j = 0; j < segs_.size(); ++j) {
      if (states_[j] && is_globstar(segs_[j])) states_[j + 1] = 1;
    }
  }

  std::vector<std::string_view> segs_;
  std::vector<char> states_;
  std::vector<char> next_;
};

}  // namespace

bool glob_match(std::string_view pattern, std::string_view path) {
  SegmentNfa nfa(pattern);
  nfa.consume(path);
  return nfa.accepts();
}

bool glob_may_match_under(std::string_view pattern, std::string_view dir) {
  SegmentNfa nfa(pattern);
  nfa.consume(dir);
  return nfa.may_continue();
}

bool glob_matches_all_under(std::string_view pattern, std::string_view dir) {
  SegmentNfa nfa(pattern);
  nfa.consume(dir);
  return nfa.accepts_every_continuation();
}

}  // namespace docpipe
