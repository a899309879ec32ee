#pragma once
// Shared by the libFuzzer targets (one binary per tests/fuzz/*_fuzz.cpp, built with
// -DDOCPIPE_FUZZ=ON under clang): runs a registered transform over a document the way the
// pipeline does (in 64 KiB pieces, draining has_more), through the catalog, so a target keeps
// working whichever unit implements the transform.

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/transform.h"
#include "core/transforms/isolated_worker.h"

namespace docpipe::fuzz {

// Configures `op` with `params`; aborts (a fuzz target bug, not a finding) if it is refused.
inline std::shared_ptr<const TransformStep> make_step(std::string_view op,
                                                      const nlohmann::json& params) {
  // Isolated transforms (markdown.html) run here, in process: a fuzzer cannot serve as their
  // worker, and the finding must be in this process to be seen.
  use_in_process_transforms();
  const TransformInfo* info = TransformRegistry::instance().find(op);
  if (info == nullptr) std::abort();
  FieldErrors errors;
  std::shared_ptr<const TransformStep> step = info->configure(params, TransformEnv{}, errors);
  if (step == nullptr || !errors.empty()) std::abort();
  return step;
}

// Runs `input` through `step`. Errors are fine (a clear error is the contract for bad input);
// crashes, sanitizer reports, hangs and memory blow-ups are findings.
inline void run_document(const TransformStep& step, std::string_view input) {
  constexpr size_t kPiece = 64u << 10;
  std::unique_ptr<DocumentTransform> t = step.begin(DocumentContext{"dir/doc.md", "doc.md"});
  std::string out;
  auto drain = [&](Status st, bool finishing) {
    while (st && t->has_more()) st = finishing ? t->finish(out) : t->update({}, out);
    return st;
  };
  for (size_t at = 0; at < input.size(); at += kPiece) {
    if (!drain(t->update(input.substr(at, kPiece), out), false)) return;
  }
  (void)drain(t->finish(out), true);
}

// The first byte of the input as a set of flags for the target's boolean parameters; the rest
// is the document.
inline uint8_t take_flags(const uint8_t*& data, size_t& size) {
  if (size == 0) return 0;
  uint8_t flags = data[0];
  ++data;
  --size;
  return flags;
}

}  // namespace docpipe::fuzz
