// office.text over arbitrary bytes (libzip's reader, libxml2's streaming reader and the format
// walks), with tight unpacking limits so that a found bomb is cheap. libFuzzer's -timeout and
// -rss_limit_mb turn slow or growing shapes into findings.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace docpipe;
  static const auto step =
      fuzz::make_step("office.text", {{"max_unpacked_bytes", 16 << 20}, {"max_ratio", 200}});
  const std::string_view doc(reinterpret_cast<const char*>(data), size);
  fuzz::run_document(*step, doc);
  return 0;
}
