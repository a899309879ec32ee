// text.chunk (core/transforms/text_chunk.cc): JSON Lines of chunks with offsets and pages, cut
// at the best edge, with overlap, by characters or approximate tokens, whatever the pieces the
// document arrives in.

#include <doctest/doctest.h>

#include <cctype>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/transforms/html_charset.h"
#include "tests/core/transform_test_util.h"

using docpipe::test::config_errors;
using docpipe::test::errors_text;
using docpipe::test::make_step;
using docpipe::test::run_chunked;
using json = nlohmann::json;

namespace {

std::vector<json> chunks(const std::string& text, const json& params, size_t piece = 0) {
  auto step = make_step("text.chunk", params);
  docpipe::Result<std::string> out = run_chunked(*step, text, piece);
  REQUIRE(out.has_value());
  std::vector<json> lines;
  size_t at = 0;
  while (at < out->size()) {
    const size_t nl = out->find('\n', at);
    REQUIRE(nl != std::string::npos);
    lines.push_back(json::parse(out->substr(at, nl - at)));
    at = nl + 1;
  }
  return lines;
}

std::string paragraphs(int n) {
  std::string t;
  for (int i = 0; i < n; ++i) {
    t += "Paragraph " + std::to_string(i) + " says something. It has two sentences!\n\n";
  }
  return t;
}

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace

TEST_CASE("text.chunk: a short document is one chunk, trimmed, with its offsets") {
  std::vector<json> c = chunks("  \n Hello, world.\n\n", {{"size", 100}, {"overlap", 0}});
  REQUIRE(c.size() == 1);
  CHECK(c[0] == json::parse(R"({"source":"dir/doc.txt","chunk":0,"start":4,"end":17,"page":1,
                                "text":"Hello, world."})"));
  CHECK(chunks("", json::object()).empty());
  CHECK(chunks(" \n\t\f ", json::object()).empty());
}

TEST_CASE("text.chunk: chunks end at paragraph, then sentence, then word edges") {
  // Each paragraph is 57 characters plus a blank line: a window of 130 holds two.
  const std::string text = paragraphs(6);
  std::vector<json> c = chunks(text, {{"size", 130}, {"overlap", 0}});
  REQUIRE(c.size() == 3);
  for (const json& j : c) {
    const std::string t = j["text"];
    CHECK(t.starts_with("Paragraph "));
    CHECK(t.ends_with("two sentences!"));
    CHECK(text.substr(j["start"].get<size_t>(),
                      j["end"].get<size_t>() - j["start"].get<size_t>()) == t);
  }
  // No paragraph break in the window's second half: a sentence end.
  c = chunks("One sentence is written here. Another one follows and goes on for a while",
             {{"size", 40}, {"overlap", 0}});
  REQUIRE(c.size() == 3);
  CHECK(c[0]["text"] == "One sentence is written here.");
  CHECK(c[1]["text"] == "Another one follows and goes on for a");
  // No sentence either: a space; one long word: cut where the size runs out.
  c = chunks("alpha beta gamma delta epsilon zeta eta theta", {{"size", 20}, {"overlap", 0}});
  CHECK(c[0]["text"] == "alpha beta gamma");
  c = chunks(std::string(50, 'x'), {{"size", 20}, {"overlap", 0}});
  REQUIRE(c.size() == 3);
  CHECK(c[0]["text"] == std::string(20, 'x'));
  CHECK(c[2]["text"] == std::string(10, 'x'));
}

TEST_CASE("text.chunk: consecutive chunks overlap, each starting at a word") {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "word" + std::to_string(i) + " ";
  std::vector<json> c = chunks(text, {{"size", 100}, {"overlap", 30}});
  REQUIRE(c.size() > 10);
  for (size_t i = 1; i < c.size(); ++i) {
    const size_t prev_end = c[i - 1]["end"], start = c[i]["start"];
    const size_t prev_start = c[i - 1]["start"];
    CHECK(start > prev_start);
    CHECK(start < prev_end);        // they share text
    CHECK(prev_end - start <= 30);  // about `overlap` characters
    CHECK(text[start - 1] == ' ');  // at a word
    CHECK(c[i]["chunk"] == static_cast<int>(i));
  }
  CHECK(c.back()["text"].get<std::string>().ends_with("word199"));
}

TEST_CASE("text.chunk: the output does not depend on the pieces the document arrives in") {
  std::string text = paragraphs(40);
  text += std::string(3000, 'y') + " tail \xC3\xA9t\xC3\xA9 \xE2\x82\xAC\f next page";
  for (const json& params : {json{{"size", 120}, {"overlap", 20}},
                             json{{"size", 50}, {"overlap", 0}, {"unit", "tokens"}},
                             json{{"size", 16}, {"overlap", 8}, {"unit", "tokens"}}}) {
    INFO(params.dump());
    const std::vector<json> whole = chunks(text, params, 0);
    CHECK(whole.size() > 5);
    for (size_t piece : {1, 3, 7, 64, 4096}) {
      INFO("pieces of " << piece);
      CHECK(chunks(text, params, piece) == whole);
    }
  }
}

TEST_CASE("text.chunk: without overlap every word is in exactly one chunk, in order") {
  const std::string text = paragraphs(50) + "last words";
  std::vector<json> c = chunks(text, {{"size", 90}, {"overlap", 0}});
  std::string joined;
  size_t prev_end = 0;
  for (const json& j : c) {
    CHECK(j["start"].get<size_t>() >= prev_end);
    prev_end = j["end"];
    joined += j["text"].get<std::string>() + " ";
  }
  std::string words, rejoined;
  for (char ch : text) words += std::isspace(static_cast<unsigned char>(ch)) ? ' ' : ch;
  for (char ch : joined) rejoined += std::isspace(static_cast<unsigned char>(ch)) ? ' ' : ch;
  auto squash = [](std::string s) {
    std::string out;
    for (char ch : s)
      if (!(ch == ' ' && (out.empty() || out.back() == ' '))) out += ch;
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
  };
  CHECK(squash(words) == squash(rejoined));
}

TEST_CASE("text.chunk: pages come from form feeds, as pdf.text separates them") {
  std::vector<json> c =
      chunks("First page text.\fSecond page text.\f\fFourth page.", {{"size", 20}, {"overlap", 0}});
  REQUIRE(c.size() == 3);
  CHECK(c[0]["page"] == 1);
  CHECK(c[1]["page"] == 2);
  CHECK(c[1]["text"] == "Second page text.");
  CHECK(c[2]["page"] == 4);
}

TEST_CASE("text.chunk: characters are code points and UTF-8 is never cut") {
  std::string text;
  for (int i = 0; i < 300; ++i) text += "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E";  // 日本語
  std::vector<json> c = chunks(text, {{"size", 100}, {"overlap", 10}});
  REQUIRE(c.size() >= 9);
  for (const json& j : c) {
    const std::string t = j["text"];
    CHECK(docpipe::is_valid_utf8(t));
    CHECK(code_points(t) <= 100);
  }
  CHECK(code_points(c[0]["text"]) == 100);
  // Invalid UTF-8 in the document becomes U+FFFD in the JSON, which stays valid.
  c = chunks("bad \xFF byte", json::object());
  REQUIRE(c.size() == 1);
  CHECK(c[0]["text"] == "bad \xEF\xBF\xBD byte");
}

TEST_CASE("text.chunk: tokens count words by 4 bytes and other characters by one") {
  // "abcdefgh" is 2 tokens, "," 1, "xy" 1: 4 tokens per repetition.
  std::string text;
  for (int i = 0; i < 40; ++i) text += "abcdefgh, xy ";
  std::vector<json> c = chunks(text, {{"unit", "tokens"}, {"size", 40}, {"overlap", 0}});
  REQUIRE(c.size() == 4);
  CHECK(c[0]["text"] == text.substr(0, 10 * 13 - 1));  // 10 repetitions, trailing space trimmed
  // A word longer than a chunk is cut every size * 4 bytes.
  c = chunks(std::string(200, 'w'), {{"unit", "tokens"}, {"size", 16}, {"overlap", 0}});
  REQUIRE(c.size() == 4);
  CHECK(c[0]["text"] == std::string(64, 'w'));
  CHECK(c[3]["text"] == std::string(8, 'w'));
}

TEST_CASE("text.chunk: a window cut by blanks is the same however the text arrives") {
  // Review case: tokens, a word, 70,000 blanks, then words. The window ends at
  // 64 x size + 64 KiB bytes whatever the pieces.
  std::string text = "a" + std::string(70000, ' ');
  for (char c = 'b'; c <= 'z'; ++c) text += std::string(1, c) + " ";
  const json params = {{"unit", "tokens"}, {"size", 16}, {"overlap", 0}};
  const std::vector<json> whole = chunks(text, params, 0);
  for (size_t piece : {1, 4096, 65536}) {
    INFO("pieces of " << piece);
    CHECK(chunks(text, params, piece) == whole);
  }
}

TEST_CASE("text.chunk: a document of blanks does not grow the window without end") {
  std::string text(2u << 20, ' ');
  text += "end";
  std::vector<json> c = chunks(text, {{"unit", "tokens"}, {"size", 16}, {"overlap", 0}}, 65536);
  REQUIRE(c.size() == 1);
  CHECK(c[0]["text"] == "end");
  CHECK(c[0]["start"] == 2u << 20);
}

TEST_CASE("text.chunk: parameters are checked") {
  CHECK(errors_text(config_errors("text.chunk", {{"size", 100}, {"overlap", 60}})) ==
        "overlap: must be at most half of size (50), or every chunk would repeat most of the "
        "one before\n");
  CHECK(errors_text(config_errors("text.chunk", {{"unit", "words"}})) ==
        "unit: expected one of \"characters\", \"tokens\", got \"words\"\n");
  CHECK(errors_text(config_errors("text.chunk", {{"size", 8}})) ==
        "size: expected integer 16..100000, got 8\n");
}
