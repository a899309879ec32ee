#pragma once
// Reusable libzstd contexts for the zstd and unzstd transforms. Making a context allocates its
// tables (from a few hundred KiB at level 1 to tens of MiB at level 19) and a fresh one must be
// zeroed, which costs more than compressing a small document; libzstd recommends reusing them.
// A step keeps the contexts its finished documents give back, up to a few, for the next ones.

#include <zstd.h>

#include <memory>
#include <mutex>
#include <vector>

namespace docpipe {

struct ZstdContextFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

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
        Ptr ctx = std::move(idle_.back());
        idle_.pop_back();
        return ctx;
      }
    }
    return Ptr(Create());
  }

  void release(Ptr ctx) {
    if (ctx == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    // About one per worker thread is all that is ever reused; the rest are freed.
    if (idle_.size() < kMaxIdle) idle_.push_back(std::move(ctx));
  }

 private:
  static constexpr size_t kMaxIdle = 8;
  std::mutex mu_;
  std::vector<Ptr> idle_;
};

using ZstdCompressorPool = ZstdContextPool<ZSTD_CCtx, ZSTD_createCCtx>;
using ZstdDecompressorPool = ZstdContextPool<ZSTD_DCtx, ZSTD_createDCtx>;

}  // namespace docpipe
