// gzip: one gzip member (RFC 1952) per document; libdeflate for a document held whole, parallel
// zlib deflate blocks for one too large to hold (gzip_transform.h, docs/design.md "Compression
// on every core").

#include <libdeflate.h>
#include <zlib.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/compute_pool.h"
#include "core/transforms/gzip_transform.h"
#include "core/transforms/library_versions.h"
#include "core/transforms/param_reader.h"

namespace docpipe {

namespace {

constexpr size_t kHeaderBytes = 10;
constexpr size_t kSlowLevelHoldCapBytes = 16u << 20;

// zlib's header for `level` (what deflateInit2 with windowBits 31 and `gzip -n` write): no name,
// mtime 0, XFL 2 at level 9 and 4 at level 1, OS 3 (Unix). Every path writes these bytes.
void put_header(std::string& out, int level) {
  const char xfl = level == 9 ? 2 : level == 1 ? 4 : 0;
  const char header[kHeaderBytes] = {'\x1f', '\x8b', 8, 0, 0, 0, 0, 0, xfl, 3};
  out.append(header, kHeaderBytes);
}

void put_le32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

// One libdeflate compressor per thread, for the level last asked: allocating one costs more than
// compressing a small document, and a worker compresses document after document.
class ThreadCompressor {
 public:
  ~ThreadCompressor() { libdeflate_free_compressor(c_); }
  libdeflate_compressor* get(int level) {
    if (c_ == nullptr || level_ != level) {
      libdeflate_free_compressor(c_);
      c_ = libdeflate_alloc_compressor(level);
      level_ = level;
    }
    return c_;
  }

 private:
  libdeflate_compressor* c_ = nullptr;
  int level_ = 0;
};

libdeflate_compressor* thread_compressor(int level) {
  thread_local ThreadCompressor compressor;
  return compressor.get(level);
}

// Below this size libdeflate's output is a few bytes larger than zlib's (it prefers a stored
// block: 23 bytes for an empty document against zlib's 20), and speed does not matter.
constexpr size_t kTinyBytes = 64;

// zlib with the gzip wrapper, one stream per thread (initialising one clears ~256 KiB).
class ThreadGzipStream {
 public:
  ThreadGzipStream() { rc_ = deflateInit2(&zs_, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY); }
  ~ThreadGzipStream() {
    if (rc_ == Z_OK) deflateEnd(&zs_);
  }
  ThreadGzipStream(const ThreadGzipStream&) = delete;
  ThreadGzipStream& operator=(const ThreadGzipStream&) = delete;

  // One member for `in` (a few bytes), in one call.
  bool compress(std::string_view in, int level, std::string& out) {
    if (rc_ != Z_OK || deflateReset(&zs_) != Z_OK ||
        deflateParams(&zs_, level, Z_DEFAULT_STRATEGY) != Z_OK)
      return false;
    out.resize(deflateBound(&zs_, in.size()) + 32);
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs_.avail_in = static_cast<uInt>(in.size());
    zs_.next_out = reinterpret_cast<Bytef*>(out.data());
    zs_.avail_out = static_cast<uInt>(out.size());
    if (deflate(&zs_, Z_FINISH) != Z_STREAM_END) return false;
    out.resize(out.size() - zs_.avail_out);
    return true;
  }

 private:
  z_stream zs_{};
  int rc_ = Z_OK;
};

// What the whole-document path needs for `n` bytes of input: the input and the output bound.
// libdeflate 1.14's bound does not depend on the compressor's level.
size_t whole_bytes(size_t n) { return n + libdeflate_gzip_compress_bound(nullptr, n); }

Error internal(const std::string& what) {
  return make_error(ErrorCode::kInternal, "gzip: " + what);
}

}  // namespace

GzipTransform::GzipTransform(int level, const DocumentContext& doc, const GzipOptions& options)
    : level_(level),
      options_(options),
      try_reserve_(doc.try_reserve_bytes),
      release_(doc.release_reserved_bytes) {}

// Blocks in flight are cancelled or waited for by ParallelDeflate's destructor; a charge not
// given back yet is the pipeline's to release when the document settles.
GzipTransform::~GzipTransform() = default;

size_t GzipTransform::buffer_bytes() const {
  return held_.capacity() + tail_.capacity() + packed_.capacity() +
         (blocks_ ? blocks_->buffer_bytes() : 0);
}

bool GzipTransform::has_more() const {
  switch (state_) {
    case State::kBlocks:
      return held_left() || (blocks_ && !blocks_->done() && finishing_);
    case State::kEmitting:
      return packed_pos_ < packed_.size();
    default:
      return false;
  }
}

// True if the document may go on being held at `bytes`: free up to uncharged_hold_bytes, then
// charged in steps while the pipeline has room, up to hold_cap_bytes.
bool GzipTransform::hold(size_t bytes) {
  if (bytes <= options_.uncharged_hold_bytes) return true;
  if (bytes > options_.hold_cap_bytes || !try_reserve_) return false;
  const size_t step = std::max<size_t>(options_.reserve_step_bytes, 1);
  const size_t need = (whole_bytes(bytes) + step - 1) / step * step;
  if (need <= reserved_) return true;
  if (!try_reserve_(need - reserved_)) return false;
  reserved_ = need;
  return true;
}

void GzipTransform::release_reserved() {
  if (reserved_ > 0 && release_) release_(reserved_);
  reserved_ = 0;
}

Status GzipTransform::update(std::string_view in, std::string& out) {
  switch (state_) {
    case State::kHolding:
      if (!options_.blocks_from_start && hold(held_.size() + in.size())) {
        held_.append(in);
        return ok();
      }
      // Kept apart: appending it could grow held_'s buffer by half again just to hand it on.
      tail_.assign(in);
      return start_blocks(out);
    case State::kBlocks:
      if (finishing_) return internal("data after finish()");
      if (held_left()) {
        tail_.append(in);  // normally empty: the caller drains has_more() first
        return drain_held(out);
      }
      return blocks_->write(in, out);
    default:
      return internal("data after finish()");
  }
}

Status GzipTransform::finish(std::string& out) {
  switch (state_) {
    case State::kHolding: {
      if (options_.blocks_from_start) {
        Status st = start_blocks(out);
        return st ? finish(out) : st;
      }
      Status st = compress_whole();
      if (!st) return st;
      emit(out);
      return ok();
    }
    case State::kEmitting:
      emit(out);
      return ok();
    case State::kBlocks: {
      finishing_ = true;
      if (held_left()) return drain_held(out);
      Status st = blocks_->finish(out, kMaxCallOutputBytes);
      if (!st) return st;
      if (blocks_->done()) {
        put_le32(out, blocks_->crc32());
        put_le32(out, static_cast<uint32_t>(blocks_->bytes_in()));
        state_ = State::kDone;
        blocks_.reset();
      }
      return ok();
    }
    case State::kDone:
      return ok();
  }
  return ok();
}

// The document outgrew the hold: from here on parallel blocks take what was held, then the rest.
Status GzipTransform::start_blocks(std::string& out) {
  ComputePool& pool = options_.pool != nullptr ? *options_.pool : ComputePool::instance();
  blocks_ = std::make_unique<ParallelDeflate>(level_, pool, options_.block_bytes);
  state_ = State::kBlocks;
  put_header(out, level_);
  held_pos_ = 0;
  return drain_held(out);
}

// Feeds held input to the blocks a block at a time, stopping once this call's output reaches
// kMaxCallOutputBytes (has_more() then); the held buffer and its charge go once it is taken.
Status GzipTransform::drain_held(std::string& out) {
  const size_t start = out.size();
  while (held_pos_ < held_.size() && out.size() - start < kMaxCallOutputBytes) {
    const size_t n = std::min(options_.block_bytes, held_.size() - held_pos_);
    Status st = blocks_->write(std::string_view(held_).substr(held_pos_, n), out);
    if (!st) return st;
    held_pos_ += n;
  }
  if (held_pos_ == held_.size()) {
    if (!held_.empty()) {
      std::string().swap(held_);
      held_pos_ = 0;
      release_reserved();
    }
    if (!tail_.empty() && out.size() - start < kMaxCallOutputBytes) {
      Status st = blocks_->write(tail_, out);
      if (!st) return st;
      std::string().swap(tail_);
    }
  }
  return ok();
}

// The held document in one libdeflate call at the job's level (a tiny one through zlib).
Status GzipTransform::compress_whole() {
  if (held_.size() < kTinyBytes) {
    thread_local ThreadGzipStream zlib_stream;
    if (!zlib_stream.compress(held_, level_, packed_)) return internal("compression failed");
    return emit_from_start();
  }
  libdeflate_compressor* c = thread_compressor(level_);
  if (c == nullptr) return internal("cannot start compression: out of memory");
  packed_.resize(libdeflate_gzip_compress_bound(c, held_.size()));
  const size_t n =
      libdeflate_gzip_compress(c, held_.data(), held_.size(), packed_.data(), packed_.size());
  if (n < kHeaderBytes) return internal("compression failed (output bound too small)");
  packed_.resize(n);
  // libdeflate writes OS 255 ("unknown") and its own XFL; the header is outside the CRC, so
  // zlib's bytes go in and every path's output starts alike.
  std::string header;
  put_header(header, level_);
  packed_.replace(0, kHeaderBytes, header);
  return emit_from_start();
}

Status GzipTransform::emit_from_start() {
  std::string().swap(held_);
  packed_pos_ = 0;
  whole_ = true;
  state_ = State::kEmitting;
  return ok();
}

void GzipTransform::emit(std::string& out) {
  const size_t n = std::min(kMaxCallOutputBytes, packed_.size() - packed_pos_);
  out.append(packed_, packed_pos_, n);
  packed_pos_ += n;
  if (packed_pos_ == packed_.size()) {
    std::string().swap(packed_);
    packed_pos_ = 0;
    release_reserved();
    state_ = State::kDone;
  }
}

namespace {

class GzipStep : public TransformStep {
 public:
  explicit GzipStep(int level) : level_(level) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext& doc) const override {
    GzipOptions options;
    // The held document is compressed in one call that document_timeout_ms cannot see progress
    // in; libdeflate's levels 7-9 fall to a few MB/s on repetitive data, so they hold less.
    if (level_ >= 7) options.hold_cap_bytes = kSlowLevelHoldCapBytes;
    return std::make_unique<GzipTransform>(level_, doc, options);
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
    .description = "compresses the document to gzip format (one member; libdeflate for a "
                   "document held whole, parallel deflate blocks for a large one)",
    .streaming = true,
    .params = schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      ParamReader reader(schema(), params, errors);
      int level = static_cast<int>(reader.integer("level"));
      if (!reader.ok()) return nullptr;
      return std::make_shared<GzipStep>(level);
    },
    .library_version = zlib_libdeflate_version});

}  // namespace
}  // namespace docpipe
