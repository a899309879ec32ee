#include "core/transforms/deflate_blocks.h"

#include <zlib.h>

#include <algorithm>
#include <climits>

#include "core/compute_pool.h"

namespace docpipe {

namespace {

// The dictionary a block is primed with: deflate's whole window.
constexpr size_t kDictBytes = 32u << 10;

// One raw deflate stream per thread, reset for each block: initialising one costs more than
// compressing a small block (it allocates and clears ~256 KiB), and a pool thread or a pipeline
// worker compresses block after block.
class ThreadDeflater {
 public:
  ThreadDeflater() { rc_ = deflateInit2(&zs_, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY); }
  ~ThreadDeflater() {
    if (rc_ == Z_OK) deflateEnd(&zs_);
  }
  ThreadDeflater(const ThreadDeflater&) = delete;
  ThreadDeflater& operator=(const ThreadDeflater&) = delete;

  // Ready for a block at `level`; null if zlib could not allocate its state.
  z_stream* begin(int level) {
    if (rc_ != Z_OK) return nullptr;
    // deflateParams right after deflateReset only changes the configuration (zlib >= 1.2.12;
    // pigz does the same), so every block starts from the same state at its level.
    if (deflateReset(&zs_) != Z_OK || deflateParams(&zs_, level, Z_DEFAULT_STRATEGY) != Z_OK)
      return nullptr;
    return &zs_;
  }

 private:
  z_stream zs_{};
  int rc_ = Z_OK;
};

}  // namespace

// One block: its dictionary and input in, its raw deflate out. Owned by a ParallelDeflate,
// which reuses it; run by whichever thread claims it.
class DeflateBlock : public ComputeTask {
 public:
  int level = 6;
  bool last = false;
  std::string input;  // dictionary (dict_bytes), then the block's input
  size_t dict_bytes = 0;
  std::string output;
  uint32_t crc = 0;
  bool failed = false;

  size_t data_bytes() const { return input.size() - dict_bytes; }
  void free_buffers() {
    std::string().swap(input);
    std::string().swap(output);
  }

 protected:
  void run() override {
    thread_local ThreadDeflater deflater;
    failed = true;
    output.clear();
    const unsigned char* data = reinterpret_cast<const unsigned char*>(input.data());
    crc = static_cast<uint32_t>(crc32_z(0, data + dict_bytes, data_bytes()));
    z_stream* zs = deflater.begin(level);
    if (zs == nullptr) return;
    if (dict_bytes > 0 && deflateSetDictionary(zs, data, static_cast<uInt>(dict_bytes)) != Z_OK)
      return;
    // A block is far below zlib's uInt limit; the bound covers Z_FINISH, a sync flush adds a
    // few bytes, and the loop grows the buffer should it not suffice.
    zs->next_in = const_cast<Bytef*>(data + dict_bytes);
    zs->avail_in = static_cast<uInt>(data_bytes());
    output.resize(deflateBound(zs, data_bytes()) + 16);
    size_t used = 0;
    const int flush = last ? Z_FINISH : Z_SYNC_FLUSH;
    for (;;) {
      if (used == output.size()) output.resize(output.size() * 2);
      zs->next_out = reinterpret_cast<Bytef*>(output.data() + used);
      zs->avail_out = static_cast<uInt>(std::min<size_t>(output.size() - used, UINT_MAX));
      const size_t room = zs->avail_out;
      const int rc = deflate(zs, flush);
      used += room - zs->avail_out;
      if (rc == Z_STREAM_END) break;
      if (rc != Z_OK && rc != Z_BUF_ERROR) return;
      // A sync flush is complete once deflate leaves output room unused.
      if (!last && zs->avail_out != 0 && zs->avail_in == 0) break;
    }
    output.resize(used);
    failed = false;
  }
};

ParallelDeflate::ParallelDeflate(int level, ComputePool& pool, size_t block_bytes)
    : level_(level), block_bytes_(std::max<size_t>(block_bytes, 1)), pool_(pool) {
  slots_.resize(window(pool_.size()));
  for (auto& slot : slots_) slot = std::make_shared<DeflateBlock>();
}

ParallelDeflate::~ParallelDeflate() {
  for (auto& slot : slots_) {
    slot->cancel_or_wait();
    // A queued entry may keep the block object alive a little longer; not its buffers.
    slot->free_buffers();
  }
}

size_t ParallelDeflate::buffer_bytes() const {
  size_t n = fill_.capacity();
  for (const auto& slot : slots_) n += slot->input.capacity() + slot->output.capacity();
  return n;
}

Status ParallelDeflate::write(std::string_view in, std::string& out) {
  if (last_queued_) return make_error(ErrorCode::kInternal, "gzip: data after finish()");
  bytes_in_ += in.size();
  while (!in.empty()) {
    const size_t room = block_bytes_ - (fill_.size() - fill_dict_);
    const size_t n = std::min(room, in.size());
    fill_.append(in.substr(0, n));
    in.remove_prefix(n);
    if (fill_.size() - fill_dict_ == block_bytes_) {
      Status st = submit(false, out);
      if (!st) return st;
    }
  }
  // Hand on what is finished already, in order, without waiting.
  while (count_ > 0 && !slots_[head_]->in_flight()) {
    Status st = collect_oldest(out);
    if (!st) return st;
  }
  return ok();
}

Status ParallelDeflate::finish(std::string& out, size_t out_limit) {
  const size_t start = out.size();
  if (!last_queued_) {
    Status st = submit(true, out);
    if (!st) return st;
    last_queued_ = true;
  }
  while (count_ > 0 && out.size() - start < out_limit) {
    Status st = collect_oldest(out);
    if (!st) return st;
  }
  done_ = count_ == 0;
  return ok();
}

// Queues fill_ as the next block; the one after starts with its last 32 KiB as dictionary.
// The window full, the oldest block goes out first: that is what bounds memory.
Status ParallelDeflate::submit(bool last, std::string& out) {
  if (count_ == slots_.size()) {
    Status st = collect_oldest(out);
    if (!st) return st;
  }
  DeflateBlock& block = *slots_[(head_ + count_) % slots_.size()];
  block.level = level_;
  block.last = last;
  block.input.swap(fill_);
  block.dict_bytes = fill_dict_;
  const std::string_view data = std::string_view(block.input).substr(block.dict_bytes);
  const size_t dict = std::min(kDictBytes, data.size());
  fill_.assign(data.substr(data.size() - dict));
  fill_dict_ = fill_.size();
  ++count_;
  pool_.submit(slots_[(head_ + count_ - 1) % slots_.size()]);
  return ok();
}

// Takes the oldest block's output, running blocks here while pool threads have the oldest.
Status ParallelDeflate::collect_oldest(std::string& out) {
  DeflateBlock& block = *slots_[head_];
  assist(block);
  if (block.failed) return make_error(ErrorCode::kInternal, "gzip: deflate failed (out of memory)");
  out.append(block.output);
  crc_ = static_cast<uint32_t>(
      crc32_combine(crc_, block.crc, static_cast<z_off_t>(block.data_bytes())));
  head_ = (head_ + 1) % slots_.size();
  --count_;
  return ok();
}

// Caller-runs: until `oldest` is done, this thread compresses the newest block no one has taken
// (pool threads take the oldest first), and waits only when none is left.
void ParallelDeflate::assist(DeflateBlock& oldest) {
  while (oldest.in_flight()) {
    if (oldest.pending()) {
      oldest.run_or_wait();
      return;
    }
    DeflateBlock* spare = nullptr;
    for (size_t i = count_; i-- > 1;) {
      DeflateBlock& b = *slots_[(head_ + i) % slots_.size()];
      if (b.pending()) {
        spare = &b;
        break;
      }
    }
    if (spare == nullptr) {
      oldest.run_or_wait();
      return;
    }
    spare->run_or_wait();
  }
}

}  // namespace docpipe
