// redact: built-in patterns, custom patterns, parameters, and chunking independence.

#include <doctest/doctest.h>

#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/transforms/redact_matcher.h"
#include "tests/core/transform_test_util.h"

using docpipe::test::config_errors;
using docpipe::test::errors_text;
using docpipe::test::make_step;
using docpipe::test::run_ok;
using json = nlohmann::json;

namespace {

std::string redact(const json& params, const std::string& text, size_t chunk = 0) {
  return run_ok(*make_step("redact", params), text, chunk);
}

std::string redact_all(const std::string& text) {
  return redact(json{{"patterns", {"email", "card", "ipv4"}}}, text);
}

size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

// A document with many sensitive items at varied offsets, each between separators, plus near
// misses that must stay. Returns the text and how many items should be redacted.
std::pair<std::string, size_t> mixed_document(size_t items, unsigned seed) {
  std::mt19937 rng(seed);
  const std::vector<std::string> sensitive_cards = {"4111 1111 1111 1111", "4111-1111-1111-1111",
                                                    "5500000000000004",    "378282246310005",
                                                    "6011 1111 1111 1117", "4222222222222"};
  const std::vector<std::string> near_misses = {
      "4111 1111 1111 1112", "1.2.3.4.5", "256.1.1.1",      "v1.2.3.4", "01.2.3.4",
      "not@an-address",      "@",         "12345678901",    "1.2.3",    "41111111111111111111111",
      "user@@example.com.",  "a@b",       "999.999.999.999"};
  const std::vector<std::string> fillers = {"lorem",    "ipsum", "dolor", "ünïcødé", "x",  "x4y",
                                            "sit-amet", "e.g.",  "—",     "and",     "or", "\t"};
  const std::vector<std::pair<std::string, std::string>> wrappers = {
      {" ", " "}, {"(", ")"}, {"<", ">,"}, {"\"", "\";"}, {"\n", ".\n"}, {": ", " "}};
  std::string doc;
  size_t expected = 0;
  for (size_t i = 0; i < items; ++i) {
    for (size_t f = rng() % 6; f > 0; --f) doc += fillers[rng() % fillers.size()] + " ";
    const auto& [open, close] = wrappers[rng() % wrappers.size()];
    std::string item;
    switch (rng() % 5) {
      case 0:
        item = "user" + std::to_string(i) + ".name+tag@mail" + std::to_string(rng() % 100) +
               ".example.co.uk";
        ++expected;
        break;
      case 1:
        item = sensitive_cards[rng() % sensitive_cards.size()];
        ++expected;
        break;
      case 2:
        item = std::to_string(rng() % 256) + "." + std::to_string(rng() % 256) + "." +
               std::to_string(rng() % 256) + "." + std::to_string(rng() % 256);
        ++expected;
        break;
      default:
        item = near_misses[rng() % near_misses.size()];
        break;
    }
    doc += open + item + close;
  }
  return {doc, expected};
}

}  // namespace

TEST_CASE("redact: e-mail addresses and cards are redacted by default") {
  CHECK(redact(json::object(),
               "Contact alice@example.com or bob.smith+tag@mail.example.co.uk, card "
               "4111 1111 1111 1111, host 10.0.0.1.") ==
        "Contact [REDACTED] or [REDACTED], card [REDACTED], host 10.0.0.1.");
}

TEST_CASE("redact: an e-mail address at the end of a sentence keeps the full stop") {
  CHECK(redact_all("mail me at a.b@c-d.example.org.\n(x.y+z@host.io)") ==
        "mail me at [REDACTED].\n([REDACTED])");
  CHECK(redact_all("not addresses: a@b, @example.com, user@localhost") ==
        "not addresses: a@b, @example.com, user@localhost");
}

TEST_CASE("redact: card numbers must pass the Luhn check") {
  CHECK(redact_all("4111111111111111, 5500-0000-0000-0004; 378282246310005/4222222222222") ==
        "[REDACTED], [REDACTED]; [REDACTED]/[REDACTED]");
  CHECK(redact_all("4111111111111112, 5500-0000-0000-0005; 4111 1111 1111 1112") ==
        "4111111111111112, 5500-0000-0000-0005; 4111 1111 1111 1112");
}

TEST_CASE("redact: card digits must be a whole run of 13 to 19 digits") {
  // 12 digits, 23 digits, doubled separators, and a Luhn-valid card inside longer numbers.
  CHECK(redact_all("411111111111, 41111111111111111111111, 4111  1111  1111  1111, "
                   "94111111111111111, 41111111111111119, 4111--1111--1111--1111") ==
        "411111111111, 41111111111111111111111, 4111  1111  1111  1111, "
        "94111111111111111, 41111111111111119, 4111--1111--1111--1111");
  // Single separators join groups into one run, which is judged as a whole.
  CHECK(redact_all("ref 12 4111 1111 1111 1111") == "ref 12 4111 1111 1111 1111");
  CHECK(redact_all("4111 1111 1111 1111 12/27") == "4111 1111 1111 1111 12/27");
  CHECK(redact_all("4111 1111 1111 1111, exp 12/27") == "[REDACTED], exp 12/27");
  CHECK(redact_all("x4111111111111111y -6011-1111-1111-1117-") == "x[REDACTED]y -[REDACTED]-");
}

TEST_CASE("redact: inside a refused run of digits the other patterns are still found") {
  json params = {{"patterns", {"card", "email", "ipv4"}}, {"custom", {"[0-9]{3}-[0-9]{4}"}}};
  // The run is too long for a card; a phone number, an address and a quad sit inside or after it.
  CHECK(redact(params, "1234567890123456789012 987-6543") == "1234567890123456789012 [REDACTED]");
  CHECK(redact(params, "12345678901234567890123 4567@example.com") ==
        "12345678901234567890123 [REDACTED]");
  CHECK(redact(params, "99999999999999999999 10.0.0.1, 4111 1111 1111 1111.") ==
        "99999999999999999999 [REDACTED], [REDACTED].");
  // A table of long numbers: nothing is a card, and the scan skips each run in one step.
  std::string table;
  for (int i = 0; i < 20000; ++i) table += "12345678901234567890" + std::to_string(i) + "\n";
  CHECK(redact(params, table, 4096) == table);
}

TEST_CASE("redact: ipv4 octets are 0..255 and the quad is not part of a longer sequence") {
  json ipv4 = {{"patterns", {"ipv4"}}};
  CHECK(redact(ipv4, "0.0.0.0 255.255.255.255 192.168.1.10, (8.8.4.4): 1.2.3.4.") ==
        "[REDACTED] [REDACTED] [REDACTED], ([REDACTED]): [REDACTED].");
  CHECK(redact(ipv4, "256.1.1.1 1.2.3.256 1.2.3.4.5 v1.2.3.4 1.2.3.4a 01.2.3.4 1.2.3 a.1.2.3.4") ==
        "256.1.1.1 1.2.3.256 1.2.3.4.5 v1.2.3.4 1.2.3.4a 01.2.3.4 1.2.3 a.1.2.3.4");
  CHECK(redact(ipv4, "1.2.3.4-5 10.0.0.1/24") == "[REDACTED]-5 [REDACTED]/24");
}

TEST_CASE("redact: custom patterns and the replacement text are honoured") {
  json params = {{"patterns", json::array()},
                 {"custom", {"secret-[0-9]+", "\\bkey\\b"}},
                 {"replacement", "***"}};
  CHECK(redact(params, "secret-42 keys key monkey secret- key") ==
        "*** keys *** monkey secret- ***");
}

TEST_CASE("redact: the longest match wins where several patterns start") {
  json params = {{"patterns", {"email", "card"}}, {"custom", {"[0-9]{4}", "ID-[0-9]+@x"}}};
  // A Luhn-failing run is still redacted piecewise by a custom pattern that matches it.
  CHECK(redact(params, "4111111111111112; 4111111111111111; ID-7@x.com; ID-7@xy") ==
        "[REDACTED][REDACTED][REDACTED][REDACTED]; [REDACTED]; [REDACTED]; [REDACTED]y");
}

TEST_CASE("redact: an empty replacement deletes the matches") {
  CHECK(redact(json{{"replacement", ""}}, "a x@y.com b") == "a  b");
}

TEST_CASE("redact: empty documents and documents without matches pass through") {
  CHECK(redact(json::object(), "") == "");
  std::string plain(100000, 'a');
  CHECK(redact(json::object(), plain, 4096) == plain);
}

TEST_CASE("redact: output is the same for every chunking of a dense document") {
  auto [doc, expected] = mixed_document(3000, 7);
  auto step = make_step("redact", json{{"patterns", {"email", "card", "ipv4"}}});
  std::string whole = run_ok(*step, doc);
  CHECK(count(whole, "[REDACTED]") == expected);
  CHECK(count(doc, "[REDACTED]") == 0);
  for (size_t chunk :
       {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{64}, size_t{4096}, size_t{20000}}) {
    CAPTURE(chunk);
    CHECK(run_ok(*step, doc, chunk) == whole);
  }
}

TEST_CASE("redact: chunking independence holds with word boundaries and a small hold-back") {
  auto [doc, expected] = mixed_document(1500, 11);
  doc += " BEGIN short END BEGIN " + std::string(200, 'z') + " END";
  auto step = make_step("redact", json{{"patterns", {"email", "card", "ipv4"}},
                                       {"custom", {"\\b(?:lorem|dolor)\\b", "BEGIN[^!]*?END"}},
                                       {"max_match_bytes", 64}});
  std::string whole = run_ok(*step, doc);
  CHECK(count(whole, "lorem") == 0);
  CHECK(count(whole, "[REDACTED]") > expected);
  CHECK(whole.find("BEGIN short END") == std::string::npos);
  CHECK(whole.find("BEGIN " + std::string(200, 'z') + " END") != std::string::npos);
  std::mt19937 rng(3);
  for (size_t chunk :
       {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{64}, size_t{65}, size_t{4096}}) {
    CAPTURE(chunk);
    CHECK(run_ok(*step, doc, chunk) == whole);
  }
  // Irregular chunks, empty ones included.
  auto t = step->begin(docpipe::DocumentContext{"a", "a"});
  std::string out;
  for (size_t at = 0; at < doc.size();) {
    size_t n = std::min<size_t>(rng() % 300, doc.size() - at);
    REQUIRE(t->update(std::string_view(doc).substr(at, n), out).has_value());
    at += n;
  }
  REQUIRE(t->finish(out).has_value());
  CHECK(out == whole);
}

TEST_CASE("redact: a chunk edge at any byte of a tricky spot does not change the output") {
  // Everything the decisions look at around an edge: context before (run starts, dotted
  // sequences, \b), context after, and matches straddling the edge.
  const std::vector<std::string> spots = {
      "v1.2.3.4 ", "a.1.2.3.4 ", "1.2.3.4.5 ", "(10.0.0.1) ", "1.2.3.4.x ",
      "12 4111 1111 1111 1111 ", "4111 1111 1111 1111 12 ", "-4111-1111-1111-1111- ",
      "x4111111111111111 ", "4111 1111 1111 1111  ", "mykey key keys ", "ab.cd@example.com. ",
      "4111111111111111@x.com ", "a@b.co key-4222222222222-key ",
      // Exactly max_match_bytes long: only the byte after it says whether \b holds.
      "q" + std::string(62, 'w') + "qs ", "q" + std::string(62, 'w') + "q "};
  const size_t max_match = 64;
  auto step = make_step("redact", json{{"patterns", {"email", "card", "ipv4"}},
                                       {"custom", {"\\bkey\\b", "\\bq[a-z]+q\\b"}},
                                       {"max_match_bytes", max_match}});
  std::string pad;
  while (pad.size() < 20000) pad += "z ";
  for (const std::string& spot : spots) {
    CAPTURE(spot);
    std::string doc = pad + spot + pad;
    std::string whole = run_ok(*step, doc);
    CHECK(whole.size() == doc.size() - spot.size() + run_ok(*step, spot).size());
    // Two chunks, split so that the held-back tail starts at every byte of the spot.
    for (size_t split = pad.size(); split <= pad.size() + spot.size() + max_match + 16; ++split) {
      auto t = step->begin(docpipe::DocumentContext{"a", "a"});
      std::string out;
      REQUIRE(t->update(std::string_view(doc).substr(0, split), out).has_value());
      REQUIRE(t->update(std::string_view(doc).substr(split), out).has_value());
      REQUIRE(t->finish(out).has_value());
      CAPTURE(split);
      REQUIRE(out == whole);
    }
  }
}

TEST_CASE("redact: a match longer than max_match_bytes is left alone") {
  json params = {{"patterns", json::array()}, {"custom", {"<[a-z]+>"}}, {"max_match_bytes", 64}};
  std::string fits = "<" + std::string(62, 'x') + ">";
  std::string too_long = "<" + std::string(63, 'x') + ">";
  std::string text = "a " + fits + " b " + too_long + " c";
  CHECK(redact(params, text) == "a [REDACTED] b " + too_long + " c");
  for (size_t chunk : {size_t{1}, size_t{5}, size_t{64}}) {
    CHECK(redact(params, text, chunk) == redact(params, text));
  }
  // Greedy patterns are cut at the limit rather than skipped.
  json greedy = {{"patterns", json::array()}, {"custom", {"x+"}}, {"max_match_bytes", 64}};
  CHECK(redact(greedy, "a" + std::string(70, 'x') + "b") == "a[REDACTED][REDACTED]b");
}

TEST_CASE("redact: parameter errors name the parameter and the reason") {
  CHECK(errors_text(config_errors("redact", json{{"patterns", {"email", "phone"}}})) ==
        "patterns[1]: expected one of \"email\", \"card\", \"ipv4\", got \"phone\"\n");
  CHECK(errors_text(config_errors("redact", json{{"custom", {"ok", "(abc", "a*"}}})) ==
        "custom[1]: invalid regular expression: missing ): (abc\n"
        "custom[2]: matches the empty string; a redaction needs at least one byte\n");
  CHECK(errors_text(config_errors("redact", json{{"patterns", json::array()}})) ==
        "patterns: no pattern to redact: patterns and custom are both empty\n");
  CHECK(errors_text(config_errors("redact", json{{"replacement", 5}, {"mask", "x"}})) ==
        "mask: unknown parameter\nreplacement: expected string, got 5\n");
  CHECK(errors_text(config_errors("redact", json{{"replacement", std::string(1025, '#')}})) ==
        "replacement: expected a string of at most 1024 bytes, got 1025 bytes\n");
  CHECK(errors_text(config_errors("redact", json{{"max_match_bytes", 10}})) ==
        "max_match_bytes: expected integer 64..1048576, got 10\n");
  CHECK(errors_text(config_errors("redact", json{{"patterns", "email"}})) ==
        "patterns: expected array of strings, got \"email\"\n");
}

TEST_CASE("redact: an oversized custom pattern is refused quickly, naming it and its path") {
  const auto start = std::chrono::steady_clock::now();
  const std::string errors =
      errors_text(config_errors("redact", json{{"custom", {"x", "\\pL{200}"}}}));
  CHECK(errors.rfind("custom[1]: regular expression \"\\\\pL{200}\" is too large: it compiles past "
                     "RE2's limit of 1 MiB per custom pattern",
                     0) == 0);
  // Compiling it (as the combined expression did) took ~0.3 s here, four times over.
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(600));
}

TEST_CASE("redact: custom patterns are limited in number, length and total size") {
  std::vector<std::string> many;
  for (int i = 0; i < 33; ++i) many.push_back("p" + std::to_string(i));
  CHECK(errors_text(config_errors("redact", json{{"custom", many}})) ==
        "custom: at most 32 custom patterns, got 33\n");
  many.pop_back();
  CHECK(make_step("redact", json{{"custom", many}}) != nullptr);
  CHECK(errors_text(config_errors("redact", json{{"custom", {"a", std::string(1025, 'a')}}})) ==
        "custom[1]: regular expression of 1025 bytes, at most 1024\n");
  // Each fits alone; together they would make the combined expressions huge.
  const std::string big = "\\pL{40}";
  const std::string total = errors_text(
      config_errors("redact", json{{"custom", {big, big + "a", big + "b", big + "c"}}}));
  CHECK(total.rfind("custom: the custom patterns together compile to ", 0) == 0);
  CHECK(total.find(" RE2 instructions, at most 150000\n") != std::string::npos);
  CHECK(make_step("redact", json{{"custom", {big, big + "a"}}}) != nullptr);
}

TEST_CASE("redact: a pattern is compiled once per process, also by jobs configured at once") {
  // A pattern no other test uses, so that nothing compiled it before.
  const json params = {{"patterns", {"email"}}, {"custom", {"once-[0-9]{3}-\\pL{5}"}}};
  const uint64_t before = docpipe::regex_compilations();
  auto first = make_step("redact", params);
  const uint64_t after_first = docpipe::regex_compilations();
  CHECK(after_first > before);  // the pattern alone and the combination
  std::vector<std::thread> jobs;
  for (int i = 0; i < 4; ++i) jobs.emplace_back([&] { make_step("redact", params); });
  for (std::thread& t : jobs) t.join();
  auto again = make_step("redact", params);  // a resumed job
  CHECK(docpipe::regex_compilations() == after_first);
  CHECK(run_ok(*again, "id once-123-abcde, mail a@b.io") == "id [REDACTED], mail [REDACTED]");
  CHECK(run_ok(*first, "once-123-abcde") == "[REDACTED]");
}
