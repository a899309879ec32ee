#pragma once
// A job's transforms run in order on each document: the output of step i feeds step i+1.

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/transform.h"

namespace docpipe {

// Transforms get their input in pieces of at most this size, both from the pipeline and from the
// step before them in a chain, so that no single update() can produce more than a bounded
// multiple of it (a decompressor: its ratio limit times a piece).
inline constexpr size_t kPieceBytes = 64u << 10;

class TransformChain {
 public:
  TransformChain() = default;
  explicit TransformChain(std::vector<std::shared_ptr<const TransformStep>> steps);

  // Runs the chain over one document, chunk by chunk. Not thread-safe; one per document.
  // Receives the chain's output as it is produced, in pieces of at most about
  // kMaxCallOutputBytes, so that the caller can write it away before more comes.
  using Sink = std::function<Status(std::string_view)>;

  class Run {
   public:
    Status update(std::string_view in, const Sink& sink);
    Status finish(const Sink& sink);
    // The same, appending all output to `out` (for callers that hold the document anyway).
    Status update(std::string_view in, std::string& out);
    Status finish(std::string& out);
    // The steps' metadata() merged into one JSON object's text (a later step's keys win), or
    // empty when no step has any. Asked after finish().
    std::string metadata() const;

   private:
    friend class TransformChain;
    Status feed(size_t step, std::string_view data, const Sink& sink);
    Status pass_on(size_t step, std::string_view data, const Sink& sink);
    std::vector<std::unique_ptr<DocumentTransform>> transforms_;
    std::vector<std::string> scratch_;  // one per step, so no step reads what it writes
  };

  Run begin(const DocumentContext& doc) const;
  bool empty() const { return steps_.empty(); }
  size_t size() const { return steps_.size(); }
  // The external commands its steps run (TransformStep::commands), each once.
  std::vector<std::string> commands() const;

 private:
  std::vector<std::shared_ptr<const TransformStep>> steps_;
};

}  // namespace docpipe
