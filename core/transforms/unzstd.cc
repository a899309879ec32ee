// unzstd: libzstd streaming decompression (ZSTD_decompressStream). Like `zstd -d` it accepts
// several concatenated frames (skippable frames included); anything after the last frame that
// is not another frame is an error.

#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "core/transforms/decompression_limits.h"
#include "core/transforms/param_reader.h"
#include "core/transforms/zstd_context_pool.h"

namespace docpipe {
namespace {

// libzstd's own default: frames that `zstd -d` accepts without --memory are accepted. The window
// is allocated as the frame asks, but its pages are touched only as output is produced, so the
// output limits bound what it really costs.
constexpr int kWindowLogMax = 27;

// One call returns at most about kMaxCallOutputBytes; past that it keeps the rest of its input
// and says has_more(). max_output_bytes and max_ratio bound the whole document (bombs).
class UnzstdTransform : public DocumentTransform {
 public:
  UnzstdTransform(std::shared_ptr<ZstdDecompressorPool> pool, DecompressionLimits limits)
      : pool_(std::move(pool)), limits_(limits) {}
  ~UnzstdTransform() override { pool_->release(std::move(dctx_)); }
  UnzstdTransform(const UnzstdTransform&) = delete;
  UnzstdTransform& operator=(const UnzstdTransform&) = delete;

  Status update(std::string_view in, std::string& out) override {
    // Resuming a call stopped at kMaxCallOutputBytes: the input it kept, or (none left) what
    // libzstd still has to flush.
    std::string resumed;
    const bool drain = more_;
    if (more_) {
      resumed.swap(held_);
      resumed.append(in);  // callers pass nothing new while has_more(); never lose it if they do
      in = resumed;
      more_ = false;
    }
    if (in.empty() && !drain) return ok();
    if (dctx_ == nullptr) {
      Status st = start();
      if (!st) return st;
    }
    const size_t block = ZSTD_DStreamOutSize();
    const size_t start = out.size();
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    for (;;) {
      if (!in_frame_) frame_start_ = consumed_ + input.pos;
      // One byte past the output limit is enough to know it was exceeded.
      const uint64_t room = std::min<uint64_t>(block, limits_.max_output_bytes - produced_ + 1);
      const size_t old_size = out.size();
      out.resize(old_size + room);
      ZSTD_outBuffer output{out.data() + old_size, room, 0};
      const size_t rc = ZSTD_decompressStream(dctx_.get(), &output, &input);
      out.resize(old_size + output.pos);
      produced_ += output.pos;
      if (ZSTD_isError(rc)) return decode_error(rc);
      // 0: a frame is complete and flushed; the next byte, if any, starts another.
      in_frame_ = rc != 0;
      if (!in_frame_) ++frames_;
      Status st = limits_.check("unzstd", produced_, consumed_ + input.pos);
      if (!st) return st;
      // With room left in the output (or the frame flushed), libzstd stops only once it needs
      // more input; a full output may hide more to flush.
      if (input.pos == input.size && (output.pos < output.size || rc == 0)) break;
      if (out.size() - start >= kMaxCallOutputBytes) {
        more_ = true;
        held_.assign(in.substr(input.pos));
        consumed_ += input.pos;
        return ok();
      }
    }
    consumed_ += in.size();
    return ok();
  }

  bool has_more() const override { return more_; }

  Status finish(std::string&) override {
    return check_complete_input("unzstd", "zstd", "zstd frame", consumed_,
                                frames_ > 0 && !in_frame_);
  }

 private:
  Status start() {
    dctx_ = pool_->acquire();
    if (dctx_ == nullptr) return make_error(ErrorCode::kInternal, "unzstd: out of memory");
    size_t rc = ZSTD_DCtx_reset(dctx_.get(), ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(rc))
      rc = ZSTD_DCtx_setParameter(dctx_.get(), ZSTD_d_windowLogMax, kWindowLogMax);
    if (ZSTD_isError(rc)) {
      return make_error(ErrorCode::kInternal, std::string("unzstd: cannot start decompression: ") +
                                                  ZSTD_getErrorName(rc));
    }
    return ok();
  }

  Error decode_error(size_t rc) const {
    const ZSTD_ErrorCode code = ZSTD_getErrorCode(rc);
    if (code == ZSTD_error_frameParameter_windowTooLarge) {
      return make_error(ErrorCode::kTooLarge,
                        "unzstd: the zstd frame at byte " + std::to_string(frame_start_) +
                            " needs a window larger than " +
                            std::to_string((uint64_t{1} << kWindowLogMax) >> 20) + " MiB");
    }
    if (code == ZSTD_error_memory_allocation) {
      return make_error(ErrorCode::kInternal, "unzstd: out of memory");
    }
    // After a complete frame, bytes that do not start another one are trailing garbage.
    if (code == ZSTD_error_prefix_unknown && frames_ > 0 && !in_frame_) {
      return make_error(
          ErrorCode::kCorruptInput,
          "unzstd: trailing garbage after zstd data at byte " + std::to_string(frame_start_));
    }
    return make_error(ErrorCode::kCorruptInput,
                      std::string("unzstd: invalid zstd data: ") + ZSTD_getErrorName(rc) +
                          " in the frame at byte " + std::to_string(frame_start_));
  }

  std::shared_ptr<ZstdDecompressorPool> pool_;
  DecompressionLimits limits_;
  bool more_ = false;               // the last call stopped at kMaxCallOutputBytes
  std::string held_;                // input it had not consumed then
  ZstdDecompressorPool::Ptr dctx_;  // taken from the pool at the first non-empty input
  bool in_frame_ = false;           // input ends inside a frame (so far)
  uint64_t frames_ = 0;             // frames completed
  uint64_t frame_start_ = 0;        // input offset of the frame being decoded
  uint64_t consumed_ = 0;           // compressed bytes read by earlier calls
  uint64_t produced_ = 0;           // bytes written
};

class UnzstdStep : public TransformStep {
 public:
  explicit UnzstdStep(DecompressionLimits limits) : limits_(limits) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext&) const override {
    return std::make_unique<UnzstdTransform>(pool_, limits_);
  }

 private:
  DecompressionLimits limits_;
  std::shared_ptr<ZstdDecompressorPool> pool_ = std::make_shared<ZstdDecompressorPool>();
};

const ParamSchema& schema() {
  static const ParamSchema s =
      DecompressionLimits::declare(ParamSchema(),
                                   "zstd can exceed 1000 on very repetitive data (long runs of one "
                                   "byte), so raise it if such documents are expected");
  return s;
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "unzstd",
    .description = "decompresses zstd data (libzstd), concatenated frames included",
    .streaming = true,
    .params = schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      return configure_decompressor<UnzstdStep>(schema(), params, errors);
    }});

}  // namespace
}  // namespace docpipe
