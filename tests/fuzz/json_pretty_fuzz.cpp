// json.pretty over arbitrary documents: malformed JSON, deep nesting, odd numbers and strings
// must end in an output or a clear error, never a crash.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace docpipe;
  static const auto step = fuzz::make_step("json.pretty", nlohmann::json::object());
  fuzz::run_document(*step, std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
