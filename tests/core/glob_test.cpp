// Glob semantics for include/exclude (core/glob.h), and the pruning questions the walker asks.

#include "core/glob.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/field_error.h"
#include "core/job_spec.h"

using docpipe::glob_match;
using docpipe::glob_matches_all_under;
using docpipe::glob_may_match_under;
using docpipe::GlobPattern;
using docpipe::GlobSet;

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

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

TEST_CASE("glob: hostile patterns against long paths stay within a time bound") {
  std::string deep;  // 200 segments
  for (int i = 0; i < 199; ++i) deep += "seg/";
  deep += "a";
  const GlobPattern globstars("**/**/**/**/**/**/**/**/a");
  const GlobPattern globstars_miss("**/**/**/**/**/**/**/**/b");
  const std::string as(100000, 'a');
  const GlobPattern stars("*a*a*a*a*a*a*b");
  const GlobPattern stars_hit("*a*a*a*a*a*a*a");
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 200; ++i) {
    CHECK(globstars.match(deep));
    CHECK_FALSE(globstars_miss.match(deep));
  }
  CHECK_FALSE(stars.match(as));
  CHECK(stars_hit.match(as));
  CHECK(seconds_since(start) < 2.0);
}

TEST_CASE("glob: a full list of the longest hostile excludes costs what one copy of it costs") {
  // kMaxGlobPatterns excludes of up to kMaxGlobPatternBytes, each repeating one star-heavy segment
  // behind "**" that matches every folder name of the path: all copies are live at once, so a
  // matcher that tries each copy on each path segment (instead of each distinct segment once)
  // does `copies` times the work of a pattern holding the segment once.
  const std::string chunk = "**/*a*a*a*a*a*a*a*a*a*a*a*a*a*a*?a/";
  auto excludes = [&](size_t copies) {
    std::vector<std::string> out;
    for (size_t i = 0; i < docpipe::kMaxGlobPatterns; ++i) {
      std::string p = "**/";
      for (size_t c = 0; c < copies; ++c) p += chunk;
      p += "x" + std::to_string(i);
      REQUIRE(p.size() <= docpipe::kMaxGlobPatternBytes);
      out.push_back(p);
    }
    return out;
  };
  const size_t copies = (docpipe::kMaxGlobPatternBytes - 8) / chunk.size();
  REQUIRE(copies >= 12);
  const GlobSet many({"**"}, excludes(copies));
  const GlobSet one({"**"}, excludes(1));
  std::string path;  // 200 folders of 60 a's: every copy matches each of them
  for (int i = 0; i < 200; ++i) path += std::string(60, 'a') + "/";
  path += "file";
  auto time_of = [&](const GlobSet& set) {
    double best = 1e9;
    for (int round = 0; round < 3; ++round) {
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < 5; ++i) CHECK(set.selected(path));
      best = std::min(best, seconds_since(start));
    }
    return best;
  };
  const double t_one = time_of(one);
  const double t_many = time_of(many);
  INFO("one copy " << t_one << " s, " << copies << " copies " << t_many << " s");
  CHECK(t_many < 4 * t_one);
  CHECK(t_many < 10.0);
}

TEST_CASE("glob: a compiled set selects files and prunes folders as the one-off forms do") {
  const GlobSet set({"docs/**/*.md", "*.txt"}, {"docs/drafts/**", "**/skip.md"});
  CHECK(set.selected("docs/a.md"));
  CHECK(set.selected("docs/x/y/b.md"));
  CHECK(set.selected("top.txt"));
  CHECK_FALSE(set.selected("docs/drafts/a.md"));
  CHECK_FALSE(set.selected("docs/x/skip.md"));
  CHECK_FALSE(set.selected("src/a.md"));
  CHECK(set.should_descend("docs"));
  CHECK(set.should_descend("docs/x"));
  CHECK_FALSE(set.should_descend("docs/drafts"));
  CHECK_FALSE(set.should_descend("src"));
  // One pattern segment repeated shares one matcher, and still counts once per position.
  CHECK(GlobPattern("*.md/*.md").match("a.md/b.md"));
  CHECK_FALSE(GlobPattern("*.md/*.md").match("a.md"));
}

TEST_CASE("glob: job validation limits the number and length of include and exclude patterns") {
  auto errors_of = [](const nlohmann::json& input) {
    nlohmann::json job = {{"input", input}, {"output", {{"dir", "/out"}}}};
    docpipe::FieldErrors errors;
    docpipe::JobParseOptions options{"j", "/base", nullptr};
    CHECK_FALSE(docpipe::parse_job(job.dump(), options, errors).has_value());
    std::vector<std::string> out;
    for (const auto& e : errors) out.push_back(e.path + ": " + e.reason);
    return out;
  };
  std::vector<std::string> many(docpipe::kMaxGlobPatterns + 1, "*.md");
  CHECK(errors_of({{"dir", "/in"}, {"exclude", many}}) ==
        std::vector<std::string>{"input.exclude: at most 64 glob patterns, got 65"});
  CHECK(errors_of({{"dir", "/in"}, {"include", many}}) ==
        std::vector<std::string>{"input.include: at most 64 glob patterns, got 65"});
  const std::string longest(docpipe::kMaxGlobPatternBytes, 'a');
  CHECK(errors_of({{"dir", "/in"}, {"include", {longest, longest + "b"}}, {"exclude", many}}) ==
        std::vector<std::string>{"input.include[1]: glob pattern of 513 bytes, at most 512",
                                 "input.exclude: at most 64 glob patterns, got 65"});
  // At the limits, the job is valid.
  docpipe::FieldErrors errors;
  nlohmann::json ok = {{"input",
                        {{"dir", "/in"},
                         {"include", {longest}},
                         {"exclude", std::vector<std::string>(docpipe::kMaxGlobPatterns, "*.md")}}},
                       {"output", {{"dir", "/out"}}}};
  CHECK(docpipe::parse_job(ok.dump(), docpipe::JobParseOptions{"j", "/base", nullptr}, errors)
            .has_value());
  CHECK(errors.empty());
}
