// template: both the template text (a job's parameter) and the document come from the input,
// split at the first NUL byte: "TEMPLATE\0DOCUMENT". The first byte picks escape_html. A template
// the transform refuses is a validation error, which is fine; a crash is a finding.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace docpipe;
  static const TransformInfo* info = TransformRegistry::instance().find("template");
  if (info == nullptr) std::abort();
  const uint8_t flags = fuzz::take_flags(data, size);
  const char* text = reinterpret_cast<const char*>(data);
  const void* nul = std::memchr(text, '\0', size);
  const size_t split = nul != nullptr ? static_cast<const char*>(nul) - text : size;
  nlohmann::json params;
  params["template"] = std::string(text, split);
  params["escape_html"] = (flags & 1) != 0;
  FieldErrors errors;
  std::shared_ptr<const TransformStep> step = info->configure(params, TransformEnv{}, errors);
  if (step == nullptr) return 0;  // refused with errors: the contract for a bad template
  const std::string_view doc =
      split < size ? std::string_view(text + split + 1, size - split - 1) : std::string_view();
  fuzz::run_document(*step, doc);
  return 0;
}
