#pragma once
// Reusable libzstd contexts for the zstd and unzstd transforms. Making a context allocates its
// tables (from a few hundred KiB at level 1 to tens of MiB at level 19) and a fresh one must be
// zeroed, which costs more than compressing a small document; libzstd recommends reusing them.
// A step keeps the contexts its finished documents give back, up to a few and kMaxIdleBytes in
// all, for the next ones: a context keeps its tables and window (up to 128 MiB for a frame that
// asked for it) resident, and idle memory is not charged to the daemon's budget.

#include <zstd.h>

#include <memory>
#include <mutex>
#include <vector>

namespace docpipe {

struct ZstdContextFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

inline size_t zstd_context_bytes(const ZSTD_CCtx* c) { return ZSTD_sizeof_CCtx(c); }
inline size_t zstd_context_bytes(const ZSTD_DCtx* d) { return ZSTD_sizeof_DCtx(d); }

template <typename Ctx, Ctx* (*Create)()>
class ZstdContextPool {
 public:
  using Ptr = std::unique_ptr<Ctx, ZstdContextFree>;

  // A context with unspecified parameters: the caller resets and configures it. Null only if
  // libzstd cannot allocate one.
  Ptr acquire() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        Ptr ctx = std::move(idle_.back().ctx);
        idle_bytes_ -= idle_.back().bytes;
        idle_.pop_back();
        return ctx;
      }
    }
    return Ptr(Create());
  }

  void release(Ptr ctx) {
    if (ctx == nullptr) return;
    const size_t bytes = zstd_context_bytes(ctx.get());
    std::lock_guard<std::mutex> lock(mu_);
    // About one per worker thread is all that is ever reused; the rest are freed.
    if (idle_.size() < kMaxIdle && idle_bytes_ + bytes <= kMaxIdleBytes) {
      idle_.push_back(Idle{std::move(ctx), bytes});
      idle_bytes_ += bytes;
    }
  }

  size_t idle_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return idle_bytes_;
  }

  static constexpr size_t kMaxIdle = 8;
  static constexpr size_t kMaxIdleBytes = size_t{64} << 20;

 private:
  struct Idle {
    Ptr ctx;
    size_t bytes;
  };
  mutable std::mutex mu_;
  std::vector<Idle> idle_;
  size_t idle_bytes_ = 0;
};

using ZstdCompressorPool = ZstdContextPool<ZSTD_CCtx, ZSTD_createCCtx>;
using ZstdDecompressorPool = ZstdContextPool<ZSTD_DCtx, ZSTD_createDCtx>;

}  // namespace docpipe
