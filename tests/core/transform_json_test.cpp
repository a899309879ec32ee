// json.pretty and json.minify.

#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "core/transforms/json_format.h"
#include "tests/core/transform_test_util.h"

using docpipe::ErrorCode;
using docpipe::Result;
using docpipe::test::config_errors;
using docpipe::test::errors_text;
using docpipe::test::make_step;
using docpipe::test::run_chunked;
using docpipe::test::run_ok;
using json = nlohmann::json;

namespace {

const char* const kJsonInput =
    "{\"z\": 1, \"a\": [1.0, 1e2, 0.1, 12345678901234567890, 1.5e300, -7, 3.14159, 1E-7],\n"
    " \"s\": \"caf\\u00e9 \xE2\x82\xAC \\n \\\"q\\\" \\u001f\", \"dup\": 1, \"n\": null,\r\n"
    " \"t\": true, \"o\": {}, \"e\": [], \"dup\": {\"k\": [false]}}";

std::string json_error(const std::string& op, const std::string& text, size_t chunk = 0) {
  Result<std::string> r = run_chunked(*make_step(op, json::object()), text, chunk);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kCorruptInput);
  return r.error().message;
}

}  // namespace

TEST_CASE("json.pretty: re-indents keeping key order, last duplicate wins, newline at the end") {
  const std::string expected =
      "{\n"
      "  \"z\": 1,\n"
      "  \"a\": [\n"
      "    1.0,\n"
      "    1e2,\n"
      "    0.1,\n"
      "    12345678901234567890,\n"
      "    1.5e300,\n"
      "    -7,\n"
      "    3.14159,\n"
      "    1E-7\n"
      "  ],\n"
      "  \"s\": \"caf\xC3\xA9 \xE2\x82\xAC \\n \\\"q\\\" \\u001f\",\n"
      "  \"dup\": {\n"
      "    \"k\": [\n"
      "      false\n"
      "    ]\n"
      "  },\n"
      "  \"n\": null,\n"
      "  \"t\": true,\n"
      "  \"o\": {},\n"
      "  \"e\": []\n"
      "}\n";
  auto pretty = make_step("json.pretty", json::object());
  CHECK(run_ok(*pretty, kJsonInput) == expected);
  for (size_t chunk : {1, 7, 64}) CHECK(run_ok(*pretty, kJsonInput, chunk) == expected);
  CHECK(run_ok(*make_step("json.pretty", json{{"indent", 4}}), "{\"a\":[1]}") ==
        "{\n    \"a\": [\n        1\n    ]\n}\n");
  CHECK(run_ok(*make_step("json.pretty", json{{"indent", 0}}), "{\"a\":[1]}") ==
        "{\n\"a\": [\n1\n]\n}\n");
  CHECK(run_ok(*pretty, " 42 ") == "42\n");
}

TEST_CASE("json.minify: a NUL byte after a valid document is invalid JSON (fuzz finding)") {
  // nlohmann's lexer stops at a NUL, so "[31]\t\0] ..." validated as "[31]" and the rewriter
  // then read the unbalanced "]" past it (a vector index below zero).
  const std::string text("[31]\t\0] \0\0\0\0\0\0\0\x0f@", 17);
  CHECK(json_error("json.minify", text) ==
        "json.minify: invalid JSON at line 1, column 6: a NUL byte");
  CHECK(json_error("json.pretty", std::string("{\"a\":\"b\0\"}", 10)) ==
        "json.pretty: invalid JSON at line 1, column 8: a NUL byte");
}

TEST_CASE("json.minify: writes one line without a final newline") {
  auto minify = make_step("json.minify", json::object());
  CHECK(run_ok(*minify, kJsonInput, 5) ==
        "{\"z\":1,\"a\":[1.0,1e2,0.1,12345678901234567890,1.5e300,-7,3.14159,1E-7],"
        "\"s\":\"caf\xC3\xA9 \xE2\x82\xAC \\n \\\"q\\\" \\u001f\",\"dup\":{\"k\":[false]},"
        "\"n\":null,\"t\":true,\"o\":{},\"e\":[]}");
  CHECK(run_ok(*minify, "[ \"x\" , { } ]\n") == "[\"x\",{}]");
}

TEST_CASE("json.pretty: invalid JSON is corrupt input with the line and column") {
  CHECK(json_error("json.pretty", "") ==
        "json.pretty: invalid JSON at line 1, column 1: syntax error while parsing value - "
        "unexpected end of input; expected '[', '{', or a literal");
  CHECK(json_error("json.pretty", "{\n  \"a\" 1}", 3) ==
        "json.pretty: invalid JSON at line 2, column 7: syntax error while parsing object "
        "separator - unexpected number literal; expected ':'");
  CHECK(json_error("json.minify", "[1,2,]") ==
        "json.minify: invalid JSON at line 1, column 6: syntax error while parsing value - "
        "unexpected ']'; expected '[', '{', or a literal");
  CHECK(json_error("json.pretty", "[1] x") ==
        "json.pretty: invalid JSON at line 1, column 5: syntax error while parsing value - "
        "invalid literal; last read: '1] x'; expected end of input");
  CHECK(json_error("json.pretty", "[1e400]") ==
        "json.pretty: invalid JSON at line 1, column 6: number overflow parsing '1e400'");
  CHECK(json_error("json.pretty", "[\"a\xFF\"]")
            .rfind(
                "json.pretty: invalid JSON at line 1, column 4: syntax error while parsing value - "
                "invalid string: ill-formed UTF-8 byte",
                0) == 0);
}

TEST_CASE("json.pretty: error locations are where nlohmann's own parser puts them") {
  for (const std::string text :
       {"", "{", "{\n  \"a\": tru\n}", "[\n\n  \"abc\n\"]", "{\"a\":1}}", "\n\n   @"}) {
    CAPTURE(text);
    std::string theirs;
    try {
      json parsed = json::parse(text);
      FAIL("parsed: " << parsed.dump());
    } catch (const json::parse_error& e) {
      theirs = e.what();
    }
    REQUIRE_FALSE(theirs.empty());
    const size_t at = theirs.find("line ");
    const std::string location = theirs.substr(at, theirs.find(':', at) - at);
    CHECK(json_error("json.pretty", text).find("invalid JSON at " + location + ": ") !=
          std::string::npos);
  }
}

TEST_CASE("json.pretty: nesting deeper than the limit is refused where it passes the limit") {
  const int depth = docpipe::kMaxJsonFormatDepth;
  const std::string ok_text = std::string(depth, '[') + std::string(depth, ']');
  CHECK(run_ok(*make_step("json.minify", json::object()), ok_text) == ok_text);
  // The object is level 1, so the bracket at column 5 + 512 opens level 513.
  const std::string deep = "{\"k\": \"[[\",\n\"v\": " + std::string(depth + 10, '[');
  CHECK(json_error("json.minify", deep) == "json.minify: invalid JSON at line 2, column " +
                                               std::to_string(5 + depth) +
                                               ": nesting deeper than 512 levels");
}

TEST_CASE("json.minify: an object of 300,000 keys takes linear time, duplicates resolved") {
  std::string text = "{";
  std::string expected = "{";
  for (int i = 0; i < 300000; ++i) {
    const std::string member = "\"k" + std::to_string(i) + "\":" + std::to_string(i);
    text += member + ",";
    expected += (i == 0 ? std::string("\"k0\":\"last\"") : member) + (i + 1 < 300000 ? "," : "");
  }
  text += "\"k0\":\"last\"}";  // a duplicate of the first key, once the object is indexed
  expected += "}";
  const auto start = std::chrono::steady_clock::now();
  const std::string out = run_ok(*make_step("json.minify", json::object()), text);
  // A linear search per key (nlohmann's own builder) would take minutes here.
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));
  CHECK(out == expected);
}

TEST_CASE("json.pretty: output that indentation would multiply past 16x the input is refused") {
  const std::string nested = std::string(500, '[') + std::string(500, ']');  // 1,000 bytes
  Result<std::string> r = run_chunked(*make_step("json.pretty", {{"indent", 8}}), nested, 0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kTooLarge);
  CHECK(r.error().message ==
        "json.pretty: output would exceed 1064576 bytes (16 times the input): the document "
        "nests too deeply for this indent");
  // The same at indent 1 fits (about 250 KB).
  CHECK(run_ok(*make_step("json.pretty", {{"indent", 1}}), nested).size() > 250000);
}

TEST_CASE("json.pretty: a document over max_input_bytes is refused with the limit named") {
  auto step = make_step("json.pretty", json{{"max_input_bytes", 10}});
  CHECK(run_ok(*step, "[1,2,3,45]") == "[\n  1,\n  2,\n  3,\n  45\n]\n");
  Result<std::string> r = run_chunked(*step, "[1,2,3,456]", 4);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kTooLarge);
  CHECK(r.error().message ==
        "json.pretty: document exceeds max_input_bytes (10 bytes); json.pretty needs the whole "
        "document in memory, raise max_input_bytes to allow larger ones");
}

TEST_CASE("json.pretty: parameter errors name the parameter and the expected value") {
  CHECK(errors_text(config_errors("json.pretty", json{{"indent", 9}})) ==
        "indent: expected integer 0..8, got 9\n");
  CHECK(errors_text(config_errors("json.pretty", json{{"indent", -1}, {"sort_keys", true}})) ==
        "sort_keys: unknown parameter\nindent: expected integer 0..8, got -1\n");
  CHECK(errors_text(config_errors("json.minify", json{{"indent", 2}})) ==
        "indent: unknown parameter\n");
  CHECK(errors_text(config_errors("json.minify", json{{"max_input_bytes", "1M"}})) ==
        "max_input_bytes: expected integer >= 1, got \"1M\"\n");
}

TEST_CASE("json.pretty: numbers keep their text exactly as written, in json.minify too") {
  const std::string numbers =
      "[123456789012345678901234567890, -0, 1E2, -0.0, 1e-400, 0.10000000000000000000001, "
      "-1.5E+3, 1.0e+00, 18446744073709551616, -9223372036854775809, 5]";
  CHECK(run_ok(*make_step("json.minify", json::object()), numbers) ==
        "[123456789012345678901234567890,-0,1E2,-0.0,1e-400,0.10000000000000000000001,-1.5E+3,"
        "1.0e+00,18446744073709551616,-9223372036854775809,5]");
  CHECK(run_ok(*make_step("json.pretty", {{"indent", 1}}), "{\"a\": -0, \"b\": {\"c\": 1E2}}", 3) ==
        "{\n \"a\": -0,\n \"b\": {\n  \"c\": 1E2\n }\n}\n");
  CHECK(run_ok(*make_step("json.minify", json::object()), " -0 ") == "-0");
  // Still validated: a number JSON does not allow is refused.
  CHECK(json_error("json.minify", "[01]").find("json.minify: invalid JSON at line 1, column 3") ==
        0);
  CHECK(json_error("json.minify", "[1.]").find("json.minify: invalid JSON at line 1, column ") ==
        0);
}

TEST_CASE("json.minify: strings, keys and duplicates come out as nlohmann's ordered_json writes") {
  // Differential: documents whose numbers are plain integers, so that nlohmann's own rewrite is
  // the reference for everything else (escapes, key order, duplicate keys, nesting).
  const std::vector<std::string> docs = {
      "{\"a\": 1, \"\\u0061\": 2, \"b\": [1, {\"c\": 1, \"c\": {\"d\": 1, \"d\": 2}}], \"a\": 3}",
      "{\"k\": {\"x\": 1}, \"k\": [1, 2], \"k\": {\"y\": {\"z\": 1, \"z\": 2}}}",
      "[\"\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\\u0000\\u001f\\u007f\\\"\\\\\", \"\xC3\xA9\"]",
      "{\"\\\"q\\\\\": {\"\\\"q\\\\\": 1}, \"\\\"q\\\\\": [true, false, null]}",
      "{\"a\": {\"b\": 1, \"a\": 2}, \"b\": {}, \"a\": [], \"c\": [[], {}]}",
      "{\"x\": 1, \"y\": {\"x\": 2, \"x\": 3}, \"x\": {\"x\": 4, \"x\": 5}, \"x\": 6}",
  };
  auto minify = make_step("json.minify", json::object());
  for (int indent : {-1, 0, 2, 3}) {
    auto step = indent < 0 ? make_step("json.minify", json::object())
                           : make_step("json.pretty", {{"indent", indent}});
    for (const std::string& doc : docs) {
      CAPTURE(doc);
      CAPTURE(indent);
      const std::string expected =
          nlohmann::ordered_json::parse(doc).dump(indent) + (indent < 0 ? "" : "\n");
      CHECK(run_ok(*step, doc) == expected);
      CHECK(run_ok(*step, doc, 2) == expected);
    }
  }
  // Many members, then a duplicate of the first: the first keeps its place with the last value.
  std::string wide = "{";
  for (int i = 0; i < 1000; ++i)
    wide += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  wide += "\"k0\":{\"k1\":1,\"k1\":2},\"k999\":null}";
  CHECK(run_ok(*minify, wide) == nlohmann::ordered_json::parse(wide).dump());
}
