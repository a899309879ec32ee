#pragma once
// Raw deflate of a long input in independent blocks compressed in parallel, the way pigz does it
// (pigz.c, compress_thread): each block is primed with the previous 32 KiB of input as its
// dictionary (deflateSetDictionary), so the ratio stays within a fraction of a percent of one
// stream's; each ends in a sync flush (an empty stored block) that leaves it on a byte boundary,
// and the last one in Z_FINISH, so the blocks' outputs concatenate into one deflate stream.
// Each block's CRC-32 is computed with it and combined in order (crc32_combine).
//
// Blocks run on the ComputePool and on the calling thread (caller-runs). At most
// window(pool size) blocks are in flight, so memory stays at a fixed few MiB whatever the
// input's size. The output is the same bytes whatever ran where: every block starts from a
// reset stream with the same level, dictionary and input.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace docpipe {

class ComputePool;
class DeflateBlock;

class ParallelDeflate {
 public:
  // 128 KiB, as pigz: large enough that the sync markers (~4 bytes) and the dictionary's cost
  // vanish, small enough that two cores get work from a few MiB on.
  static constexpr size_t kDefaultBlockBytes = 128u << 10;

  // Blocks in flight for a pool of `pool_threads`: 4 per thread + 2. With 2 per thread + 1, the
  // window drained while the caller refilled it, and a 512 MiB document used 1.81 of 2 cores
  // (0.86-0.89 x pigz -p2); with this one, 0.99 (issue 12). ~300 KiB per block slot.
  static constexpr size_t window(size_t pool_threads) { return 4 * pool_threads + 2; }

  ParallelDeflate(int level, ComputePool& pool, size_t block_bytes = kDefaultBlockBytes);
  // Cancels blocks no thread has taken and waits for those running, before the buffers go.
  ~ParallelDeflate();
  ParallelDeflate(const ParallelDeflate&) = delete;
  ParallelDeflate& operator=(const ParallelDeflate&) = delete;

  // Takes all of `in`, queueing each block as it fills, and appends the raw deflate output of
  // finished blocks, in order, to `out`. Output per call: about what `in` compresses to plus a
  // block.
  Status write(std::string_view in, std::string& out);
  // Ends the stream: queues the last block (Z_FINISH), then appends finished blocks in order
  // until all are out (done()) or `out` grew by `out_limit` bytes; call again until done().
  Status finish(std::string& out, size_t out_limit);
  bool done() const { return done_; }

  uint32_t crc32() const { return crc_; }          // of all input, once done()
  uint64_t bytes_in() const { return bytes_in_; }  // all input taken so far
  // Bytes of buffers this object holds (tests: the memory bound).
  size_t buffer_bytes() const;
  size_t max_in_flight() const { return slots_.size(); }

 private:
  Status submit(bool last, std::string& out);
  Status collect_oldest(std::string& out);
  void assist(DeflateBlock& oldest);

  const int level_;
  const size_t block_bytes_;
  ComputePool& pool_;
  std::vector<std::shared_ptr<DeflateBlock>> slots_;  // a ring: blocks in flight, oldest first
  size_t head_ = 0;                                   // the oldest block in flight
  size_t count_ = 0;                                  // blocks in flight
  std::string fill_;      // the next block: dictionary, then input as it comes
  size_t fill_dict_ = 0;  // dictionary bytes at the front of fill_
  uint32_t crc_ = 0;      // of the input of the blocks collected so far
  uint64_t bytes_in_ = 0;
  bool last_queued_ = false;
  bool done_ = false;
};

}  // namespace docpipe
