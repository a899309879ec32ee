// gzip's two paths: a document held whole (libdeflate, charged to the budget) and parallel
// deflate blocks for one that outgrows the hold. Every output must be ONE gzip member that
// zlib's inflate reads to its end.

#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/compute_pool.h"
#include "core/transforms/deflate_blocks.h"
#include "core/transforms/gzip_transform.h"

using docpipe::ComputePool;
using docpipe::ComputeTask;
using docpipe::DocumentContext;
using docpipe::GzipOptions;
using docpipe::GzipTransform;
using docpipe::kMaxCallOutputBytes;
using docpipe::Status;

namespace {

constexpr size_t kBlock = 128u << 10;

// Words and numbers: compresses about 3:1, like text.
std::string text_sample(size_t size, uint32_t seed = 5) {
  std::mt19937 rng(seed);
  const char* words[] = {"invoice", "total", "the", "docpipe", "order", "\n", "of", "payment"};
  std::string s;
  s.reserve(size + 16);
  while (s.size() < size) {
    if (rng() % 3 == 0) {
      s += std::to_string(rng() % 100000);
    } else {
      s += words[rng() % 8];
    }
    s += ' ';
  }
  s.resize(size);
  return s;
}

std::string random_bytes(size_t size, uint32_t seed = 9) {
  std::mt19937 rng(seed);
  std::string s(size, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// zlib's inflate of exactly one gzip member: Z_STREAM_END must come at the last byte.
std::string inflate_one_member(const std::string& in) {
  z_stream zs{};
  REQUIRE(inflateInit2(&zs, 31) == Z_OK);
  std::string out;
  std::vector<char> buf(1 << 16);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf.data());
    zs.avail_out = static_cast<uInt>(buf.size());
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf.data(), buf.size() - zs.avail_out);
  }
  CHECK(rc == Z_STREAM_END);
  CHECK(zs.avail_in == 0);
  inflateEnd(&zs);
  return out;
}

// A fake share of the byte budget: grants up to `limit` bytes, and counts what is charged and
// given back.
struct FakeBudget {
  size_t limit = SIZE_MAX;
  size_t charged = 0;
  size_t released = 0;
  int refusals = 0;
  size_t held() const { return charged - released; }
  DocumentContext context() {
    DocumentContext ctx{"dir/doc.txt", "doc.txt"};
    ctx.try_reserve_bytes = [this](size_t n) {
      if (held() + n > limit) {
        ++refusals;
        return false;
      }
      charged += n;
      return true;
    };
    ctx.release_reserved_bytes = [this](size_t n) { released += n; };
    return ctx;
  }
};

// Runs `input` through a GzipTransform in pieces of `piece` bytes, draining has_more() after
// every call; checks that no call hands back much more than kMaxCallOutputBytes.
std::string run_gzip(GzipTransform& t, std::string_view input, size_t piece) {
  std::string out, call;
  auto check_call = [&](Status st) {
    REQUIRE(st.has_value());
    CHECK(call.size() <= kMaxCallOutputBytes + 2 * kBlock);
    out += call;
    call.clear();
  };
  for (size_t at = 0; at < input.size(); at += piece) {
    check_call(t.update(input.substr(at, piece), call));
    while (t.has_more()) check_call(t.update({}, call));
  }
  check_call(t.finish(call));
  while (t.has_more()) check_call(t.finish(call));
  return out;
}

enum class Path { kWhole, kBlocks, kFallback };

const char* path_name(Path p) {
  return p == Path::kWhole ? "whole" : p == Path::kBlocks ? "blocks" : "fallback";
}

// The document through one path: held whole with an unlimited budget; blocks from the first
// byte; or held until the budget refuses (after 1 MiB, nothing held free) and then blocks.
std::string compress_via(Path path, int level, std::string_view input, size_t piece,
                         ComputePool* pool = nullptr) {
  FakeBudget budget;
  GzipOptions options;
  options.pool = pool;
  if (path == Path::kBlocks) options.blocks_from_start = true;
  if (path == Path::kFallback) {
    options.uncharged_hold_bytes = 0;
    budget.limit = 1u << 20;
  }
  DocumentContext ctx = budget.context();
  std::string out;
  {
    GzipTransform t(level, ctx, options);
    out = run_gzip(t, input, piece);
    if (path == Path::kWhole) CHECK(t.compressed_whole());
    CHECK(t.reserved_bytes() == 0);
  }
  CHECK(budget.held() == 0);  // every charge given back by the end of the document
  return out;
}

// Fills every thread of `pool` with a task that waits until released.
class PoolBlocker {
 public:
  explicit PoolBlocker(ComputePool& pool) {
    for (size_t i = 0; i < pool.size(); ++i) {
      tasks_.push_back(std::make_shared<Task>(release_));
      pool.submit(tasks_.back());
      while (!tasks_.back()->started.load()) tasks_.back()->started.wait(false);
    }
  }
  ~PoolBlocker() {
    release_ = true;
    release_.notify_all();
    for (auto& t : tasks_) t->run_or_wait();
  }

 private:
  struct Task : ComputeTask {
    explicit Task(std::atomic<bool>& r) : release(r) {}
    std::atomic<bool>& release;
    std::atomic<bool> started{false};
    void run() override {
      started = true;
      started.notify_all();
      while (!release.load()) release.wait(false);
    }
  };
  std::atomic<bool> release_{false};
  std::vector<std::shared_ptr<Task>> tasks_;
};

}  // namespace

TEST_CASE("gzip blocks: every path round-trips edge sizes at levels 1 6 and 9 as one member") {
  const std::vector<size_t> sizes = {0, 1, kBlock - 1, kBlock, kBlock + 1, 10 * kBlock + 3};
  for (Path path : {Path::kWhole, Path::kBlocks, Path::kFallback}) {
    for (int level : {1, 6, 9}) {
      for (size_t size : sizes) {
        const std::string text = text_sample(size);
        for (size_t piece : {size_t{64} << 10, size_t{7777}, size_t{100003}}) {
          CAPTURE(path_name(path));
          CAPTURE(level);
          CAPTURE(size);
          CAPTURE(piece);
          CHECK(inflate_one_member(compress_via(path, level, text, piece)) == text);
        }
      }
    }
  }
}

TEST_CASE("gzip blocks: incompressible data and tiny pieces round-trip on every path") {
  const std::string noise = random_bytes(3 * kBlock + 17);
  const std::string text = text_sample(2 * kBlock + 5);
  for (Path path : {Path::kWhole, Path::kBlocks, Path::kFallback}) {
    CAPTURE(path_name(path));
    const std::string packed = compress_via(path, 6, noise, 65536);
    CHECK(inflate_one_member(packed) == noise);
    CHECK(packed.size() < noise.size() + noise.size() / 100);  // stored, not expanded
    CHECK(inflate_one_member(compress_via(path, 1, text, 1)) == text);
    CHECK(inflate_one_member(compress_via(path, 9, text, 3)) == text);
  }
}

TEST_CASE("gzip blocks: gzip -d reads a large block-path output") {
  const std::string text = text_sample(6u << 20);
  const std::string packed = compress_via(Path::kBlocks, 6, text, 65536);
  // Within half a percent of zlib's one stream (the dictionaries keep the ratio; the sync
  // markers cost ~4 bytes a block).
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string one(deflateBound(&zs, text.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  zs.avail_in = static_cast<uInt>(text.size());
  zs.next_out = reinterpret_cast<Bytef*>(one.data());
  zs.avail_out = static_cast<uInt>(one.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  const size_t one_stream = zs.total_out;
  deflateEnd(&zs);
  MESSAGE("blocks " << packed.size() << " bytes, one zlib stream " << one_stream);
  CHECK(packed.size() <= one_stream + one_stream / 200);
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("docpipe-gzip-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string gz = (dir / "doc.gz").string();
  std::ofstream(gz, std::ios::binary) << packed;
  const std::string cmd = "gzip -d -f '" + gz + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream in(dir / "doc", std::ios::binary);
  std::stringstream got;
  got << in.rdbuf();
  CHECK(got.str() == text);
  std::filesystem::remove_all(dir);
}

TEST_CASE("gzip blocks: the same input gives the same bytes with the pool idle or busy") {
  const std::string text = text_sample(3u << 20);
  ComputePool pool(2);
  for (int level : {1, 6}) {
    CAPTURE(level);
    const std::string idle = compress_via(Path::kBlocks, level, text, 65536, &pool);
    std::string busy;
    {
      PoolBlocker blocker(pool);  // every block runs on the caller
      busy = compress_via(Path::kBlocks, level, text, 65536, &pool);
    }
    ComputePool one(1);
    const std::string single = compress_via(Path::kBlocks, level, text, 65536, &one);
    CHECK(idle == busy);
    CHECK(idle == single);
    CHECK(compress_via(Path::kBlocks, level, text, 7777, &pool) == idle);
    CHECK(inflate_one_member(idle) == text);
  }
}

TEST_CASE("gzip blocks: pool threads compress blocks beside the caller") {
  ComputePool pool(2);
  const std::string text = text_sample(8u << 20);
  const uint64_t before = pool.tasks_run();
  const std::string packed = compress_via(Path::kBlocks, 6, text, 65536, &pool);
  const uint64_t on_pool = pool.tasks_run() - before;
  MESSAGE("blocks on pool threads: " << on_pool << " of " << (text.size() + kBlock) / kBlock);
  CHECK(on_pool > 0);
  // The caller compresses too (caller-runs), so not every block ran on the pool.
  CHECK(on_pool < text.size() / kBlock + 1);
  CHECK(inflate_one_member(packed) == text);

  // Busy with other work, the pool runs none of them, and the document still completes.
  PoolBlocker blocker(pool);
  const uint64_t busy_before = pool.tasks_run();
  CHECK(compress_via(Path::kBlocks, 6, text.substr(0, 1u << 20), 65536, &pool) ==
        compress_via(Path::kBlocks, 6, text.substr(0, 1u << 20), 65536));
  CHECK(pool.tasks_run() == busy_before);
}

TEST_CASE("gzip blocks: 1 GiB through the block path holds a fixed few MiB") {
  ComputePool pool(2);
  FakeBudget budget;
  budget.limit = 0;  // no room: held only up to the free 512 KiB, then blocks
  DocumentContext ctx = budget.context();
  GzipOptions options;
  options.pool = &pool;
  GzipTransform t(1, ctx, options);
  const std::string piece = text_sample(64u << 10, 77);
  constexpr size_t kTotal = size_t{1} << 30;
  // The output is inflated as it comes, so nothing of size is kept here either.
  z_stream zs{};
  REQUIRE(inflateInit2(&zs, 31) == Z_OK);
  std::vector<char> sink(1 << 20);
  size_t inflated = 0;
  int rc = Z_OK;
  auto consume = [&](std::string& out) {
    zs.next_in = reinterpret_cast<Bytef*>(out.data());
    zs.avail_in = static_cast<uInt>(out.size());
    while (zs.avail_in > 0 && rc == Z_OK) {
      zs.next_out = reinterpret_cast<Bytef*>(sink.data());
      zs.avail_out = static_cast<uInt>(sink.size());
      rc = inflate(&zs, Z_NO_FLUSH);
      inflated += sink.size() - zs.avail_out;
    }
    out.clear();
  };
  // The free hold (its buffer's capacity, before the blocks take it over), then slots of
  // dictionary + block in and about a block out, window(pool) of them, and one filling.
  const size_t bound =
      2 * options.uncharged_hold_bytes +
      (docpipe::ParallelDeflate::window(pool.size()) + 1) * (2 * kBlock + (32u << 10) + 4096);
  size_t peak = 0;
  std::string out;
  for (size_t fed = 0; fed < kTotal; fed += piece.size()) {
    REQUIRE(t.update(piece, out).has_value());
    while (t.has_more()) REQUIRE(t.update({}, out).has_value());
    peak = std::max(peak, t.buffer_bytes());
    consume(out);
  }
  CHECK(t.in_blocks());
  REQUIRE(t.finish(out).has_value());
  while (t.has_more()) REQUIRE(t.finish(out).has_value());
  consume(out);
  inflateEnd(&zs);
  MESSAGE("peak transform buffers " << peak << " bytes (bound " << bound << ")");
  CHECK(peak <= bound);
  CHECK(budget.charged == 0);
  CHECK(rc == Z_STREAM_END);
  CHECK(inflated == kTotal);
}

TEST_CASE("gzip blocks: a refused reservation falls back to blocks and gives the charge back") {
  const std::string text = text_sample(5u << 20);
  FakeBudget budget;
  budget.limit = 3u << 20;  // room for ~1 MiB of input and its output bound, not 5 MiB
  DocumentContext ctx = budget.context();
  GzipOptions options;
  std::string packed;
  {
    GzipTransform t(6, ctx, options);
    std::string out;
    bool reserved_on_the_way = false;
    for (size_t at = 0; at < text.size(); at += 65536) {
      REQUIRE(t.update(std::string_view(text).substr(at, 65536), out).has_value());
      while (t.has_more()) REQUIRE(t.update({}, out).has_value());
      reserved_on_the_way |= t.reserved_bytes() > 0;
    }
    CHECK(reserved_on_the_way);
    CHECK(t.in_blocks());
    CHECK(t.reserved_bytes() == 0);  // given back once the held input went into blocks
    REQUIRE(t.finish(out).has_value());
    while (t.has_more()) REQUIRE(t.finish(out).has_value());
    CHECK_FALSE(t.compressed_whole());
    packed = out;
  }
  CHECK(budget.refusals >= 1);
  CHECK(budget.charged > 0);
  CHECK(budget.held() == 0);
  CHECK(inflate_one_member(packed) == text);
}

TEST_CASE("gzip blocks: a document held whole is charged and comes out in bounded pieces") {
  const std::string text = text_sample(5u << 20);
  FakeBudget budget;
  DocumentContext ctx = budget.context();
  GzipTransform t(6, ctx, GzipOptions{});
  std::string out, call;
  size_t largest_call = 0;
  size_t reserved_at_end = 0;
  for (size_t at = 0; at < text.size(); at += 65536) {
    REQUIRE(t.update(std::string_view(text).substr(at, 65536), call).has_value());
    CHECK(call.empty());  // held: nothing comes out before finish
    reserved_at_end = t.reserved_bytes();
  }
  // The input and libdeflate's output bound, in whole MiB steps.
  CHECK(reserved_at_end >= 2 * text.size());
  CHECK(reserved_at_end % (1u << 20) == 0);
  CHECK(budget.held() == reserved_at_end);
  int calls = 0;
  do {
    REQUIRE(t.finish(call).has_value());
    largest_call = std::max(largest_call, call.size());
    out += call;
    call.clear();
    ++calls;
  } while (t.has_more());
  CHECK(t.compressed_whole());
  CHECK(largest_call <= kMaxCallOutputBytes);
  CHECK(calls == static_cast<int>((out.size() + kMaxCallOutputBytes - 1) / kMaxCallOutputBytes));
  CHECK(budget.held() == 0);
  CHECK(inflate_one_member(out) == text);
}

TEST_CASE("gzip blocks: past the hold cap a document goes on in blocks") {
  const std::string text = text_sample(3u << 20);
  FakeBudget budget;
  DocumentContext ctx = budget.context();
  GzipOptions options;
  options.hold_cap_bytes = 1u << 20;
  GzipTransform t(6, ctx, options);
  const std::string packed = run_gzip(t, text, 65536);
  CHECK_FALSE(t.compressed_whole());
  CHECK(budget.charged > 0);
  CHECK(budget.held() == 0);
  CHECK(inflate_one_member(packed) == text);
}

TEST_CASE("gzip blocks: a transform destroyed with blocks in flight leaves nothing behind") {
  ComputePool pool(2);
  const std::string text = text_sample(4u << 20);
  for (bool busy : {false, true}) {
    CAPTURE(busy);
    std::unique_ptr<PoolBlocker> blocker;
    if (busy) blocker = std::make_unique<PoolBlocker>(pool);  // queued blocks stay pending
    FakeBudget budget;
    DocumentContext ctx = budget.context();
    GzipOptions options;
    options.pool = &pool;
    options.blocks_from_start = true;
    auto t = std::make_unique<GzipTransform>(6, ctx, options);
    std::string out;
    for (size_t at = 0; at < text.size(); at += 65536) {
      REQUIRE(t->update(std::string_view(text).substr(at, 65536), out).has_value());
    }
    t.reset();        // cancel: no finish
    blocker.reset();  // the pool then pops the cancelled blocks' entries
    // The pool still works for the next document.
    CHECK(inflate_one_member(compress_via(Path::kBlocks, 6, text, 65536, &pool)) == text);
  }
}
