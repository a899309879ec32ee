// html.text and html.markdown (core/transforms/html_text.cc) and the character set rules they
// share (core/transforms/html_charset.h). The transforms run in real sandboxed workers, as in
// the daemon: a converter or a libxml2 call that needed the file system there would kill the
// worker and fail these tests.

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "core/transforms/html_charset.h"
#include "tests/core/transform_test_util.h"

using docpipe::detect_html_charset;
using docpipe::HtmlCharset;
using docpipe::test::config_errors;
using docpipe::test::errors_text;
using docpipe::test::make_step;
using docpipe::test::run_chunked;
using json = nlohmann::json;

namespace {

std::string run(const char* op, const std::string& html, const json& params = json::object()) {
  auto step = make_step(op, params);
  docpipe::Result<std::string> out = run_chunked(*step, html, 7);
  REQUIRE_MESSAGE(out.has_value(), (out ? "" : out.error().message));
  return *out;
}

std::string text(const std::string& html, const json& params = json::object()) {
  return run("html.text", html, params);
}

std::string markdown(const std::string& html, const json& params = json::object()) {
  return run("html.markdown", html, params);
}

HtmlCharset charset_of(std::string_view doc, std::string_view forced = {}) {
  docpipe::Result<HtmlCharset> cs = detect_html_charset(doc, forced);
  REQUIRE_MESSAGE(cs.has_value(), (cs ? "" : cs.error().message));
  return *cs;
}

const char* const kPage = R"(<!DOCTYPE html>
<html><head><title>Not shown</title>
<style>body { color: red }</style>
<script>var hidden = "script text";</script>
</head>
<body>
<nav hidden>Skip me</nav>
<h1>Quarterly   report</h1>
<p>Revenue rose <b>12&nbsp;%</b> and costs fell, see <a href="https://example.com/q3">the
details</a>.</p>
<div style="display: none">invisible</div>
<ul><li>first</li><li>second <i>item</i></li></ul>
<table><tr><th>Region</th><th>Sales</th></tr><tr><td>North</td><td>10</td></tr>
<tr><td>South</td><td>20</td></tr></table>
<pre>line 1
  line 2</pre>
<p>A&amp;B &lt;tag&gt;<br>next line</p>
<noscript>enable javascript</noscript>
</body></html>)";

}  // namespace

TEST_CASE("html charset: a byte order mark, then a meta declaration, then UTF-8 or windows-1252") {
  CHECK(charset_of("\xEF\xBB\xBF<meta charset=latin1>").name == "UTF-8");
  CHECK(charset_of("\xEF\xBB\xBFx").bom_bytes == 3);
  CHECK(charset_of("\xFF\xFE<\0").name == "UTF-16LE");
  CHECK(charset_of("\xFE\xFF\0<").name == "UTF-16BE");

  HtmlCharset meta = charset_of("<html><head><meta charset=\"ISO-8859-1\"></head>");
  CHECK(meta.name == "CP1252");  // latin-1 labels mean windows-1252, as in browsers
  CHECK(meta.source == "meta");
  CHECK(meta.label == "ISO-8859-1");
  CHECK(
      charset_of("<META HTTP-EQUIV='Content-Type' CONTENT='text/html; charset=Shift_JIS'>").name ==
      "CP932");
  CHECK(charset_of("<meta charset = koi8-r />").name == "KOI8-R");
  CHECK(charset_of("<meta content=\"text/html;charset=gb2312\" http-equiv=content-type>").name ==
        "GB18030");
  // A commented-out declaration, or one past the first 1024 bytes, does not count.
  CHECK(charset_of("<!-- <meta charset=koi8-r> --><p>caf\xC3\xA9</p>").name == "UTF-8");
  CHECK(charset_of(std::string(1100, ' ') + "<meta charset=koi8-r>").name == "UTF-8");
  // A page that claims UTF-16 in ASCII is read as UTF-8.
  CHECK(charset_of("<meta charset=utf-16>").name == "UTF-8");

  CHECK(charset_of("plain caf\xC3\xA9").name == "UTF-8");
  HtmlCharset fallback = charset_of("plain caf\xE9");
  CHECK(fallback.name == "CP1252");
  CHECK(fallback.source == "default");

  CHECK(charset_of("<meta charset=koi8-r>", "windows-1251").name == "CP1251");
  CHECK(charset_of("\xEF\xBB\xBFx", "windows-1251").name == "UTF-8");

  // A label docpipe does not know is passed over, as browsers do; so is "charset=" in the text
  // of an attribute that is not a Content-Type declaration.
  CHECK(charset_of("<meta charset=x-klingon><meta charset=koi8-r>").name == "KOI8-R");
  CHECK(charset_of("<meta charset=utf8mb4><p>caf\xE9</p>").name == "CP1252");
  CHECK(charset_of("<meta name=\"description\" content=\"set charset=koi8-r\">").name == "UTF-8");
  docpipe::Result<HtmlCharset> unknown = detect_html_charset("x", "x-klingon");
  REQUIRE_FALSE(unknown.has_value());
  CHECK(unknown.error().message ==
        "the document declares character set \"x-klingon\" (parameter), which docpipe does not "
        "support; give the transform's charset parameter to read it as another");
}

TEST_CASE("html charset: UTF-8 validation refuses overlongs, surrogates and truncation") {
  CHECK(docpipe::is_valid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
  CHECK_FALSE(docpipe::is_valid_utf8("\xC0\xAF"));          // overlong '/'
  CHECK_FALSE(docpipe::is_valid_utf8("\xED\xA0\x80"));      // a surrogate
  CHECK_FALSE(docpipe::is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  CHECK_FALSE(docpipe::is_valid_utf8("\xE2\x82"));          // cut off
  CHECK_FALSE(docpipe::is_valid_utf8("\x80"));
}

TEST_CASE("html.text: the visible text, blocks on lines, tables as tab-separated rows") {
  CHECK(text(kPage) ==
        "Quarterly report\n"
        "\n"
        "Revenue rose 12\xC2\xA0% and costs fell, see the details.\n"
        "\n"
        "first\n"
        "second item\n"
        "\n"
        "Region\tSales\n"
        "North\t10\n"
        "South\t20\n"
        "\n"
        "line 1\n"
        "  line 2\n"
        "\n"
        "A&B <tag>\n"
        "next line\n");
}

TEST_CASE("html.markdown: headings, emphasis, links, lists, tables, code and quotes") {
  CHECK(markdown(kPage) ==
        "# Quarterly report\n"
        "\n"
        "Revenue rose **12\xC2\xA0%** and costs fell, see [the details](https://example.com/q3).\n"
        "\n"
        "- first\n"
        "- second *item*\n"
        "\n"
        "| Region | Sales |\n"
        "| --- | --- |\n"
        "| North | 10 |\n"
        "| South | 20 |\n"
        "\n"
        "```\n"
        "line 1\n"
        "  line 2\n"
        "```\n"
        "\n"
        "A&B \\<tag\\>\\\n"
        "next line\n");

  CHECK(markdown("<ol start=3><li>three<ul><li>inner</li></ul></li><li>four</li></ol>") ==
        "3. three\n"
        "   - inner\n"
        "4. four\n");
  CHECK(markdown("<blockquote><p>quoted</p><p>twice</p></blockquote><p>after</p>") ==
        "> quoted\n"
        ">\n"
        "> twice\n"
        "\n"
        "after\n");
  CHECK(markdown("<p>Use <code>a*b</code> and <b> </b>empty <em></em>marks, "
                 "<a href=\"javascript:alert(1)\">no link</a>, <a href=\"/rel path\">rel</a>, "
                 "<img src=\"x.png\" alt=\"pic\"></p>") ==
        "Use `a*b` and empty marks, no link, [rel](</rel path>), ![pic](x.png)\n");
  CHECK(markdown("<h2>A | B</h2><table><tr><td>a|b</td><td>x<br>y</td></tr></table>") ==
        "## A | B\n"
        "\n"
        "| a\\|b | x y |\n"
        "| --- | --- |\n");
  CHECK(markdown("<p>* not a list</p><p># not a heading</p>") ==
        "\\* not a list\n"
        "\n"
        "\\# not a heading\n");
}

TEST_CASE("html.text: the character set comes from the BOM, the meta tag or the parameter") {
  // "Größe €": windows-1252 bytes, declared in the page.
  CHECK(text("<meta charset=windows-1252><p>Gr\xF6\xDF"
             "e \x80</p>") ==
        "Gr\xC3\xB6\xC3\x9F"
        "e \xE2\x82\xAC\n");
  // KOI8-R "Привет".
  CHECK(text("<meta http-equiv=\"Content-Type\" content=\"text/html; charset=koi8-r\">"
             "<p>\xF0\xD2\xC9\xD7\xC5\xD4</p>") ==
        "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82\n");
  // Shift_JIS "日本" and EUC-KR "한국".
  CHECK(text("<meta charset=shift_jis><p>\x93\xFA\x96\x7B</p>") == "\xE6\x97\xA5\xE6\x9C\xAC\n");
  CHECK(text("<meta charset=euc-kr><p>\xC7\xD1\xB1\xB9</p>") == "\xED\x95\x9C\xEA\xB5\xAD\n");
  // UTF-16LE with a BOM.
  const std::string utf16("\xFF\xFE<\0p\0>\0h\0i\0<\0/\0p\0>\0", 20);
  CHECK(text(utf16) == "hi\n");
  // No declaration: UTF-8 if valid, windows-1252 if not.
  CHECK(text("<p>caf\xC3\xA9</p>") == "caf\xC3\xA9\n");
  CHECK(text("<p>caf\xE9</p>") == "caf\xC3\xA9\n");
  // The parameter reads a page that says nothing.
  CHECK(text("<p>\xF0\xD2\xC9\xD7\xC5\xD4</p>", {{"charset", "koi8-r"}}) ==
        "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82\n");
  // A byte that means nothing in the page's set becomes U+FFFD.
  CHECK(text("<meta charset=windows-1252><p>a\x81"
             "b</p>") ==
        "a\xEF\xBF\xBD"
        "b\n");
}

TEST_CASE("html.text: an unknown declared character set is passed over; a bad parameter is not") {
  CHECK(text("<meta charset=x-klingon><p>caf\xC3\xA9</p>") == "caf\xC3\xA9\n");
  CHECK(errors_text(config_errors("html.markdown", {{"charset", "ebcdic"}})) ==
        "charset: unknown or unsupported encoding label \"ebcdic\" (WHATWG labels such as "
        "\"utf-8\", \"windows-1252\", \"iso-8859-2\", \"koi8-r\", \"shift_jis\", \"gbk\", "
        "\"big5\", \"euc-kr\")\n");
  CHECK(errors_text(config_errors("html.text", {{"colour", 1}})) == "colour: unknown parameter\n");
}

TEST_CASE("html.text: empty, text-only and tag-soup pages") {
  CHECK(text("") == "");
  CHECK(text("just words") == "just words\n");
  CHECK(text("<p>unclosed <b>bold <i>both</p><p>next") == "unclosed bold both\n\nnext\n");
  CHECK(text("<table><td>a<td>b<tr><td>c</table>") == "a\tb\nc\n");
  CHECK(text("<script>only script</script>") == "");
}

TEST_CASE("html.text: deep nesting and a large page stay within the worker's limits") {
  // 120 nested quotes: read, with Markdown prefixes stopping at 16 levels.
  std::string deep;
  for (int i = 0; i < 120; ++i) deep += "<div><blockquote>";
  deep += "bottom";
  std::string md = markdown(deep);
  std::string prefixes;
  for (int i = 0; i < 16; ++i) prefixes += "> ";
  CHECK(md == prefixes + "bottom\n");
  // 100,000 levels pass libxml2's depth limit (256): the page fails, saying so, instead of
  // losing what lies deeper; so does the quadratic shape that limit exists for.
  std::string deeper;
  for (int i = 0; i < 100000; ++i) deeper += "<div><blockquote>";
  auto step = make_step("html.markdown", json::object());
  docpipe::Result<std::string> out = run_chunked(*step, deeper + "bottom", 0);
  REQUIRE_FALSE(out.has_value());
  CHECK(out.error().message ==
        "html.markdown: the page nests elements deeper than 256 levels (libxml2's limit)");
  std::string soup;
  for (int i = 0; i < 1000000; ++i) soup += "<b>";
  for (int i = 0; i < 1000000; ++i) soup += "</i>";
  const auto t0 = std::chrono::steady_clock::now();
  out = run_chunked(*make_step("html.text", json::object()), soup, 0);
  CHECK_FALSE(out.has_value());
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
  // A 20 MiB page of paragraphs.
  std::string big;
  while (big.size() < (20u << 20)) big += "<p>Some words in a paragraph.</p>\n";
  std::string all = text(big);
  CHECK(all.size() > (10u << 20));
  CHECK(all.starts_with("Some words in a paragraph.\n\nSome words"));
}

TEST_CASE("html.text: a page over max_input_bytes fails without parsing") {
  auto step = make_step("html.text", {{"max_input_bytes", 100}});
  docpipe::Result<std::string> out = run_chunked(*step, std::string(200, 'x'), 50);
  REQUIRE_FALSE(out.has_value());
  CHECK(out.error().message.starts_with("html.text: document exceeds max_input_bytes (100 "));
}

TEST_CASE("html.markdown: what would turn into other Markdown is escaped or fenced") {
  CHECK(markdown("<p>Wow!<a href=\"x\">y</a></p>") == "Wow\\![y](x)\n");
  CHECK(markdown("<p>2024. Year</p><p>12) twelve</p><p>v2. ok</p>") ==
        "2024\\. Year\n\n12\\) twelve\n\nv2. ok\n");
  CHECK(markdown("<ul><li>item<pre>code\nmore</pre></li></ul>") ==
        "- item\n"
        "\n"
        "  ```\n"
        "  code\n"
        "  more\n"
        "  ```\n");
  CHECK(markdown("<pre>a ``` b</pre>") == "````\na ``` b\n````\n");
  CHECK(markdown("<table><tr><td><pre>x\ny</pre></td></tr></table>") == "| x y |\n| --- |\n");
  CHECK(markdown("<ol start=\"2147483647\"><li>a</li><li>b</li></ol>") ==
        "999999999. a\n999999999. b\n");
}

TEST_CASE("html.markdown: a very wide first row does not pad every other row") {
  std::string html = "<table><tr>";
  for (int i = 0; i < 1000; ++i) html += "<td>h</td>";
  html += "</tr>";
  for (int i = 0; i < 1000; ++i) html += "<tr><td>r</td></tr>";
  html += "</table>";
  const std::string md = markdown(html);
  // 1,000 rows of 64 cells (about 200 KB), not of 1,000 (3 MB).
  CHECK(md.size() < 400000);
  const size_t row = md.find("\n| r |");
  REQUIRE(row != std::string::npos);
  const std::string line = md.substr(row + 1, md.find('\n', row + 1) - row - 1);
  CHECK(std::count(line.begin(), line.end(), '|') == 65);
}
