// text.chunk over arbitrary bytes, its unit, size and overlap drawn from the first byte, the
// document fed in pieces (fuzz_support's run_document). libFuzzer's -timeout and -rss_limit_mb
// turn slow or growing shapes into findings.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace docpipe;
  static const auto chars = fuzz::make_step("text.chunk", {{"size", 16}, {"overlap", 8}});
  static const auto tokens =
      fuzz::make_step("text.chunk", {{"unit", "tokens"}, {"size", 24}, {"overlap", 5}});
  static const auto plain = fuzz::make_step("text.chunk", {{"size", 100}, {"overlap", 0}});
  const uint8_t flags = fuzz::take_flags(data, size);
  const std::string_view doc(reinterpret_cast<const char*>(data), size);
  const TransformStep& step = (flags & 3) == 0 ? *chars : (flags & 3) == 1 ? *tokens : *plain;
  fuzz::run_document(step, doc);
  return 0;
}
