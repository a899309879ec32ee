#pragma once
// Hostile inputs and the cap that keeps probing them safe, shared by the unit and e2e tests of
// isolated transforms.

#include <sys/resource.h>

#include <algorithm>
#include <string>

namespace docpipe::test {

// Caps this process's address space while hostile documents run (children, such as a daemon
// started by an e2e test, inherit it), so that a worker whose own limit failed could not take
// the machine; a worker lowers its limit from there.
// AddressSanitizer reserves terabytes of shadow address space, so under it the cap is left off
// (the tests that assert a memory limit do not run in that build: scripts/test).
#if defined(__SANITIZE_ADDRESS__)
#define DOCPIPE_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DOCPIPE_TEST_ASAN 1
#endif
#endif
class AddressSpaceCap {
 public:
  explicit AddressSpaceCap([[maybe_unused]] rlim_t bytes) {
#ifndef DOCPIPE_TEST_ASAN
    ::getrlimit(RLIMIT_AS, &old_);
    rlimit cap{std::min(bytes, old_.rlim_max), old_.rlim_max};
    ::setrlimit(RLIMIT_AS, &cap);
#endif
  }
  ~AddressSpaceCap() {
#ifndef DOCPIPE_TEST_ASAN
    ::setrlimit(RLIMIT_AS, &old_);
#endif
  }
  AddressSpaceCap(const AddressSpaceCap&) = delete;
  AddressSpaceCap& operator=(const AddressSpaceCap&) = delete;

 private:
  rlimit old_{};
};

// cmark-gfm 0.29's quadratic shapes (no fixes for CVE-2023-22483..22486 in Debian 12).
// A header of `columns` cells and `rows` one-cell rows, each padded to the header's width: about
// 250 bytes of memory per cell. With 20,000 columns the header alone takes 15 s of CPU.
inline std::string wide_table(int columns, int rows) {
  std::string header, rule;
  for (int i = 0; i < columns; ++i) {
    header += "|a";
    rule += "|-";
  }
  std::string text = header + "|\n" + rule + "|\n";
  for (int i = 0; i < rows; ++i) text += "a\n";
  return text;
}

// `depth` nested block quotes around `depth` emphasis openers: 16 s of CPU at depth 15,000, in
// little memory.
inline std::string nested_quotes(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += "> ";
  for (int i = 0; i < depth; ++i) s += "*a";
  return s + "\n";
}

}  // namespace docpipe::test
