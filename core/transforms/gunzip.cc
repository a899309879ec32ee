// gunzip: zlib inflate of gzip data (RFC 1952), streaming. Like `gzip -d` it accepts several
// concatenated members; unlike it, anything after the last member is an error, not a warning.

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "core/transforms/decompression_limits.h"
#include "core/transforms/param_reader.h"

namespace docpipe {
namespace {

constexpr size_t kOutputBlock = 64 * 1024;
constexpr size_t kMaxSlice = 1u << 30;  // zlib counts in uInt
constexpr unsigned char kGzipMagic[2] = {0x1f, 0x8b};

// One call returns at most about kMaxCallOutputBytes; past that it keeps the rest of its input
// and says has_more(). max_output_bytes and max_ratio bound the whole document (bombs).
class GunzipTransform : public DocumentTransform {
 public:
  explicit GunzipTransform(DecompressionLimits limits) : limits_(limits) {
    init_rc_ = inflateInit2(&zs_, 15 + 16);  // gzip wrapper only, 32 KiB window
  }
  ~GunzipTransform() override {
    if (init_rc_ == Z_OK) inflateEnd(&zs_);
  }
  GunzipTransform(const GunzipTransform&) = delete;
  GunzipTransform& operator=(const GunzipTransform&) = delete;

  Status update(std::string_view in, std::string& out) override {
    if (init_rc_ != Z_OK) {
      return make_error(ErrorCode::kInternal,
                        std::string("gunzip: cannot start decompression: ") + zError(init_rc_));
    }
    // Resuming a call stopped at kMaxCallOutputBytes: first the input it kept, then whatever
    // zlib still holds (with no input left, one more inflate() drains it).
    std::string resumed;
    bool drain = more_;
    if (more_) {
      resumed.swap(held_);
      resumed.append(in);  // callers pass nothing new while has_more(); never lose it if they do
      in = resumed;
      more_ = false;
    }
    const size_t start = out.size();
    while (!in.empty() || drain) {
      drain = false;
      if (!in_member_) {
        if (members_ > 0 && magic_checked_ == 0) member_start_ = consumed_;
        in_member_ = true;
        if (members_ > 0) inflateReset(&zs_);
      }
      // The first member's header is checked by zlib ("incorrect header check"); after a member,
      // anything that does not start like another one is trailing garbage, said as such.
      if (members_ > 0 && magic_checked_ < 2) {
        size_t n = std::min(in.size(), size_t{2} - magic_checked_);
        for (size_t i = 0; i < n; ++i) {
          if (static_cast<unsigned char>(in[i]) != kGzipMagic[magic_checked_ + i]) {
            return make_error(ErrorCode::kCorruptInput,
                              "gunzip: trailing garbage after gzip data at byte " +
                                  std::to_string(member_start_));
          }
        }
        magic_checked_ += n;
      }
      size_t slice = std::min(in.size(), kMaxSlice);
      Result<size_t> used = inflate_slice(in.substr(0, slice), out, start);
      if (!used) return used.error();
      in.remove_prefix(*used);
      if (more_) {
        held_.assign(in);
        return ok();
      }
    }
    return ok();
  }

  bool has_more() const override { return more_; }

  Status finish(std::string&) override {
    return check_complete_input("gunzip", "gzip", "gzip member", consumed_,
                                members_ > 0 && !in_member_);
  }

 private:
  // Inflates until the slice is used up or the member ends, or until this call's output (from
  // `start`) passes kMaxCallOutputBytes with more to come (more_); returns the bytes consumed.
  Result<size_t> inflate_slice(std::string_view in, std::string& out, size_t start) {
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs_.avail_in = static_cast<uInt>(in.size());
    for (;;) {
      // One byte past the output limit is enough to know it was exceeded.
      uint64_t room = std::min<uint64_t>(kOutputBlock, limits_.max_output_bytes - produced_ + 1);
      size_t old_size = out.size();
      out.resize(old_size + room);
      zs_.next_out = reinterpret_cast<Bytef*>(out.data() + old_size);
      zs_.avail_out = static_cast<uInt>(room);
      uInt avail_in_before = zs_.avail_in;
      int rc = inflate(&zs_, Z_NO_FLUSH);
      out.resize(old_size + room - zs_.avail_out);
      produced_ += room - zs_.avail_out;
      consumed_ += avail_in_before - zs_.avail_in;
      size_t used = in.size() - zs_.avail_in;

      if (rc == Z_STREAM_END) {
        in_member_ = false;
        magic_checked_ = 0;
        ++members_;
      } else if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT) {
        std::string cause = zs_.msg != nullptr ? zs_.msg : "needs a preset dictionary";
        return make_error(ErrorCode::kCorruptInput,
                          "gunzip: invalid gzip data: " + cause + " at byte " +
                              std::to_string(consumed_ == 0 ? 0 : consumed_ - 1));
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return make_error(ErrorCode::kInternal,
                          std::string("gunzip: decompression failed: ") + zError(rc));
      }
      Status st = limits_.check("gunzip", produced_, consumed_);
      if (!st) return st.error();
      if (rc == Z_STREAM_END) return used;
      // With room left in the output, inflate stops only once the input is used up.
      if (zs_.avail_out != 0) {
        if (zs_.avail_in == 0) return used;
        return make_error(ErrorCode::kInternal, "gunzip: decompression made no progress");
      }
      // A full output block may hide more: go on, unless this call has given enough.
      if (out.size() - start >= kMaxCallOutputBytes) {
        more_ = true;
        return used;
      }
    }
  }

  DecompressionLimits limits_;
  bool more_ = false;  // the last call stopped at kMaxCallOutputBytes
  std::string held_;   // input it had not consumed then
  z_stream zs_{};
  int init_rc_ = Z_OK;
  bool in_member_ = false;
  uint64_t members_ = 0;       // members completed
  size_t magic_checked_ = 0;   // bytes of the next member's magic seen and checked
  uint64_t member_start_ = 0;  // input offset where the current member starts
  uint64_t consumed_ = 0;      // compressed bytes read
  uint64_t produced_ = 0;      // bytes written
};

class GunzipStep : public TransformStep {
 public:
  explicit GunzipStep(DecompressionLimits limits) : limits_(limits) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext&) const override {
    return std::make_unique<GunzipTransform>(limits_);
  }

 private:
  DecompressionLimits limits_;
};

const ParamSchema& schema() {
  static const ParamSchema s = DecompressionLimits::declare(
      ParamSchema(),
      "deflate cannot exceed about 1032, so 1000 only trips on near-maximal compression");
  return s;
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "gunzip",
    .description = "decompresses gzip data (zlib inflate), concatenated members included",
    .streaming = true,
    .params = schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      return configure_decompressor<GunzipStep>(schema(), params, errors);
    }});

}  // namespace
}  // namespace docpipe
