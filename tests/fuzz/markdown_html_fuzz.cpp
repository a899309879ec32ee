// markdown.html over arbitrary documents, with its options drawn from the first byte. cmark-gfm
// 0.29 has known quadratic shapes (issue 9, item 7): libFuzzer's -timeout and -rss_limit_mb turn
// those into findings here, bounded by the document sizes -max_len allows.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace docpipe;
  static const auto plain = fuzz::make_step("markdown.html", nlohmann::json::object());
  static const auto all = fuzz::make_step(
      "markdown.html", {{"unsafe_html", true}, {"smart", true}, {"hardbreaks", true}});
  const uint8_t flags = fuzz::take_flags(data, size);
  const std::string_view doc(reinterpret_cast<const char*>(data), size);
  fuzz::run_document(flags & 1 ? *all : *plain, doc);
  return 0;
}
