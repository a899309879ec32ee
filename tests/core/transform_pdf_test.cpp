// pdf.text (core/transforms/pdf_text.cc) on PDFs the tests write (tests/support/pdf_writer.h), and
// on encrypted and damaged ones made from them with qpdf. Each document is read in a real
// sandboxed worker, as in the daemon.

#include <doctest/doctest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/core/transform_test_util.h"
#include "tests/support/pdf_writer.h"
#include "tests/support/temp_folder.h"

using docpipe::test::config_errors;
using docpipe::test::errors_text;
using docpipe::test::make_pdf;
using docpipe::test::make_step;
using docpipe::test::run_chunked;
using json = nlohmann::json;

namespace {

docpipe::Result<std::string> pdf_text(const std::string& pdf, const json& params = json::object()) {
  return run_chunked(*make_step("pdf.text", params), pdf, 4096);
}

std::string text_ok(const std::string& pdf, const json& params = json::object()) {
  docpipe::Result<std::string> out = pdf_text(pdf, params);
  REQUIRE_MESSAGE(out.has_value(), (out ? "" : out.error().message));
  return *out;
}

std::string error_of(const std::string& pdf, const json& params = json::object()) {
  docpipe::Result<std::string> out = pdf_text(pdf, params);
  REQUIRE_FALSE(out.has_value());
  return out.error().message;
}

const std::vector<std::vector<std::string>> kPages = {
    {"Annual report 2026", "Revenue grew (a lot)."},
    {"Second page", "with \\backslashes\\"},
    {"Third page"}};

// Runs qpdf with `args` on `in`; the bytes it wrote.
std::string qpdf(const std::string& in, const std::vector<std::string>& args) {
  docpipe::test::TempFolder tmp;
  const std::string src = tmp.root() + "/in.pdf", dst = tmp.root() + "/out.pdf";
  docpipe::test::TempFolder::write(src, in);
  std::vector<std::string> argv = {"qpdf"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(src);
  argv.push_back(dst);
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = 0;
  REQUIRE(::posix_spawnp(&pid, "qpdf", nullptr, nullptr, cargv.data(), environ) == 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE_MESSAGE((WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 3),  // 3: warnings
                  "qpdf exited with " << WEXITSTATUS(status));
  return docpipe::test::TempFolder::read(dst);
}

}  // namespace

TEST_CASE("pdf.text: each page's text in reading order, pages separated by form feeds") {
  CHECK(text_ok(make_pdf(kPages)) ==
        "Annual report 2026\nRevenue grew (a lot).\n\fSecond page\nwith \\backslashes\\\n\f"
        "Third page\n");
  CHECK(text_ok(make_pdf(kPages), {{"page_separator", "\n----\n"}}) ==
        "Annual report 2026\nRevenue grew (a lot).\n\n----\nSecond page\nwith "
        "\\backslashes\\\n\n----\nThird page\n");
  CHECK(text_ok(make_pdf(kPages), {{"first_page", 2}, {"last_page", 2}}) ==
        "Second page\nwith \\backslashes\\\n");
  CHECK(text_ok(make_pdf(kPages), {{"first_page", 3}, {"last_page", 99}}) == "Third page\n");
  CHECK(text_ok(make_pdf({{}})) == "");
}

namespace {

// The metadata() the step's transform reports once the document is finished.
std::string metadata_of(const std::string& pdf, const json& params = json::object()) {
  auto t = make_step("pdf.text", params)->begin(docpipe::DocumentContext{"a.pdf", "a.pdf"});
  std::string out;
  REQUIRE(t->update(pdf, out).has_value());
  do {
    REQUIRE(t->finish(out).has_value());
  } while (t->has_more());
  return t->metadata();
}

}  // namespace

TEST_CASE("pdf.text: pages, title and author go to the metadata, cut and in UTF-8") {
  CHECK(metadata_of(make_pdf(kPages, "/Title (Annual report) /Author (Ann Analyst)")) ==
        R"({"author":"Ann Analyst","pages":3,"title":"Annual report"})");
  // Without an information dictionary: the page count alone, whatever pages were read.
  CHECK(metadata_of(make_pdf(kPages), {{"first_page", 2}}) == R"({"pages":3})");
  // A UTF-16 title (with its byte order mark), and one too long for the manifest.
  CHECK(metadata_of(make_pdf({{"x"}}, "/Title <FEFF00E9007400E9>")) ==
        "{\"pages\":1,\"title\":\"\xC3\xA9t\xC3\xA9\"}");
  const std::string long_title = std::string(2000, 'x');
  const json m = json::parse(metadata_of(make_pdf({{"x"}}, "/Title (" + long_title + ")")));
  CHECK(m["title"] == std::string(1024, 'x'));
  // A document that fails has none.
  auto t = make_step("pdf.text", json::object())->begin(docpipe::DocumentContext{"b", "b"});
  std::string out;
  REQUIRE(t->update("not a pdf", out).has_value());
  CHECK_FALSE(t->finish(out).has_value());
  CHECK(t->metadata().empty());
}

TEST_CASE("pdf.text: bad parameters and page ranges are refused clearly") {
  CHECK(errors_text(config_errors("pdf.text", {{"first_page", 3}, {"last_page", 2}})) ==
        "last_page: is before first_page (3); 0 reads to the end\n");
  CHECK(errors_text(config_errors("pdf.text", {{"on_damage", "ignore"}})) ==
        "on_damage: expected one of \"fail\", \"text\", got \"ignore\"\n");
  CHECK(error_of(make_pdf(kPages), {{"first_page", 4}}) ==
        "pdf.text: first_page 4 is past the last page of this PDF (3)");
}

TEST_CASE("pdf.text: what is not a PDF fails clearly") {
  CHECK(error_of("hello, not a pdf\n").starts_with("pdf.text: not a PDF that poppler can read"));
  CHECK(error_of("").starts_with("pdf.text: not a PDF that poppler can read"));
}

TEST_CASE("pdf.text: an encrypted PDF needs its password") {
  const std::string locked =
      qpdf(make_pdf(kPages), {"--encrypt", "user-pw", "owner-pw", "256", "--"});
  CHECK(locked.find("/Encrypt") != std::string::npos);
  CHECK(error_of(locked) ==
        "pdf.text: the PDF is encrypted; give its password in the transform's password "
        "parameter");
  CHECK(error_of(locked, {{"password", "wrong"}}) ==
        "pdf.text: the password does not open this encrypted PDF");
  CHECK(text_ok(locked, {{"password", "user-pw"}}).starts_with("Annual report 2026\n"));
  CHECK(text_ok(locked, {{"password", "owner-pw"}}).starts_with("Annual report 2026\n"));
}

TEST_CASE("pdf.text: a damaged PDF fails by default, or gives what poppler can read") {
  // Cross-reference offsets all wrong: poppler rebuilds the table and says so.
  std::string damaged = make_pdf(kPages);
  const size_t xref = damaged.find("xref\n");
  REQUIRE(xref != std::string::npos);
  for (size_t at = damaged.find(" 00000 n", xref); at != std::string::npos;
       at = damaged.find(" 00000 n", at + 1)) {
    damaged[at - 1] = damaged[at - 1] == '9' ? '1' : '9';
  }
  const std::string failed = error_of(damaged, {{"on_damage", "fail"}});
  CHECK(failed.starts_with("pdf.text: damaged PDF: "));
  CHECK(failed.find("error") == std::string::npos);  // poppler-cpp's prefix is stripped
  CHECK(failed.find("on_damage \"text\" keeps what poppler can read") != std::string::npos);
  // The default keeps what poppler could read.
  CHECK(text_ok(damaged).find("Third page") != std::string::npos);
  // A file cut in half.
  const std::string cut = make_pdf(kPages).substr(0, make_pdf(kPages).size() / 2);
  CHECK(error_of(cut, {{"on_damage", "fail"}}).starts_with("pdf.text: "));
}

TEST_CASE("pdf.text: a page tree that contains itself is reported, not followed forever") {
  const std::string looped = docpipe::test::recursive_pdf();
  CHECK(error_of(looped, {{"on_damage", "fail"}})
            .starts_with("pdf.text: damaged PDF: Loop in Pages tree"));
  // Kept by default: the one real page, which has no text, and the separator before the second
  // page the tree claims, which cannot be read.
  CHECK(text_ok(looped) == "\f");
}

TEST_CASE("pdf.text: 10,000 pages are read page by page within the worker's memory") {
  std::vector<std::vector<std::string>> pages;
  for (int i = 1; i <= 10000; ++i) pages.push_back({"page " + std::to_string(i) + " of many"});
  const std::string pdf = make_pdf(pages);
  const std::string text = text_ok(pdf, {{"worker_memory_bytes", 256 << 20}});
  CHECK(std::count(text.begin(), text.end(), '\f') == 9999);
  CHECK(text.starts_with("page 1 of many\n\fpage 2 of many\n"));
  CHECK(text.ends_with("page 10000 of many\n"));
}

TEST_CASE("pdf.text: a PDF over max_input_bytes fails before poppler reads it") {
  CHECK(error_of(make_pdf(kPages), {{"max_input_bytes", 100}})
            .starts_with("pdf.text: document exceeds max_input_bytes (100 bytes)"));
}
