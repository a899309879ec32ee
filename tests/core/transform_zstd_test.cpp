// zstd and unzstd, checked against libzstd's one-shot API and the zstd command line's output.

#include <doctest/doctest.h>
#include <zstd.h>

#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/transforms/zstd_context_pool.h"
#include "tests/core/transform_test_util.h"

using docpipe::ErrorCode;
using docpipe::Result;
using docpipe::test::config_errors;
using docpipe::test::error_message;
using docpipe::test::errors_text;
using docpipe::test::make_step;
using docpipe::test::run_chunked;
using docpipe::test::run_ok;
using json = nlohmann::json;

namespace {

// Words with some noise: compressible, but not trivially.
std::string zstd_sample(size_t size, uint32_t seed = 7) {
  std::mt19937 rng(seed);
  const char* words[] = {"invoice", "total", "alpha", "docpipe", "42", "\n", "zstd", "frame"};
  std::string s;
  while (s.size() < size) {
    s += words[rng() % 8];
    s += ' ';
    if (rng() % 5 == 0) s += static_cast<char>(rng() % 256);
  }
  s.resize(size);
  return s;
}

// libzstd's one-shot decoder, independent of the streaming transform under test.
std::string zstd_one_shot_decode(const std::string& frame) {
  unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  REQUIRE(size != ZSTD_CONTENTSIZE_ERROR);
  REQUIRE(size != ZSTD_CONTENTSIZE_UNKNOWN);
  std::string out(size, '\0');
  size_t rc = ZSTD_decompress(out.data(), out.size(), frame.data(), frame.size());
  REQUIRE_MESSAGE(!ZSTD_isError(rc), ZSTD_getErrorName(rc));
  out.resize(rc);
  return out;
}

// A frame as libzstd's streaming API writes it without a known size, like `zstd` reading a pipe.
std::string zstd_streamed_frame(const std::string& in, int level, int window_log = 0) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
  if (window_log != 0) ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, window_log);
  std::string out(ZSTD_compressBound(in.size()) + 1024, '\0');
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  ZSTD_outBuffer output{out.data(), out.size(), 0};
  // Starting with ZSTD_e_continue keeps libzstd from learning the size.
  size_t rc = ZSTD_compressStream2(c, &output, &input, ZSTD_e_continue);
  REQUIRE(!ZSTD_isError(rc));
  rc = ZSTD_compressStream2(c, &output, &input, ZSTD_e_end);
  ZSTD_freeCCtx(c);
  REQUIRE(rc == 0);
  out.resize(output.pos);
  return out;
}

// `printf 'hello, docpipe\n' | zstd -3 -c` (zstd 1.5.4: no content size, with a checksum).
const unsigned char kCliZstdHello[] = {0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x79, 0x00, 0x00, 0x68,
                                       0x65, 0x6c, 0x6c, 0x6f, 0x2c, 0x20, 0x64, 0x6f, 0x63, 0x70,
                                       0x69, 0x70, 0x65, 0x0a, 0x7a, 0x41, 0x1e, 0x29};

std::string cli_zstd_hello() {
  return std::string(reinterpret_cast<const char*>(kCliZstdHello), sizeof kCliZstdHello);
}

}  // namespace

TEST_CASE("zstd: a small document becomes one frame with its size and a checksum") {
  auto zstd = make_step("zstd", json::object());
  std::string frame = run_ok(*zstd, "hello, docpipe\n", 3);
  // The same bytes as the command line's, except that the size is known: the header says 15
  // bytes instead of "unknown".
  const unsigned char expected[] = {0x28, 0xb5, 0x2f, 0xfd, 0x24, 0x0f, 0x79, 0x00, 0x00, 0x68,
                                    0x65, 0x6c, 0x6c, 0x6f, 0x2c, 0x20, 0x64, 0x6f, 0x63, 0x70,
                                    0x69, 0x70, 0x65, 0x0a, 0x7a, 0x41, 0x1e, 0x29};
  CHECK(frame == std::string(reinterpret_cast<const char*>(expected), sizeof expected));
  CHECK(ZSTD_getFrameContentSize(frame.data(), frame.size()) == 15);
  CHECK((static_cast<unsigned char>(frame[4]) & 0x04) != 0);  // Content_Checksum_flag
  CHECK(zstd_one_shot_decode(frame) == "hello, docpipe\n");
}

TEST_CASE("zstd: an empty document is a valid frame that decodes to nothing") {
  auto zstd = make_step("zstd", json::object());
  std::string frame = run_ok(*zstd, "");
  CHECK(frame.size() == 13);  // magic, header, an empty last block and the checksum
  CHECK(zstd_one_shot_decode(frame) == "");
  CHECK(run_ok(*make_step("unzstd", json::object()), frame) == "");
}

TEST_CASE("zstd: output is the same for every chunking, small and streamed documents alike") {
  auto zstd = make_step("zstd", json{{"level", 1}});
  for (size_t size : {size_t{1000}, size_t{256} << 10, (size_t{256} << 10) + 1, size_t{3} << 20}) {
    CAPTURE(size);
    const std::string text = zstd_sample(size);
    const std::string whole = run_ok(*zstd, text);
    for (size_t chunk : {size_t{1} << 10, size_t{4096}, size_t{65536}, size_t{100000}}) {
      CAPTURE(chunk);
      CHECK(run_ok(*zstd, text, chunk) == whole);
    }
    // Streamed frames carry no size; libzstd's streaming decoder reads them all the same.
    CHECK(run_ok(*make_step("unzstd", json::object()), whole, 7777) == text);
  }
}

TEST_CASE("zstd: a higher level compresses smaller, and the default level is 3") {
  const std::string text = zstd_sample(2 << 20);
  std::string level1 = run_ok(*make_step("zstd", json{{"level", 1}}), text, 65536);
  std::string level3 = run_ok(*make_step("zstd", json{{"level", 3}}), text, 65536);
  std::string level19 = run_ok(*make_step("zstd", json{{"level", 19}}), text, 65536);
  CHECK(run_ok(*make_step("zstd", json::object()), text, 65536) == level3);
  CHECK(level3.size() < level1.size());
  CHECK(level19.size() < level3.size());
  auto unzstd = make_step("unzstd", json::object());
  CHECK(run_ok(*unzstd, level19, 65536) == text);
}

TEST_CASE("zstd: documents compressed at once on several threads do not disturb each other") {
  auto zstd = make_step("zstd", json::object());
  auto unzstd = make_step("unzstd", json::object());
  std::vector<std::string> texts;
  for (uint32_t i = 0; i < 4; ++i) texts.push_back(zstd_sample(300000 + i * 1000, i));
  std::vector<std::string> frames(texts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < texts.size(); ++i) {
    threads.emplace_back([&, i] {
      for (int round = 0; round < 3; ++round) {
        Result<std::string> r = run_chunked(*zstd, texts[i], 65536);
        if (r) frames[i] = std::move(r).value();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < texts.size(); ++i) CHECK(run_ok(*unzstd, frames[i], 4096) == texts[i]);
}

TEST_CASE("unzstd: decodes the zstd command line's output, whatever the chunking") {
  auto unzstd = make_step("unzstd", json::object());
  for (size_t chunk : {size_t{1}, size_t{2}, size_t{5}, size_t{0}})
    CHECK(run_ok(*unzstd, cli_zstd_hello(), chunk) == "hello, docpipe\n");
}

TEST_CASE("unzstd: concatenated and skippable frames decode to the concatenated contents") {
  std::string a = zstd_sample(5000, 1), b = zstd_sample(300000, 2);
  // A skippable frame: magic 0x184D2A50, length 4, four bytes of payload.
  const std::string skippable("\x50\x2a\x4d\x18\x04\x00\x00\x00skip", 12);
  std::string packed =
      zstd_streamed_frame(a, 3) + skippable + cli_zstd_hello() + zstd_streamed_frame(b, 1);
  auto unzstd = make_step("unzstd", json::object());
  for (size_t chunk : {size_t{3}, size_t{1000}, size_t{0}}) {
    CAPTURE(chunk);
    CHECK(run_ok(*unzstd, packed, chunk) == a + "hello, docpipe\n" + b);
  }
}

TEST_CASE("unzstd: data that is not zstd is corrupt input") {
  Result<std::string> r =
      run_chunked(*make_step("unzstd", json::object()), "this is plain text\n", 0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kCorruptInput);
  CHECK(r.error().message ==
        "unzstd: invalid zstd data: Unknown frame descriptor in the frame at byte 0");
}

TEST_CASE("unzstd: a damaged checksum or block is corrupt input") {
  auto unzstd = make_step("unzstd", json::object());
  std::string frame = run_ok(*make_step("zstd", json::object()), zstd_sample(10000));
  std::string bad_checksum = frame;
  bad_checksum.back() ^= 0x01;
  Result<std::string> r = run_chunked(*unzstd, bad_checksum, 0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kCorruptInput);
  CHECK(error_message(r).rfind("unzstd: invalid zstd data: Restored data doesn't match checksum",
                               0) == 0);
  std::string bad_block = frame;
  for (size_t i = 20; i < 60; ++i) bad_block[i] = static_cast<char>(0xff);
  r = run_chunked(*unzstd, bad_block, 100);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kCorruptInput);
  CHECK(error_message(r).rfind("unzstd: invalid zstd data: ", 0) == 0);
}

TEST_CASE("unzstd: truncated input is an error from finish, and so is an empty document") {
  auto unzstd = make_step("unzstd", json::object());
  std::string frame = run_ok(*make_step("zstd", json::object()), zstd_sample(10000));
  for (size_t cut : {size_t{1}, size_t{4}, frame.size() / 2, frame.size() - 1}) {
    CAPTURE(cut);
    auto t = unzstd->begin(docpipe::DocumentContext{"a", "a"});
    std::string out;
    REQUIRE(t->update(std::string_view(frame).substr(0, cut), out).has_value());
    docpipe::Status st = t->finish(out);
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().code == ErrorCode::kCorruptInput);
    CHECK(st.error().message == "unzstd: truncated zstd input (ends after " + std::to_string(cut) +
                                    " bytes, inside a zstd frame)");
  }
  CHECK(error_message(run_chunked(*unzstd, "", 0)) ==
        "unzstd: empty document: no zstd data to decompress");
}

TEST_CASE("unzstd: bytes after the last frame are trailing garbage, at any chunking") {
  auto unzstd = make_step("unzstd", json::object());
  std::string data = cli_zstd_hello() + "junk";
  for (size_t chunk : {size_t{1}, size_t{28}, size_t{29}, size_t{0}}) {
    CAPTURE(chunk);
    Result<std::string> r = run_chunked(*unzstd, data, chunk);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == ErrorCode::kCorruptInput);
    CHECK(r.error().message == "unzstd: trailing garbage after zstd data at byte 28");
  }
}

TEST_CASE("unzstd: a decompression bomb trips max_ratio with the default limits") {
  const std::string zeros(10 << 20, '\0');
  std::string bomb = run_ok(*make_step("zstd", json{{"level", 19}}), zeros, 65536);
  REQUIRE(bomb.size() < 10000);
  Result<std::string> r = run_chunked(*make_step("unzstd", json::object()), bomb, 0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kTooLarge);
  CHECK(r.error().message.rfind("unzstd: output exceeds max_ratio (1000 times the input): ", 0) ==
        0);
  CHECK(r.error().message.find("raise max_ratio") != std::string::npos);
  auto lenient = make_step("unzstd", json{{"max_ratio", 100000}});
  CHECK(run_ok(*lenient, bomb, 4096) == zeros);
}

TEST_CASE("unzstd: max_output_bytes stops the output one byte past the limit") {
  const std::string text = zstd_sample(5000);
  std::string packed = run_ok(*make_step("zstd", json::object()), text);
  auto t = make_step("unzstd", json{{"max_output_bytes", 1000}})->begin({"a", "a"});
  std::string out;
  docpipe::Status st = t->update(packed, out);
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().code == ErrorCode::kTooLarge);
  CHECK(st.error().message ==
        "unzstd: output exceeds max_output_bytes (1000 bytes); raise max_output_bytes if "
        "documents this large are expected");
  CHECK(out.size() == 1001);
  CHECK(run_ok(*make_step("unzstd", json{{"max_output_bytes", 5000}}), packed, 100) == text);
}

TEST_CASE("unzstd: a frame asking for a window over 128 MiB is refused before it is allocated") {
  std::string frame = zstd_streamed_frame("window too large", 3, 28);
  Result<std::string> r = run_chunked(*make_step("unzstd", json::object()), frame, 0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kTooLarge);
  CHECK(r.error().message == "unzstd: the zstd frame at byte 0 needs a window larger than 128 MiB");
}

TEST_CASE("zstd: parameter errors name the parameter and the expected value") {
  CHECK(errors_text(config_errors("zstd", json{{"level", 0}})) ==
        "level: expected integer 1..19, got 0\n");
  CHECK(errors_text(config_errors("zstd", json{{"level", 20}, {"fast", true}})) ==
        "fast: unknown parameter\nlevel: expected integer 1..19, got 20\n");
  CHECK(errors_text(config_errors("zstd", json{{"level", "3"}})) ==
        "level: expected integer 1..19, got \"3\"\n");
}

TEST_CASE("unzstd: parameter errors name the parameter and the expected value") {
  CHECK(errors_text(config_errors("unzstd", json{{"max_ratio", 0}, {"max_output_bytes", -5}})) ==
        "max_output_bytes: expected integer >= 1, got -5\n"
        "max_ratio: expected integer >= 1, got 0\n");
  CHECK(errors_text(config_errors("unzstd", json{{"level", 3}})) == "level: unknown parameter\n");
}

TEST_CASE("zstd context pool: idle contexts are kept up to 64 MiB in all, larger ones freed") {
  using docpipe::ZstdCompressorPool;
  ZstdCompressorPool pool;
  const std::string data(4u << 20, 'a');
  std::string frame(ZSTD_compressBound(data.size()), '\0');
  // Level 19 on 4 MiB: each context holds tables of tens of MiB.
  std::vector<ZstdCompressorPool::Ptr> big;
  for (int i = 0; i < 4; ++i) {
    ZstdCompressorPool::Ptr c = pool.acquire();
    REQUIRE(c != nullptr);
    REQUIRE_FALSE(ZSTD_isError(ZSTD_CCtx_setParameter(c.get(), ZSTD_c_compressionLevel, 19)));
    REQUIRE_FALSE(ZSTD_isError(
        ZSTD_compress2(c.get(), frame.data(), frame.size(), data.data(), data.size())));
    REQUIRE(ZSTD_sizeof_CCtx(c.get()) > (16u << 20));
    big.push_back(std::move(c));
  }
  for (auto& c : big) pool.release(std::move(c));
  CHECK(pool.idle_bytes() > 0);
  CHECK(pool.idle_bytes() <= ZstdCompressorPool::kMaxIdleBytes);
}

namespace {

// libzstd's streaming decoder over the whole frame, independent of the unzstd transform.
std::string zstd_stream_decode(const std::string& frame) {
  ZSTD_DCtx* d = ZSTD_createDCtx();
  std::string out;
  std::string buf(ZSTD_DStreamOutSize(), '\0');
  ZSTD_inBuffer input{frame.data(), frame.size(), 0};
  size_t rc = 1;
  while (input.pos < input.size || rc != 0) {
    ZSTD_outBuffer output{buf.data(), buf.size(), 0};
    rc = ZSTD_decompressStream(d, &output, &input);
    REQUIRE_MESSAGE(!ZSTD_isError(rc), ZSTD_getErrorName(rc));
    out.append(buf.data(), output.pos);
    if (output.pos == 0 && input.pos == input.size && rc != 0) break;  // truncated
  }
  ZSTD_freeDCtx(d);
  CHECK(rc == 0);  // the frame ended exactly at the end of the data
  return out;
}

}  // namespace

TEST_CASE("zstd: a large document goes through libzstd's workers and comes out the same each run") {
  // libzstd accepts workers here (a build without threads would refuse the parameter).
  ZSTD_CCtx* probe = ZSTD_createCCtx();
  CHECK_FALSE(ZSTD_isError(ZSTD_CCtx_setParameter(probe, ZSTD_c_nbWorkers, 2)));
  ZSTD_freeCCtx(probe);

  const std::string text = zstd_sample(24u << 20, 11);
  auto zstd = make_step("zstd", json{{"level", 3}});
  std::string first;
  size_t largest_call = 0;
  // Run 0 and 1 feed the pipeline's 64 KiB pieces; run 2 feeds 8 MiB at once, which libzstd's
  // jobs turn into far more than a call may return: the rest comes from updates without input.
  for (int run = 0; run < 3; ++run) {
    const size_t piece = run < 2 ? 65536 : (8u << 20);
    auto t = zstd->begin(docpipe::DocumentContext{"a", "a"});
    std::string out, call;
    int resumed = 0;
    for (size_t at = 0; at < text.size(); at += piece) {
      REQUIRE(t->update(std::string_view(text).substr(at, piece), call).has_value());
      largest_call = std::max(largest_call, call.size());
      out += call;
      call.clear();
      while (t->has_more()) {
        ++resumed;
        REQUIRE(t->update({}, call).has_value());
        largest_call = std::max(largest_call, call.size());
        out += call;
        call.clear();
      }
    }
    if (run == 2) CHECK(resumed > 0);
    do {
      REQUIRE(t->finish(call).has_value());
      largest_call = std::max(largest_call, call.size());
      out += call;
      call.clear();
    } while (t->has_more());
    if (run == 0) {
      first = out;
    } else {
      CHECK(out == first);  // deterministic whatever the threads' timing and the pieces
    }
  }
  // Taking input and ending the frame flush the jobs in flight a call's worth at a time.
  CHECK(largest_call <= (1u << 20) + ZSTD_CStreamOutSize());
  CHECK(zstd_stream_decode(first) == text);
  // Jobs, not one stream: the frame differs from what one thread writes with the same
  // parameters.
  std::string single(ZSTD_compressBound(text.size()), '\0');
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 3);
  ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
  ZSTD_inBuffer input{text.data(), text.size(), 0};
  ZSTD_outBuffer output{single.data(), single.size(), 0};
  REQUIRE_FALSE(ZSTD_isError(ZSTD_compressStream2(c, &output, &input, ZSTD_e_continue)));
  REQUIRE(ZSTD_compressStream2(c, &output, &input, ZSTD_e_end) == 0);
  ZSTD_freeCCtx(c);
  single.resize(output.pos);
  CHECK(first != single);
  CHECK(run_ok(*make_step("unzstd", json::object()), first, 65536) == text);
}
