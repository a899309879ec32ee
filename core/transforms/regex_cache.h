#pragma once
// Compiled regular expressions, shared by every job in the process: a job resumed after a
// restart, or submitted again, reuses what an earlier one compiled (\pL{50} alone takes ~0.05 s).
// Keyed by the pattern and max_mem (the only option that varies). An RE2 keeps its DFA cache, up
// to its max_mem, for as long as it lives, so the cache is bounded by the sum of max_mem of its
// entries and evicts the least recently used; expressions still in use stay alive with their
// users.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace re2 {
class RE2;
}

namespace docpipe {

// At most this many entries, holding at most this much max_mem (an RE2's DFA cache can grow to
// its max_mem).
inline constexpr size_t kRegexCacheEntries = 64;
inline constexpr int64_t kRegexCacheMaxMem = int64_t{160} << 20;

// The expression for `pattern` compiled with leftmost-longest matching, errors not logged and
// `max_mem`: from the cache, or compiled now (once, however many threads ask at the same time).
// A pattern that does not compile is cached too; check ok() on the result.
std::shared_ptr<const re2::RE2> cached_regex(const std::string& pattern, int64_t max_mem);

// How many regular expressions the process has compiled (for tests: a pattern seen before is
// not compiled again).
uint64_t regex_compilations();

}  // namespace docpipe
