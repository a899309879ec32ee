// Glob semantics for include/exclude (core/glob.h), and the pruning questions the walker asks.

#include "core/glob.h"

#include <doctest/doctest.h>

#include <string>

using docpipe::glob_match;
using docpipe::glob_matches_all_under;
using docpipe::glob_may_match_under;

namespace {

struct Case {
  const char* pattern;
  const char* path;
  bool expected;
};

}  // namespace

TEST_CASE("glob: matches the documented semantics") {
  const Case cases[] = {
      // `*` and `?` stay within one segment.
      {"*.md", "a.md", true},
      {"*.md", "x/a.md", false},
      {"*", "abc", true},
      {"*", "a/b", false},
      {"a*b", "ab", true},
      {"a*b", "a/b", false},
      {"a**b", "axxb", true},  // "**" inside a segment is a plain star
      {"a**b", "ax/xb", false},
      {"?.md", "a.md", true},
      {"?.md", "ab.md", false},
      {"a?b", "a/b", false},
      {"docs/*.md", "docs/a.md", true},
      {"docs/*.md", "docs/sub/a.md", false},
      {"a/*/c", "a/b/c", true},
      {"a/*/c", "a/b/x/c", false},
      // `**` as a whole segment: zero or more segments.
      {"**/*.md", "a.md", true},
      {"**/*.md", "x/y/a.md", true},
      {"**/*.md", "x/y/a.txt", false},
      {"**", "a", true},
      {"**", "a/b/c", true},
      {"a/**", "a/b", true},
      {"a/**", "a/b/c", true},
      {"a/**", "a", true},
      {"a/**", "b/a", false},
      {"a/**/b", "a/b", true},
      {"a/**/b", "a/x/y/b", true},
      {"a/**/b", "a/x/c", false},
      {"**/drafts/**", "x/drafts/y/z.md", true},
      {"**/drafts/**", "x/draft/y.md", false},
      {"**/**/**/x", "a/b/c/d/x", true},
      {"**/**/**/x", "x", true},
      // Classes and escapes.
      {"[abc].md", "b.md", true},
      {"[abc].md", "d.md", false},
      {"[a-c]x", "bx", true},
      {"[a-c]x", "dx", false},
      {"[!a]x", "bx", true},
      {"[!a]x", "ax", false},
      {"[^a]x", "ax", false},
      {"[]]", "]", true},
      {"[a-]", "-", true},
      {"[*]", "*", true},
      {"[*]", "a", false},
      {"[!/]", "a", true},
      {"a[", "a[", true},  // an unterminated class is literal
      {"a[", "ab", false},
      {"\\*.md", "*.md", true},
      {"\\*.md", "a.md", false},
      {"\\?", "?", true},
      {"[\\]]", "]", true},
      // Names starting with a dot are not special.
      {"*", ".hidden", true},
      {"**/*.md", "a/.b.md", true},
      // Literal segments must match exactly.
      {"a/b", "a/b", true},
      {"a/b", "a/bc", false},
      {"a/b", "a", false},
      {"a", "a/b", false},
      {"", "a", false},
  };
  for (const Case& c : cases) {
    INFO("pattern=" << c.pattern << " path=" << c.path);
    CHECK(glob_match(c.pattern, c.path) == c.expected);
  }
}

TEST_CASE("glob: pathological patterns finish quickly") {
  std::string deep;
  for (int i = 0; i < 300; ++i) deep += "d/";
  deep += "file.md";
  std::string pattern;
  for (int i = 0; i < 40; ++i) pattern += "**/";
  CHECK(glob_match(pattern + "*.md", deep));
  CHECK_FALSE(glob_match(pattern + "*.txt", deep));

  std::string as(5000, 'a');
  CHECK_FALSE(glob_match("*a*a*a*a*a*a*a*a*a*b", as));
  CHECK(glob_match("*a*a*a*a*a*a*a*a*a*a", as));
}

TEST_CASE("glob: may_match_under tells whether a folder can hold a match") {
  const Case cases[] = {
      {"**/*.md", "x", true},
      {"**/*.md", "x/y/z", true},
      {"**", "", true},
      {"*.md", "", true},
      {"*.md", "x", false},
      {"docs/*.md", "docs", true},
      {"docs/*.md", "src", false},
      {"docs/*.md", "docs/sub", false},
      {"a/b/c", "a", true},
      {"a/b/c", "a/b", true},
      {"a/b", "a/b", false},  // the folder itself is not below itself
      {"a/**", "a", true},
      {"a/**", "a/b/c", true},
      {"a/**", "b", false},
      {"[ab]/*.md", "b", true},
      {"[ab]/*.md", "c", false},
  };
  for (const Case& c : cases) {
    INFO("pattern=" << c.pattern << " dir=" << c.path);
    CHECK(glob_may_match_under(c.pattern, c.path) == c.expected);
  }
}

TEST_CASE("glob: matches_all_under tells whether everything below a folder matches") {
  const Case cases[] = {
      {"drafts/**", "drafts", true},
      {"drafts/**", "drafts/x", true},
      {"drafts/**", "other", false},
      {"**", "x", true},
      {"**", "", true},
      {"drafts/*", "drafts", false},  // misses drafts/x/y
      {"**/tmp/**", "a/tmp", true},
      {"**/tmp/**", "a/b", false},
      {"drafts/**/*", "drafts", true},
      {"drafts/*/**", "drafts", true},
      {"drafts/*/*/**", "drafts", false},  // misses drafts/x
      {"drafts/**/*.md", "drafts", false},
      {"*.md", "x", false},
  };
  for (const Case& c : cases) {
    INFO("pattern=" << c.pattern << " dir=" << c.path);
    CHECK(glob_matches_all_under(c.pattern, c.path) == c.expected);
  }
}
