// html.text and html.markdown over arbitrary bytes (libxml2's HTML parser, the character set
// prescan and conversion, and both renderers), the mode and a forced charset drawn from the
// first byte. libFuzzer's -timeout and -rss_limit_mb turn slow or growing shapes into findings.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace docpipe;
  static const auto text = fuzz::make_step("html.text", nlohmann::json::object());
  static const auto markdown = fuzz::make_step("html.markdown", nlohmann::json::object());
  static const auto sjis = fuzz::make_step("html.markdown", {{"charset", "shift_jis"}});
  const uint8_t flags = fuzz::take_flags(data, size);
  const std::string_view doc(reinterpret_cast<const char*>(data), size);
  const TransformStep& step = (flags & 3) == 0 ? *text : (flags & 3) == 1 ? *markdown : *sjis;
  fuzz::run_document(step, doc);
  return 0;
}
