// gzip: zlib deflate with the gzip wrapper (RFC 1952), streaming.

#include <zlib.h>

#include <nlohmann/json.hpp>

#include "core/transforms/param_reader.h"

namespace docpipe {
namespace {

// Output grows in blocks of this size; deflate's own buffers bound what one call can emit
// beyond the input, so memory per call stays a small multiple of the chunk.
constexpr size_t kOutputBlock = 32 * 1024;
// zlib counts in uInt; larger chunks are fed in slices.
constexpr size_t kMaxSlice = 1u << 30;

class GzipTransform : public DocumentTransform {
 public:
  explicit GzipTransform(int level) {
    // windowBits 15 + 16 selects the gzip wrapper (no file name, mtime 0: output is
    // reproducible); memLevel 8 is zlib's default.
    init_rc_ = deflateInit2(&zs_, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  }
  ~GzipTransform() override {
    if (init_rc_ == Z_OK) deflateEnd(&zs_);
  }
  GzipTransform(const GzipTransform&) = delete;
  GzipTransform& operator=(const GzipTransform&) = delete;

  Status update(std::string_view in, std::string& out) override {
    while (!in.empty()) {
      std::string_view slice = in.substr(0, kMaxSlice);
      in.remove_prefix(slice.size());
      Status st = run(slice, Z_NO_FLUSH, out);
      if (!st) return st;
    }
    return ok();
  }

  Status finish(std::string& out) override { return run({}, Z_FINISH, out); }

 private:
  Status run(std::string_view in, int flush, std::string& out) {
    if (init_rc_ != Z_OK) return zlib_error("cannot start compression", init_rc_);
    if (finished_) return make_error(ErrorCode::kInternal, "gzip: data after finish()");
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs_.avail_in = static_cast<uInt>(in.size());
    for (;;) {
      size_t old_size = out.size();
      out.resize(old_size + kOutputBlock);
      zs_.next_out = reinterpret_cast<Bytef*>(out.data() + old_size);
      zs_.avail_out = static_cast<uInt>(kOutputBlock);
      int rc = deflate(&zs_, flush);
      out.resize(old_size + kOutputBlock - zs_.avail_out);
      if (rc == Z_STREAM_END) {
        finished_ = true;
        return ok();
      }
      // Z_BUF_ERROR only means "no progress possible", i.e. everything is consumed.
      if (rc != Z_OK && rc != Z_BUF_ERROR) return zlib_error("compression failed", rc);
      if (flush == Z_NO_FLUSH && zs_.avail_in == 0 && zs_.avail_out != 0) return ok();
    }
  }

  Error zlib_error(const char* what, int rc) const {
    std::string cause = zs_.msg != nullptr ? zs_.msg : zError(rc);
    // Compressing cannot fail on data; what remains is out of memory or a bug.
    return make_error(ErrorCode::kInternal, std::string("gzip: ") + what + ": " + cause);
  }

  z_stream zs_{};
  int init_rc_ = Z_OK;
  bool finished_ = false;
};

class GzipStep : public TransformStep {
 public:
  explicit GzipStep(int level) : level_(level) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext&) const override {
    return std::make_unique<GzipTransform>(level_);
  }

 private:
  int level_;
};

const ParamSchema& schema() {
  static const ParamSchema s =
      ParamSchema().integer("level", 1, 9, 6, "compression level, 1 fastest to 9 smallest");
  return s;
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "gzip",
    .description = "compresses the document to gzip format (zlib deflate)",
    .streaming = true,
    .params = schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      ParamReader reader(schema(), params, errors);
      int level = static_cast<int>(reader.integer("level"));
      if (!reader.ok()) return nullptr;
      return std::make_shared<GzipStep>(level);
    }});

}  // namespace
}  // namespace docpipe
