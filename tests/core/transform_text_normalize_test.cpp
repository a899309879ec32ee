// text.normalize: UTF-8 validation and repair, BOM, line ends, trailing whitespace, final newline.

#include <doctest/doctest.h>

#include <random>
#include <string>

#include "tests/core/transform_test_util.h"

using docpipe::ErrorCode;
using docpipe::Result;
using docpipe::test::config_errors;
using docpipe::test::errors_text;
using docpipe::test::make_step;
using docpipe::test::run_chunked;
using docpipe::test::run_ok;
using json = nlohmann::json;
using namespace std::string_literals;

namespace {

const std::string kFffd = "\xEF\xBF\xBD";

std::string fffd(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += kFffd;
  return s;
}

std::string normalize(const json& params, const std::string& text, size_t chunk = 0) {
  return run_ok(*make_step("text.normalize", params), text, chunk);
}

std::string normalize_error(const json& params, const std::string& text, size_t chunk = 0) {
  Result<std::string> r = run_chunked(*make_step("text.normalize", params), text, chunk);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kCorruptInput);
  return r.error().message;
}

// Text with everything the transform cares about, at many offsets: multi-byte characters, BOMs
// (only the first is stripped), CRLF, lone CR, runs of spaces and tabs, invalid bytes.
std::string messy_text(uint32_t seed, bool with_invalid) {
  std::mt19937 rng(seed);
  const std::string pieces[] = {"word",         " ",
                                "\t",           "  \t ",
                                "\r\n",         "\r",
                                "\n",           "\xC3\xA9",
                                "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
                                "\r\r",         "\n\r",
                                "\xEF\xBB\xBF", "x",
                                "\r \n"};
  const std::string invalid[] = {"\xFF"s,         "\xC3"s, "\xE2\x82"s, "\xF0\x9F\x98"s,
                                 "\xED\xA0\x80"s, "\x80"s, "\xC0\xAF"s, "\xF4\x90\x80\x80"s};
  std::string s = "\xEF\xBB\xBF";
  for (int i = 0; i < 600; ++i) {
    s += pieces[rng() % 15];
    if (with_invalid && rng() % 9 == 0) s += invalid[rng() % 8];
  }
  return s;
}

}  // namespace

TEST_CASE("text.normalize: strips a leading BOM and turns CRLF and lone CR into LF") {
  CHECK(normalize(json::object(),
                  "\xEF\xBB\xBF"
                  "a\r\nb\rc\n\r\nd") == "a\nb\nc\n\nd");
  // A BOM anywhere else is a character like any other (U+FEFF), and so is a second one.
  CHECK(normalize(json::object(), "\xEF\xBB\xBF\xEF\xBB\xBFx") == "\xEF\xBB\xBFx");
  CHECK(normalize(json::object(), "x\xEF\xBB\xBF") == "x\xEF\xBB\xBF");
  // Valid text, tabs and trailing spaces pass through unchanged by default.
  const std::string text = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\t \nlast line  ";
  CHECK(normalize(json::object(), text) == text);
}

TEST_CASE(
    "text.normalize: a CR at the end of one chunk and an LF at the start of the next are "
    "one line end") {
  auto step = make_step("text.normalize", json::object());
  auto t = step->begin({"a", "a"});
  std::string out;
  REQUIRE(t->update("one\r", out).has_value());
  REQUIRE(t->update("\ntwo\r", out).has_value());
  REQUIRE(t->update("\r", out).has_value());
  REQUIRE(t->update("\n", out).has_value());
  REQUIRE(t->finish(out).has_value());
  CHECK(out == "one\ntwo\n\n");
}

TEST_CASE("text.normalize: invalid UTF-8 fails by default with the byte offset, line and cause") {
  const json fail = json::object();
  CHECK(normalize_error(fail, "ok\nbad \xFF here") ==
        "text.normalize: invalid UTF-8 at byte 7 (line 2): byte 0xff never appears in UTF-8");
  CHECK(normalize_error(fail, "a\r\nb\rc\x80") ==
        "text.normalize: invalid UTF-8 at byte 6 (line 3): unexpected continuation byte 0x80");
  CHECK(normalize_error(fail, "\xC3(") ==
        "text.normalize: invalid UTF-8 at byte 0 (line 1): byte 0x28 cannot follow 0xc3");
  CHECK(normalize_error(fail, "x\xE0\x80\x80") ==
        "text.normalize: invalid UTF-8 at byte 1 (line 1): byte 0x80 cannot follow 0xe0");
  CHECK(normalize_error(fail, "\xED\xA0\x80") ==
        "text.normalize: invalid UTF-8 at byte 0 (line 1): byte 0xa0 cannot follow 0xed");
  CHECK(normalize_error(fail, "\xF4\x90\x80\x80") ==
        "text.normalize: invalid UTF-8 at byte 0 (line 1): byte 0x90 cannot follow 0xf4");
  CHECK(normalize_error(fail, "\xC0\xAF") ==
        "text.normalize: invalid UTF-8 at byte 0 (line 1): byte 0xc0 never appears in UTF-8");
  for (size_t chunk : {size_t{1}, size_t{2}, size_t{0}}) {
    CAPTURE(chunk);
    CHECK(normalize_error(fail, "end \xE2\x82", chunk) ==
          "text.normalize: invalid UTF-8 at byte 4 (line 1): input ends inside the sequence 0xe2 "
          "0x82");
  }
}

TEST_CASE("text.normalize: replace writes one U+FFFD per maximal invalid subpart") {
  const json replace = {{"invalid", "replace"}};
  // The examples of the Unicode Standard (chapter 3, U+FFFD substitution of maximal subparts),
  // which WHATWG's decoder and Python's "replace" follow too.
  CHECK(normalize(replace, "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64") ==
        "a" + fffd(3) + "b" + fffd(1) + "c" + fffd(2) + "d");
  CHECK(normalize(replace, "\xC0\xAF\xE0\x80\xBF\xF0\x81\x82\x41") == fffd(8) + "A");
  CHECK(normalize(replace, "\xED\xA0\x80\xED\xBF\xBF\xED\xAF\x41") == fffd(8) + "A");
  CHECK(normalize(replace, "\xF4\x91\x92\x93\xFF\x41\x80\xBF\x42") ==
        fffd(5) + "A" + fffd(2) + "B");
  CHECK(normalize(replace, "\xE1\x80\xE2\xF0\x91\x92\xF1\xBF\x41") == fffd(4) + "A");
  // A truncated sequence at the very end is one more.
  CHECK(normalize(replace, "z\xF0\x9F\x98") == "z" + fffd(1));
  // An invalid byte first means the BOM after it is not leading.
  CHECK(normalize(replace, "\xFF\xEF\xBB\xBF") == fffd(1) + "\xEF\xBB\xBF");
}

TEST_CASE(
    "text.normalize: trim_trailing_whitespace drops spaces and tabs before line ends and "
    "at the end") {
  const json trim = {{"trim_trailing_whitespace", true}};
  CHECK(normalize(trim, "a  \t\r\nb \n  \n c\t d \t") == "a\nb\n\n c\t d");
  CHECK(normalize(trim, "   ") == "");
  CHECK(normalize(trim, "x \xC3\xA9 \r") == "x \xC3\xA9\n");
  // A long run held across many chunks still comes out whole when text follows it.
  const std::string spaces(100000, ' ');
  CHECK(normalize(trim, "a" + spaces + "b" + spaces + "\n", 999) == "a" + spaces + "b\n");
}

TEST_CASE("text.normalize: alternating spaces and tabs are held in bounded memory") {
  const json trim = {{"trim_trailing_whitespace", true}};
  std::string mixed;
  for (int i = 0; i < 100000; ++i) mixed += " \t";  // 200,000 runs of one byte each
  // Past the held-run limit the whitespace is written out; order and content stay exact.
  CHECK(normalize(trim, "a" + mixed + "b\n", 4096) == "a" + mixed + "b\n");
  // As a line's tail, only what is still held at the line end is trimmed: the rest was written.
  const std::string tail = normalize(trim, "a" + mixed + "\n", 4096);
  CHECK(tail.size() < mixed.size() + 2);
  CHECK(tail.substr(0, 1 + (1u << 16)) == ("a" + mixed).substr(0, 1 + (1u << 16)));
  CHECK(tail.back() == '\n');
}

TEST_CASE("text.normalize: final_newline makes a non-empty document end with a line feed") {
  const json nl = {{"final_newline", true}};
  CHECK(normalize(nl, "a") == "a\n");
  CHECK(normalize(nl, "a\n") == "a\n");
  CHECK(normalize(nl, "a\r") == "a\n");
  CHECK(normalize(nl, "a\n\n") == "a\n\n");  // ensures one, does not collapse blank lines
  CHECK(normalize(nl, "") == "");
  CHECK(normalize(nl, "\xEF\xBB\xBF") == "");
  const json both = {{"final_newline", true}, {"trim_trailing_whitespace", true}};
  CHECK(normalize(both, "a \t") == "a\n");
  CHECK(normalize(both, " \t ") == "");
  CHECK(normalize(json{{"final_newline", true}, {"invalid", "replace"}}, "a\xFF") ==
        "a" + fffd(1) + "\n");
}

TEST_CASE("text.normalize: an empty document stays empty") {
  CHECK(normalize(json::object(), "") == "");
  CHECK(normalize(json{{"invalid", "replace"}, {"trim_trailing_whitespace", true}}, "") == "");
}

TEST_CASE("text.normalize: the output does not depend on how the document is chunked") {
  const json option_sets[] = {
      json::object(),
      {{"trim_trailing_whitespace", true}},
      {{"final_newline", true}},
      {{"invalid", "replace"}, {"trim_trailing_whitespace", true}, {"final_newline", true}},
      {{"invalid", "replace"}}};
  for (const json& options : option_sets) {
    CAPTURE(options.dump());
    const bool replace = options.value("invalid", "fail") == "replace";
    for (uint32_t seed = 1; seed <= 3; ++seed) {
      const std::string text = messy_text(seed, replace);
      const std::string whole = normalize(options, text);
      CHECK(whole.find('\r') == std::string::npos);
      for (size_t chunk : {1, 2, 3, 4, 5, 7, 64, 4096}) {
        CAPTURE(chunk);
        CHECK(normalize(options, text, chunk) == whole);
      }
    }
  }
}

TEST_CASE("text.normalize: parameter errors name the parameter and the expected value") {
  CHECK(errors_text(config_errors("text.normalize", json{{"invalid", "ignore"}})) ==
        "invalid: expected one of \"fail\", \"replace\", got \"ignore\"\n");
  CHECK(errors_text(config_errors(
            "text.normalize",
            json{{"trim_trailing_whitespace", "yes"}, {"final_newline", 1}, {"bom", false}})) ==
        "bom: unknown parameter\n"
        "trim_trailing_whitespace: expected boolean, got \"yes\"\n"
        "final_newline: expected boolean, got 1\n");
}
