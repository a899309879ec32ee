// ocr over arbitrary bytes: leptonica's PNG, JPEG and TIFF readers (headers, multi-page TIFF
// directories) and tesseract on whatever they decode. Pages are capped at 100,000 pixels so that
// a run stays short; the header check that enforces the cap is itself under test. The first byte
// picks the page segmentation mode and a page range.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace docpipe;
  static const auto page = fuzz::make_step("ocr", {{"max_pixels", 100000}});
  static const auto line =
      fuzz::make_step("ocr", {{"max_pixels", 100000}, {"psm", 7}, {"first_page", 2}, {"dpi", 70}});
  const uint8_t flags = fuzz::take_flags(data, size);
  const std::string_view doc(reinterpret_cast<const char*>(data), size);
  fuzz::run_document(flags & 1 ? *line : *page, doc);
  return 0;
}
