// zstd: libzstd streaming compression (ZSTD_compressStream2) into one zstd frame with a content
// checksum, the way the zstd command line writes it; a large document on libzstd's workers.

#include <zstd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/transforms/library_versions.h"
#include "core/transforms/param_reader.h"
#include "core/transforms/zstd_context_pool.h"

namespace docpipe {
namespace {

// Documents up to this size are compressed in one call once their size is known: libzstd then
// picks tables sized for the document (far cheaper for small ones) and records the size in the
// frame header. Larger ones stream. 256 KiB is the largest size class libzstd tunes for.
constexpr size_t kKnownSizeBytes = 256u << 10;

// A streamed document is compressed by libzstd's own worker threads (ZSTD_c_nbWorkers), one per
// core up to kMaxWorkers, in jobs of kJobBytes: libzstd holds about (workers + 2) jobs of input
// and output, so a document costs ~15 MiB at 2 workers whatever its size (measured at level 3:
// 52 MiB with the default 8 MiB jobs, 15 MiB with 2 MiB, at the same speed and ratio). The frame
// is the same bytes for any worker count >= 1 and any thread timing.
constexpr int kMaxWorkers = 4;
constexpr size_t kJobBytes = 2u << 20;

int zstd_workers() {
  static const int n =
      std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, kMaxWorkers);
  return n;
}

Error zstd_error(const char* what, size_t rc) {
  // Compressing cannot fail on data; what remains is out of memory or a bug.
  return make_error(ErrorCode::kInternal,
                    std::string("zstd: ") + what + ": " + ZSTD_getErrorName(rc));
}

class ZstdTransform : public DocumentTransform {
 public:
  ZstdTransform(std::shared_ptr<ZstdCompressorPool> pool, int level)
      : pool_(std::move(pool)), level_(level) {}
  ~ZstdTransform() override { pool_->release(std::move(cctx_)); }
  ZstdTransform(const ZstdTransform&) = delete;
  ZstdTransform& operator=(const ZstdTransform&) = delete;

  Status update(std::string_view in, std::string& out) override {
    std::string taken;  // what held_ held, while compress() may keep a new rest in it
    if (more_) {
      // Resuming a call stopped at kMaxCallOutputBytes with input left over.
      taken.swap(held_);
      taken.append(in);  // callers pass nothing new while has_more(); never lose it if they do
      more_ = false;
      return compress(taken, ZSTD_e_continue, out);
    }
    if (cctx_ == nullptr) {
      if (held_.size() + in.size() <= kKnownSizeBytes) {
        held_.append(in);
        return ok();
      }
      Status st = start(ZSTD_CONTENTSIZE_UNKNOWN);
      if (!st) return st;
      taken.swap(held_);
      taken.append(in);
      return compress(taken, ZSTD_e_continue, out);
    }
    return compress(in, ZSTD_e_continue, out);
  }

  Status finish(std::string& out) override {
    if (cctx_ == nullptr) {
      Status st = start(held_.size());
      if (!st) return st;
      std::string taken;
      taken.swap(held_);
      return compress(taken, ZSTD_e_end, out);
    }
    return compress({}, ZSTD_e_end, out);
  }

  bool has_more() const override { return more_; }

 private:
  Status start(unsigned long long pledged_size) {
    cctx_ = pool_->acquire();
    if (cctx_ == nullptr) return make_error(ErrorCode::kInternal, "zstd: out of memory");
    ZSTD_CCtx* c = cctx_.get();
    size_t rc = ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level_);
    if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(rc) && pledged_size != ZSTD_CONTENTSIZE_UNKNOWN)
      rc = ZSTD_CCtx_setPledgedSrcSize(c, pledged_size);
    if (ZSTD_isError(rc)) return zstd_error("cannot start compression", rc);
    if (pledged_size == ZSTD_CONTENTSIZE_UNKNOWN) {
      // A libzstd built without threads refuses nbWorkers: the document then streams on this
      // thread alone (Debian's is built with them).
      if (!ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_nbWorkers, zstd_workers())))
        rc = ZSTD_CCtx_setParameter(c, ZSTD_c_jobSize, static_cast<int>(kJobBytes));
      if (ZSTD_isError(rc)) return zstd_error("cannot start compression", rc);
    }
    return ok();
  }

  // Output grows one libzstd block at a time; single-threaded, libzstd buffers at most a block
  // of input and a block of output itself, so a call's output stays a small multiple of its
  // input. With workers, a call that waits for a job to free its buffer can take the output of
  // several finished jobs, and ending the frame flushes every job in flight (several MiB): either
  // comes out in calls of about kMaxCallOutputBytes, with has_more() between them (the input not
  // yet taken kept in held_).
  Status compress(std::string_view in, ZSTD_EndDirective mode, std::string& out) {
    const size_t block = ZSTD_CStreamOutSize();
    const size_t start = out.size();
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    more_ = false;
    for (;;) {
      const size_t old_size = out.size();
      out.resize(old_size + block);
      ZSTD_outBuffer output{out.data() + old_size, block, 0};
      const size_t rc = ZSTD_compressStream2(cctx_.get(), &output, &input, mode);
      out.resize(old_size + output.pos);
      if (ZSTD_isError(rc)) return zstd_error("compression failed", rc);
      // ZSTD_e_end returns 0 once the frame is complete; otherwise it is done once it has taken
      // all of the input (the rest sits in its block buffer).
      if (mode == ZSTD_e_end ? rc == 0 : input.pos == input.size) return ok();
      if (out.size() - start >= kMaxCallOutputBytes) {
        if (mode == ZSTD_e_continue) {
          held_.assign(in.substr(input.pos));
        } else if (input.pos != input.size) {
          continue;  // a known-size document (at most kKnownSizeBytes) goes in whole
        }
        more_ = true;
        return ok();
      }
    }
  }

  std::shared_ptr<ZstdCompressorPool> pool_;
  int level_;
  ZstdCompressorPool::Ptr cctx_;  // null until the document's size or streaming is decided
  std::string held_;              // input held back while the document may still be small
  bool more_ = false;             // the frame's end is not all out yet (finish again)
};

class ZstdStep : public TransformStep {
 public:
  explicit ZstdStep(int level) : level_(level) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext&) const override {
    return std::make_unique<ZstdTransform>(pool_, level_);
  }

 private:
  int level_;
  std::shared_ptr<ZstdCompressorPool> pool_ = std::make_shared<ZstdCompressorPool>();
};

const ParamSchema& schema() {
  static const ParamSchema s = ParamSchema().integer(
      "level", 1, 19, 3,
      "compression level, 1 fastest to 19 smallest; levels above 15 need tens of MiB per "
      "document being compressed");
  return s;
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "zstd",
    .description = "compresses the document to a zstd frame (libzstd, with a content checksum)",
    .streaming = true,
    .params = schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      ParamReader reader(schema(), params, errors);
      int level = static_cast<int>(reader.integer("level"));
      if (!reader.ok()) return nullptr;
      return std::make_shared<ZstdStep>(level);
    },
    .library_version = zstd_library_version});

}  // namespace
}  // namespace docpipe
