#pragma once
// The gzip transform's document state, exposed for its tests (paths taken, buffers held).
//
// A document is held whole while it fits: the first kUnchargedHoldBytes freely, beyond that as
// long as the pipeline lets it charge the bytes (DocumentContext::try_reserve_bytes, in 1 MiB
// steps, input plus libdeflate's output bound) up to kHoldCapBytes. At finish a held document
// goes through libdeflate in one call (faster than zlib at an equal or better ratio). A document
// that outgrows the hold goes on in parallel deflate blocks (ParallelDeflate) over what was
// held and what follows, so memory stays bounded whatever its size. Either way the output is
// one standard gzip member with zlib's header (no name, mtime 0, OS 3).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/transform.h"
#include "core/transforms/deflate_blocks.h"

namespace docpipe {

class ComputePool;

struct GzipOptions {
  // Held without a charge; also how large a document must grow before blocks start (more than
  // a few blocks: below it, parallelism across documents is cheaper).
  size_t uncharged_hold_bytes = 512u << 10;
  size_t hold_cap_bytes = 64u << 20;
  size_t reserve_step_bytes = 1u << 20;
  size_t block_bytes = ParallelDeflate::kDefaultBlockBytes;
  ComputePool* pool = nullptr;     // null: ComputePool::instance()
  bool blocks_from_start = false;  // tests: the block path from the first byte on
};

class GzipTransform : public DocumentTransform {
 public:
  GzipTransform(int level, const DocumentContext& doc, const GzipOptions& options);
  ~GzipTransform() override;
  GzipTransform(const GzipTransform&) = delete;
  GzipTransform& operator=(const GzipTransform&) = delete;

  Status update(std::string_view in, std::string& out) override;
  Status finish(std::string& out) override;
  bool has_more() const override;

  // Test hooks.
  bool in_blocks() const { return blocks_ != nullptr; }
  bool compressed_whole() const { return whole_; }
  size_t reserved_bytes() const { return reserved_; }
  // Bytes of buffers held by this document (not the per-thread compressor states).
  size_t buffer_bytes() const;

 private:
  enum class State { kHolding, kBlocks, kEmitting, kDone };
  bool hold(size_t bytes);
  bool held_left() const { return held_pos_ < held_.size() || !tail_.empty(); }
  Status start_blocks(std::string& out);
  Status drain_held(std::string& out);
  Status compress_whole();
  Status emit_from_start();
  void emit(std::string& out);
  void release_reserved();

  const int level_;
  const GzipOptions options_;
  std::function<bool(size_t)> try_reserve_;
  std::function<void(size_t)> release_;
  State state_ = State::kHolding;
  std::string held_;     // the document so far (kHolding), or what blocks have not taken yet
  size_t held_pos_ = 0;  // kBlocks: how much of held_ the blocks have taken
  std::string tail_;     // kBlocks: the piece that ended the hold, for the blocks after held_
  size_t reserved_ = 0;  // charged through try_reserve_bytes and not given back
  std::unique_ptr<ParallelDeflate> blocks_;
  std::string packed_;      // kEmitting: the whole member, handed out in pieces
  size_t packed_pos_ = 0;   // how much of packed_ is out
  bool finishing_ = false;  // kBlocks: finish() was called
  bool whole_ = false;
};

}  // namespace docpipe
