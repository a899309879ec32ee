// Expanding transforms hand their output back in bounded pieces: one call of gunzip, unzstd or
// exec appends at most about kMaxCallOutputBytes and says has_more(), and a chain passes that on
// so that even nested decompression reaches its sink in bounded pieces.

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "core/transform_chain.h"
#include "tests/core/transform_test_util.h"

using docpipe::DocumentContext;
using docpipe::DocumentTransform;
using docpipe::kMaxCallOutputBytes;
using docpipe::Status;
using docpipe::TransformChain;
using docpipe::TransformEnv;
using docpipe::TransformStep;
using docpipe::test::make_step;
using docpipe::test::run_ok;
using json = nlohmann::json;

namespace {

// What the transforms may add past the limit: one output block of theirs.
constexpr size_t kSlack = 1u << 20;

struct CallSizes {
  size_t calls = 0;
  size_t largest = 0;
  std::string out;
};

// Feeds `input` in one update() and drains; records the largest output of any single call.
CallSizes run_recording(const TransformStep& step, const std::string& input) {
  std::unique_ptr<DocumentTransform> t = step.begin(DocumentContext{"d/doc", "doc"});
  CallSizes r;
  auto call = [&](bool finishing, std::string_view in) {
    const size_t before = r.out.size();
    Status st = finishing ? t->finish(r.out) : t->update(in, r.out);
    REQUIRE_MESSAGE(st.has_value(), (st ? "" : st.error().message));
    ++r.calls;
    r.largest = std::max(r.largest, r.out.size() - before);
  };
  call(false, input);
  while (t->has_more()) call(false, {});
  call(true, {});
  while (t->has_more()) call(true, {});
  return r;
}

bool all_zero(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '\0'; });
}

const std::string& zeros_64mib() {
  static const std::string z(64u << 20, '\0');
  return z;
}

}  // namespace

TEST_CASE("bounded output: gunzip returns 64 MiB of zeros in pieces of about 1 MiB") {
  const std::string compressed = run_ok(*make_step("gzip", json::object()), zeros_64mib());
  REQUIRE(compressed.size() < (1u << 20));
  auto gunzip = make_step("gunzip", {{"max_ratio", 5000}});
  CallSizes r = run_recording(*gunzip, compressed);
  CHECK(r.out.size() == zeros_64mib().size());
  CHECK(all_zero(r.out));
  CHECK(r.calls >= 64);
  CHECK(r.largest <= kMaxCallOutputBytes + kSlack);
}

TEST_CASE("bounded output: unzstd returns 64 MiB of zeros in pieces of about 1 MiB") {
  const std::string compressed = run_ok(*make_step("zstd", json::object()), zeros_64mib());
  REQUIRE(compressed.size() < 64 * 1024);
  auto unzstd = make_step("unzstd", {{"max_ratio", 1000000}});
  CallSizes r = run_recording(*unzstd, compressed);
  CHECK(r.out.size() == zeros_64mib().size());
  CHECK(all_zero(r.out));
  CHECK(r.calls >= 64);
  CHECK(r.largest <= kMaxCallOutputBytes + kSlack);
}

TEST_CASE("bounded output: unzstd's pieces reassemble text exactly across frames") {
  // Text that compresses like prose (about 3x), not like a run of one byte.
  std::string text;
  uint64_t x = 88172645463325252ull;
  while (text.size() < (6u << 20)) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    text += "word" + std::to_string(x % 100000) + ((x >> 20) % 9 == 0 ? "\n" : " ");
  }
  const std::string frame = run_ok(*make_step("zstd", json::object()), text);
  auto unzstd = make_step("unzstd", json::object());
  CallSizes r = run_recording(*unzstd, frame + frame);  // two frames back to back
  CHECK(r.out == text + text);
  CHECK(r.largest <= kMaxCallOutputBytes + kSlack);
}

TEST_CASE("bounded output: exec hands a command's 8 MiB of output back in bounded pieces") {
  TransformEnv env;
  env.commands["zeros"] = docpipe::CommandSpec{{"head", "-c", "8388608", "/dev/zero"}, 30000};
  docpipe::FieldErrors errors;
  auto step =
      docpipe::test::transform_info("exec").configure(json{{"command", "zeros"}}, env, errors);
  REQUIRE(errors.empty());
  REQUIRE(step != nullptr);
  CallSizes r = run_recording(*step, "ignored input");
  CHECK(r.out.size() == (8u << 20));
  CHECK(all_zero(r.out));
  // A call stops once it holds kMaxCallOutputBytes, after the pipe reads of its round: 1 to 2
  // MiB each, so 8 MiB take 4 to 8 calls (7 were seen), never one.
  CHECK(r.calls >= (8u << 20) / (kMaxCallOutputBytes + kSlack));
  CHECK(r.largest <= kMaxCallOutputBytes + kSlack);
}

TEST_CASE("bounded output: a chain of gunzip over doubly gzipped zeros feeds its sink in pieces") {
  auto gzip = make_step("gzip", {{"level", 9}});
  const std::string once = run_ok(*gzip, zeros_64mib());
  const std::string twice = run_ok(*gzip, once);
  auto gunzip = make_step("gunzip", {{"max_ratio", 5000}});
  TransformChain chain({gunzip, gunzip});
  TransformChain::Run run = chain.begin(DocumentContext{"d/doc", "doc"});
  size_t total = 0, largest = 0, sink_calls = 0;
  bool zeros = true;
  const TransformChain::Sink sink = [&](std::string_view piece) -> Status {
    total += piece.size();
    largest = std::max(largest, piece.size());
    ++sink_calls;
    zeros = zeros && std::all_of(piece.begin(), piece.end(), [](char c) { return c == '\0'; });
    return docpipe::ok();
  };
  REQUIRE(run.update(twice, sink).has_value());
  REQUIRE(run.finish(sink).has_value());
  CHECK(total == zeros_64mib().size());
  CHECK(zeros);
  CHECK(sink_calls >= 64);
  CHECK(largest <= kMaxCallOutputBytes + kSlack);
}

TEST_CASE("bounded output: a sink's error stops the chain and is returned as is") {
  const std::string compressed = run_ok(*make_step("gzip", json::object()), zeros_64mib());
  auto gunzip = make_step("gunzip", {{"max_ratio", 5000}});
  TransformChain chain({gunzip});
  TransformChain::Run run = chain.begin(DocumentContext{"d/doc", "doc"});
  size_t calls = 0;
  Status st = run.update(compressed, [&](std::string_view) -> Status {
    if (++calls == 3) return docpipe::make_error(docpipe::ErrorCode::kIo, "disk full");
    return docpipe::ok();
  });
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().message == "disk full");
  CHECK(calls == 3);
}

TEST_CASE("bounded output: new input given while has_more() is kept, not lost") {
  const std::string zeros(8u << 20, '\0');
  const std::string compressed = run_ok(*make_step("gzip", json::object()), zeros);
  for (const char* op : {"gunzip", "unzstd"}) {
    CAPTURE(op);
    const std::string input = std::string(op) == "gunzip"
                                  ? compressed
                                  : run_ok(*make_step("zstd", json::object()), zeros);
    auto step = make_step(op, {{"max_ratio", 1000000}});
    std::unique_ptr<DocumentTransform> t = step->begin(DocumentContext{"d/doc", "doc"});
    std::string out;
    const size_t half = input.size() / 2;
    REQUIRE(t->update(input.substr(0, half), out).has_value());
    REQUIRE(t->has_more());
    // Against the protocol, the rest comes before the drain: it must still all come out.
    REQUIRE(t->update(input.substr(half), out).has_value());
    while (t->has_more()) REQUIRE(t->update({}, out).has_value());
    REQUIRE(t->finish(out).has_value());
    CHECK(out.size() == zeros.size());
    CHECK(all_zero(out));
  }
}
