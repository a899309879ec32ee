// markdown.html: cmark-gfm with the GFM extensions; raw HTML escaped unless unsafe_html.

#include <doctest/doctest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/core/transform_test_util.h"
#include "tests/support/hostile_documents.h"
#include "tests/support/processes.h"

using docpipe::ErrorCode;
using docpipe::Result;
using docpipe::test::AddressSpaceCap;
using docpipe::test::config_errors;
using docpipe::test::errors_text;
using docpipe::test::make_step;
using docpipe::test::nested_quotes;
using docpipe::test::run_chunked;
using docpipe::test::run_ok;
using docpipe::test::wide_table;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

const char* const kMarkdown =
    "# Title\n"
    "\n"
    "Hello *world* and ~~gone~~ see www.example.com\n"
    "\n"
    "| a | b |\n"
    "|---|:-:|\n"
    "| 1 | <b>2</b> |\n"
    "\n"
    "- [x] done\n"
    "- [ ] todo\n"
    "\n"
    "<div onclick=\"x()\">\n"
    "raw *block*\n"
    "</div>\n"
    "\n"
    "Inline <span>tag</span> & \"quotes\" -- dash...\n"
    "[link](javascript:alert(1))\n";

const char* const kHtmlTable =
    "<table>\n"
    "<thead>\n"
    "<tr>\n"
    "<th>a</th>\n"
    "<th align=\"center\">b</th>\n"
    "</tr>\n"
    "</thead>\n"
    "<tbody>\n"
    "<tr>\n"
    "<td>1</td>\n";

const char* const kHtmlTasks =
    "<ul>\n"
    "<li><input type=\"checkbox\" checked=\"\" disabled=\"\" /> done</li>\n"
    "<li><input type=\"checkbox\" disabled=\"\" /> todo</li>\n"
    "</ul>\n";

std::string markdown_html(const json& params, const std::string& text, size_t chunk = 0) {
  return run_ok(*make_step("markdown.html", params), text, chunk);
}

}  // namespace

TEST_CASE(
    "markdown.html: renders GFM tables, strikethrough, autolinks and task lists with raw "
    "HTML shown as text") {
  const std::string expected =
      "<h1>Title</h1>\n"
      "<p>Hello <em>world</em> and <del>gone</del> see <a "
      "href=\"http://www.example.com\">www.example.com</a></p>\n" +
      std::string(kHtmlTable) +
      "<td align=\"center\">&lt;b&gt;2&lt;/b&gt;</td>\n"
      "</tr>\n"
      "</tbody>\n"
      "</table>\n" +
      kHtmlTasks +
      "<p>&lt;div onclick=&quot;x()&quot;&gt;\n"
      "raw *block*\n"
      "&lt;/div&gt;</p>\n"
      "<p>Inline &lt;span&gt;tag&lt;/span&gt; &amp; &quot;quotes&quot; -- dash...\n"
      "<a href=\"\">link</a></p>\n";
  CHECK(markdown_html(json::object(), kMarkdown) == expected);
}

TEST_CASE("markdown.html: unsafe_html passes raw HTML through - smart and hardbreaks apply") {
  const std::string expected =
      "<h1>Title</h1>\n"
      "<p>Hello <em>world</em> and <del>gone</del> see <a "
      "href=\"http://www.example.com\">www.example.com</a></p>\n" +
      std::string(kHtmlTable) +
      "<td align=\"center\"><b>2</b></td>\n"
      "</tr>\n"
      "</tbody>\n"
      "</table>\n" +
      kHtmlTasks +
      "<div onclick=\"x()\">\n"
      "raw *block*\n"
      "</div>\n"
      "<p>Inline <span>tag</span> &amp; \xE2\x80\x9Cquotes\xE2\x80\x9D \xE2\x80\x93 "
      "dash\xE2\x80\xA6<br />\n"
      "<a href=\"javascript:alert(1)\">link</a></p>\n";
  CHECK(markdown_html(json{{"unsafe_html", true}, {"smart", true}, {"hardbreaks", true}},
                      kMarkdown) == expected);
}

TEST_CASE("markdown.html: the output does not depend on how the document is chunked") {
  std::string text;
  for (int i = 0; i < 40; ++i) text += kMarkdown + std::string("\r\n\xC3\xA9\r\n");
  const std::string whole = markdown_html(json::object(), text);
  for (size_t chunk : {1, 3, 7, 64, 4096}) {
    CAPTURE(chunk);
    CHECK(markdown_html(json::object(), text, chunk) == whole);
  }
}

TEST_CASE("markdown.html: an empty document renders as nothing") {
  CHECK(markdown_html(json::object(), "") == "");
}

TEST_CASE("markdown.html: invalid UTF-8 becomes U+FFFD, so the HTML is valid UTF-8") {
  CHECK(markdown_html(json::object(),
                      "a\xFF"
                      "b\n") ==
        "<p>a\xEF\xBF\xBD"
        "b</p>\n");
}

TEST_CASE("markdown.html: a document over max_input_bytes is refused with the limit named") {
  auto step = make_step("markdown.html", json{{"max_input_bytes", 100}});
  CHECK(run_ok(*step, std::string(100, 'a')) == "<p>" + std::string(100, 'a') + "</p>\n");
  Result<std::string> r = run_chunked(*step, std::string(101, 'a'), 30);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kTooLarge);
  CHECK(r.error().message ==
        "markdown.html: document exceeds max_input_bytes (100 bytes); markdown.html needs the "
        "whole document in memory, raise max_input_bytes to allow larger ones");
}

TEST_CASE("markdown.html: documents rendered at once on several threads match the serial output") {
  // cmark-gfm keeps inline-parsing state process-wide; this is what the parse lock protects.
  auto step = make_step("markdown.html", json::object());
  std::vector<std::string> texts;
  for (int i = 0; i < 4; ++i) {
    std::string t;
    for (int k = 0; k < 30 + i; ++k) t += kMarkdown + std::string("\n~~strike~~ www.x.org\n\n");
    texts.push_back(t);
  }
  std::vector<std::string> serial;
  for (const std::string& t : texts) serial.push_back(run_ok(*step, t, 512));
  std::vector<int> mismatches(texts.size(), 0);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < texts.size(); ++i) {
    threads.emplace_back([&, i] {
      for (int round = 0; round < 20; ++round) {
        Result<std::string> r = run_chunked(*step, texts[i], 512);
        if (!r || *r != serial[i]) ++mismatches[i];
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(mismatches == std::vector<int>(texts.size(), 0));
}

TEST_CASE("markdown.html: parameter errors name the parameter and the expected value") {
  CHECK(errors_text(config_errors("markdown.html", json{{"unsafe_html", "no"},
                                                        {"smart", 1},
                                                        {"max_input_bytes", 0},
                                                        {"footnotes", true}})) ==
        "footnotes: unknown parameter\n"
        "unsafe_html: expected boolean, got \"no\"\n"
        "smart: expected boolean, got 1\n"
        "max_input_bytes: expected integer >= 1, got 0\n");
}

namespace {

struct Timed {
  Result<std::string> result = std::string();
  Clock::duration took;
};

// Runs `text` as document `path` whose deadline is `deadline` from now (none if zero).
Timed run_with_deadline(const docpipe::TransformStep& step, const std::string& path,
                        const std::string& text, milliseconds deadline) {
  const auto start = Clock::now();
  docpipe::DocumentContext doc{path, path, [&]() -> docpipe::Status {
                                 if (deadline.count() == 0 || Clock::now() < start + deadline)
                                   return docpipe::ok();
                                 return docpipe::make_error(ErrorCode::kTimeout,
                                                            path + ": timed out after " +
                                                                std::to_string(deadline.count()) +
                                                                " ms (document_timeout_ms)");
                               }};
  auto t = step.begin(doc);
  std::string out;
  docpipe::Status st = docpipe::test::drain(*t, t->update(text, out), out, false);
  if (st) st = docpipe::test::drain(*t, t->finish(out), out, true);
  Timed r{st ? Result<std::string>(out) : Result<std::string>(st.error()), Clock::now() - start};
  return r;
}

}  // namespace

TEST_CASE(
    "markdown.html: a table that pads rows to a wide header fails at the worker's memory limit") {
  AddressSpaceCap cap(rlim_t{4} << 30);
  auto step = make_step("markdown.html", json{{"worker_memory_bytes", 64 << 20}});
  // 4 million cells: about 1 GB in cmark-gfm, from 46 KB.
  Timed r = run_with_deadline(*step, "wide.md", wide_table(200, 20000), milliseconds(0));
  REQUIRE_FALSE(r.result.has_value());
  CHECK(r.result.error().code == ErrorCode::kTooLarge);
  CHECK(r.result.error().message ==
        "markdown.html: worker exceeded its memory limit (64 MiB, worker_memory_bytes)");
  CHECK(r.took < std::chrono::seconds(20));
  // A smaller table of the same shape fits, and the next document renders normally.
  Timed fits = run_with_deadline(*step, "small.md", wide_table(20, 200), milliseconds(0));
  CHECK(fits.result.has_value());
  CHECK(markdown_html(json::object(), "*after*\n") == "<p><em>after</em></p>\n");
  CHECK(docpipe::test::zombies_of(::getpid()) == 0);
}

TEST_CASE(
    "markdown.html: hostile documents are killed at their deadline while other documents render "
    "at once") {
  AddressSpaceCap cap(rlim_t{4} << 30);
  auto step = make_step("markdown.html", json::object());
  // The 120 KB 20,000-column table and a 60 KB nested document, each 15 s of CPU or more.
  const std::vector<std::string> hostile_texts = {wide_table(20000, 20000), nested_quotes(15000)};
  std::vector<Timed> hostile(hostile_texts.size());
  std::atomic<int> hostile_done{0};
  std::vector<std::thread> threads;
  for (size_t i = 0; i < hostile_texts.size(); ++i) {
    threads.emplace_back([&, i] {
      hostile[i] = run_with_deadline(*step, "hostile.md", hostile_texts[i], milliseconds(1000));
      ++hostile_done;
    });
  }
  // While they run, normal documents on this thread each render promptly.
  std::vector<Clock::duration> normal;
  const auto until = Clock::now() + milliseconds(800);
  while (Clock::now() < until && hostile_done == 0) {
    Timed r = run_with_deadline(*step, "normal.md", kMarkdown, milliseconds(0));
    REQUIRE(r.result.has_value());
    normal.push_back(r.took);
  }
  for (std::thread& t : threads) t.join();
  REQUIRE(normal.size() >= 3);
  CHECK(*std::max_element(normal.begin(), normal.end()) < milliseconds(250));
  for (const Timed& h : hostile) {
    REQUIRE_FALSE(h.result.has_value());
    CHECK(h.result.error().code == ErrorCode::kTimeout);
    CHECK(h.result.error().message ==
          "hostile.md: timed out after 1000 ms (document_timeout_ms); markdown.html: worker "
          "killed");
    CHECK(h.took < milliseconds(1500));
  }
  CHECK(docpipe::test::zombies_of(::getpid()) == 0);
}
