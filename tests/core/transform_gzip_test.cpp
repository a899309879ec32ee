// gzip and gunzip.

#include <doctest/doctest.h>
#include <zlib.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

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

// Mixed text: compressible but not trivially so.
std::string sample_text(size_t size) {
  std::mt19937 rng(42);
  const char* words[] = {"invoice", "total", "alpha", "docpipe", "42", "\n", "zlib", "gamma"};
  std::string s;
  while (s.size() < size) {
    s += words[rng() % 8];
    s += ' ';
    if (rng() % 5 == 0) s += static_cast<char>(rng() % 256);
  }
  s.resize(size);
  return s;
}

// zlib's own one-shot deflate with the gzip wrapper, as the reference for exact output.
std::string zlib_gzip(const std::string& in, int level) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, in.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// zlib's own inflate of one gzip member, independent of the transform under test.
std::string zlib_gunzip(const std::string& in) {
  z_stream zs{};
  REQUIRE(inflateInit2(&zs, 31) == Z_OK);
  std::string out;
  char buf[16384];
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof buf - zs.avail_out);
  }
  CHECK(rc == Z_STREAM_END);
  CHECK(zs.avail_in == 0);
  inflateEnd(&zs);
  return out;
}

// `printf 'hello, docpipe\n' | gzip -n`
const unsigned char kGnuGzipHello[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                       0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0xd7, 0x51, 0x48,
                                       0xc9, 0x4f, 0x2e, 0xc8, 0x2c, 0x48, 0xe5, 0x02, 0x00,
                                       0xbb, 0x83, 0xda, 0x4b, 0x0f, 0x00, 0x00, 0x00};

std::string gnu_gzip_hello() {
  return std::string(reinterpret_cast<const char*>(kGnuGzipHello), sizeof kGnuGzipHello);
}

}  // namespace

TEST_CASE("gzip: an empty document becomes the 20-byte empty gzip member") {
  auto gzip = make_step("gzip", json::object());
  std::string out = run_ok(*gzip, "");
  const unsigned char expected[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3,
                                    3,    0,    0, 0, 0, 0, 0, 0, 0, 0};
  CHECK(out == std::string(reinterpret_cast<const char*>(expected), sizeof expected));
  auto gunzip = make_step("gunzip", json::object());
  CHECK(run_ok(*gunzip, out) == "");
}

TEST_CASE("gzip: output decodes with zlib and is the same bytes whatever the chunking") {
  // Held whole, a document goes through libdeflate, not zlib: the bytes differ from zlib's, so
  // what is compared is what zlib's inflate makes of them (one member, nothing after it).
  std::string text = sample_text(300000);
  for (int level : {1, 6, 9}) {
    auto gzip = make_step("gzip", json{{"level", level}});
    const std::string whole = run_ok(*gzip, text);
    CHECK(zlib_gunzip(whole) == text);
    for (size_t chunk : {size_t{1}, size_t{7}, size_t{4096}, size_t{65536}}) {
      CAPTURE(level);
      CAPTURE(chunk);
      CHECK(run_ok(*gzip, text, chunk) == whole);
    }
  }
}

TEST_CASE("gzip: default level is 6 and higher levels compress smaller") {
  std::string text = sample_text(200000);
  const std::string level6 = run_ok(*make_step("gzip", json{{"level", 6}}), text);
  CHECK(run_ok(*make_step("gzip", json::object()), text) == level6);
  size_t fast = run_ok(*make_step("gzip", json{{"level", 1}}), text).size();
  size_t best = run_ok(*make_step("gzip", json{{"level", 9}}), text).size();
  CHECK(best < fast);
  // zlib's header (no name, mtime 0, OS 3), whichever deflate wrote the rest.
  CHECK(level6.substr(0, 10) == zlib_gzip(text, 6).substr(0, 10));
}

TEST_CASE("gzip: zlib's inflate decodes the output of a large document fed in chunks") {
  std::string text = sample_text(3 << 20);
  auto gzip = make_step("gzip", json{{"level", 1}});
  CHECK(zlib_gunzip(run_ok(*gzip, text, 1 << 20)) == text);
}

TEST_CASE("gunzip: decodes a member made by GNU gzip, whatever the chunking") {
  auto gunzip = make_step("gunzip", json::object());
  for (size_t chunk : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{10}}) {
    CAPTURE(chunk);
    CHECK(run_ok(*gunzip, gnu_gzip_hello(), chunk) == "hello, docpipe\n");
  }
}

TEST_CASE("gunzip: round-trips gzip output for every chunk size") {
  std::string text = sample_text(200000);
  std::string packed = run_ok(*make_step("gzip", json::object()), text);
  auto gunzip = make_step("gunzip", json::object());
  for (size_t chunk : {size_t{0}, size_t{1}, size_t{3}, size_t{7}, size_t{64}, size_t{4096}}) {
    CAPTURE(chunk);
    CHECK(run_ok(*gunzip, packed, chunk) == text);
  }
}

TEST_CASE("gunzip: concatenated members decode to the concatenated contents") {
  std::string packed = gnu_gzip_hello() + zlib_gzip("second\n", 9) + zlib_gzip("", 6);
  auto gunzip = make_step("gunzip", json::object());
  for (size_t chunk : {size_t{0}, size_t{1}, size_t{5}}) {
    CAPTURE(chunk);
    CHECK(run_ok(*gunzip, packed, chunk) == "hello, docpipe\nsecond\n");
  }
}

TEST_CASE("gunzip: data that is not gzip is corrupt input with zlib's reason and offset") {
  auto gunzip = make_step("gunzip", json::object());
  Result<std::string> r = run_chunked(*gunzip, "plain text, not gzip", 0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kCorruptInput);
  CHECK(r.error().message == "gunzip: invalid gzip data: incorrect header check at byte 1");
}

TEST_CASE("gunzip: a damaged checksum or length is corrupt input") {
  auto gunzip = make_step("gunzip", json::object());
  std::string bad_crc = gnu_gzip_hello();
  bad_crc[bad_crc.size() - 8] ^= 0x01;
  Result<std::string> r = run_chunked(*gunzip, bad_crc, 0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kCorruptInput);
  CHECK(r.error().message == "gunzip: invalid gzip data: incorrect data check at byte 30");
  std::string bad_length = gnu_gzip_hello();
  bad_length[bad_length.size() - 4] ^= 0x01;
  CHECK(error_message(run_chunked(*gunzip, bad_length, 1)) ==
        "gunzip: invalid gzip data: incorrect length check at byte 34");
}

TEST_CASE("gunzip: damaged deflate data is corrupt input") {
  std::string packed = zlib_gzip(sample_text(10000), 6);
  for (size_t i = 12; i < 40; ++i) packed[i] = static_cast<char>(0xff);
  Result<std::string> r = run_chunked(*make_step("gunzip", json::object()), packed, 0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kCorruptInput);
  CHECK(r.error().message.rfind("gunzip: invalid gzip data: ", 0) == 0);
}

TEST_CASE("gunzip: truncated input is an error from finish") {
  auto gunzip = make_step("gunzip", json::object());
  std::string packed = gnu_gzip_hello();
  packed.resize(packed.size() - 5);
  auto t = gunzip->begin(docpipe::DocumentContext{"a", "a"});
  std::string out;
  CHECK(t->update(packed, out).has_value());
  docpipe::Status st = t->finish(out);
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().code == ErrorCode::kCorruptInput);
  CHECK(st.error().message ==
        "gunzip: truncated gzip input (ends after 30 bytes, inside a gzip member)");
}

TEST_CASE("gunzip: an empty document is truncated gzip input") {
  Result<std::string> r = run_chunked(*make_step("gunzip", json::object()), "", 0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kCorruptInput);
  CHECK(r.error().message == "gunzip: empty document: no gzip data to decompress");
}

TEST_CASE("gunzip: bytes after the last member are trailing garbage, at any chunking") {
  auto gunzip = make_step("gunzip", json::object());
  for (const std::string& tail :
       std::vector<std::string>{"x", "\x1f", "\x1fx", std::string(8, '\0')}) {
    for (size_t chunk : {size_t{0}, size_t{1}}) {
      CAPTURE(chunk);
      Result<std::string> r = run_chunked(*gunzip, gnu_gzip_hello() + tail, chunk);
      if (tail == "\x1f") {
        // A lone first magic byte could still be a member: it is cut short.
        CHECK(error_message(r) ==
              "gunzip: truncated gzip input (ends after 36 bytes, inside a gzip member)");
        continue;
      }
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().code == ErrorCode::kCorruptInput);
      CHECK(r.error().message == "gunzip: trailing garbage after gzip data at byte 35");
    }
  }
}

TEST_CASE("gunzip: a decompression bomb trips max_ratio with the default limits") {
  std::string bomb = zlib_gzip(std::string(10 << 20, '\0'), 9);
  REQUIRE(bomb.size() < 20000);
  Result<std::string> r = run_chunked(*make_step("gunzip", json::object()), bomb, 0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kTooLarge);
  CHECK(r.error().message.rfind("gunzip: output exceeds max_ratio (1000 times the input): ", 0) ==
        0);
  CHECK(r.error().message.find("raise max_ratio") != std::string::npos);
  // Raising the limit lets the same data through.
  auto lenient = make_step("gunzip", json{{"max_ratio", 2000}});
  CHECK(run_ok(*lenient, bomb, 4096) == std::string(10 << 20, '\0'));
}

TEST_CASE("gunzip: max_output_bytes stops the output one byte past the limit") {
  std::string packed = zlib_gzip(sample_text(5000), 6);
  auto gunzip = make_step("gunzip", json{{"max_output_bytes", 1000}});
  auto t = gunzip->begin(docpipe::DocumentContext{"a", "a"});
  std::string out;
  docpipe::Status st = t->update(packed, out);
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().code == ErrorCode::kTooLarge);
  CHECK(st.error().message ==
        "gunzip: output exceeds max_output_bytes (1000 bytes); raise max_output_bytes if "
        "documents this large are expected");
  CHECK(out.size() == 1001);
  // Exactly at the limit is fine.
  auto exact = make_step("gunzip", json{{"max_output_bytes", 5000}});
  CHECK(run_ok(*exact, packed, 100) == sample_text(5000));
}

TEST_CASE("gzip: parameter errors name the parameter and the expected value") {
  CHECK(errors_text(config_errors("gzip", json{{"level", "x"}})) ==
        "level: expected integer 1..9, got \"x\"\n");
  CHECK(errors_text(config_errors("gzip", json{{"level", 0}})) ==
        "level: expected integer 1..9, got 0\n");
  CHECK(errors_text(config_errors("gzip", json{{"level", 10}, {"lvl", 1}})) ==
        "lvl: unknown parameter\nlevel: expected integer 1..9, got 10\n");
}

TEST_CASE("gunzip: parameter errors name the parameter and the expected value") {
  CHECK(errors_text(config_errors("gunzip", json{{"max_ratio", 0}, {"max_output_bytes", -5}})) ==
        "max_output_bytes: expected integer >= 1, got -5\n"
        "max_ratio: expected integer >= 1, got 0\n");
  CHECK(errors_text(config_errors("gunzip", json{{"level", 6}})) == "level: unknown parameter\n");
}
