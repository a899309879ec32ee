// pdf.text over arbitrary bytes (poppler's parser and text extraction, and what pdf.text does
// with its reports), on_damage and a page range drawn from the first byte. libFuzzer's -timeout
// and -rss_limit_mb turn slow or growing shapes into findings.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace docpipe;
  static const auto strict = fuzz::make_step("pdf.text", nlohmann::json::object());
  static const auto lenient = fuzz::make_step(
      "pdf.text", {{"on_damage", "text"}, {"first_page", 2}, {"page_separator", "<page>"}});
  const uint8_t flags = fuzz::take_flags(data, size);
  const std::string_view doc(reinterpret_cast<const char*>(data), size);
  fuzz::run_document(flags & 1 ? *lenient : *strict, doc);
  return 0;
}
