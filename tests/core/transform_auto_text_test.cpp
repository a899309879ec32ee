// auto.text (core/transforms/auto_text.cc): the type read from the first bytes sends each
// document to pdf.text, office.text or html.text (in their workers), or on unchanged as text.

#include <doctest/doctest.h>

#include <string>

#include "tests/core/transform_test_util.h"
#include "tests/support/office_writer.h"
#include "tests/support/pdf_writer.h"

using docpipe::test::config_errors;
using docpipe::test::errors_text;
using docpipe::test::make_step;
using docpipe::test::run_chunked;
using json = nlohmann::json;

namespace {

docpipe::Result<std::string> auto_text(const std::string& doc, size_t piece = 4096) {
  return run_chunked(*make_step("auto.text", json::object()), doc, piece);
}

std::string text_ok(const std::string& doc, size_t piece = 4096) {
  docpipe::Result<std::string> out = auto_text(doc, piece);
  REQUIRE_MESSAGE(out.has_value(), (out ? "" : out.error().message));
  return *out;
}

}  // namespace

TEST_CASE("auto.text: each type goes to its extractor") {
  CHECK(text_ok(docpipe::test::make_pdf({{"From a PDF"}, {"page two"}})) ==
        "From a PDF\n\fpage two\n");
  CHECK(text_ok(docpipe::test::docx(docpipe::test::w_para("From a DOCX"))) == "From a DOCX\n");
  CHECK(text_ok(docpipe::test::pptx({{"From a PPTX"}})) == "From a PPTX\n");
  CHECK(text_ok("<!doctype html><html><body><p>From <b>HTML</b></p><script>x()</script>") ==
        "From HTML\n");
  CHECK(text_ok("Plain text stays as it is.\n  Even its   spaces.\n") ==
        "Plain text stays as it is.\n  Even its   spaces.\n");
  CHECK(text_ok("{\"json\": true}\n") == "{\"json\": true}\n");
  CHECK(text_ok("") == "");
}

TEST_CASE("auto.text: a document longer than the part it looks at goes through whole") {
  std::string text;
  while (text.size() < (300u << 10)) text += "A line of plain text, again and again.\n";
  for (size_t piece : {1000, 65536, 0}) CHECK(text_ok(text, piece) == text);
  std::vector<std::vector<std::string>> pages;
  for (int i = 0; i < 400; ++i) pages.push_back({"page " + std::to_string(i)});
  const std::string pdf = docpipe::test::make_pdf(pages);
  REQUIRE(pdf.size() > (64u << 10));
  const std::string out = text_ok(pdf, 1000);
  CHECK(out.starts_with("page 0\n\fpage 1\n"));
  CHECK(out.ends_with("page 399\n"));
}

TEST_CASE("auto.text: what has no extractor fails, naming its type") {
  const std::string png =
      std::string("\x89PNG\r\n\x1A\n\0\0\0\rIHDR\0\0\xC3\x50\0\0\xC3\x50\x08\x02", 26) +
      std::string(64, '\0');
  docpipe::Result<std::string> out = auto_text(png);
  REQUIRE_FALSE(out.has_value());
  CHECK(out.error().message ==
        "auto.text: no extractor for image/png (images need OCR, which docpipe does not have "
        "yet)");
  std::string binary;
  for (int i = 0; i < 4096; ++i) binary += static_cast<char>((i * 7919) % 251);
  out = auto_text(binary);
  REQUIRE_FALSE(out.has_value());
  CHECK(out.error().message.starts_with("auto.text: no extractor for application/"));
  // A zip that is not an Office file: office.text says so.
  out = auto_text(docpipe::test::zip_bytes({{"notes.txt", "hello"}}));
  REQUIRE_FALSE(out.has_value());
  CHECK(out.error().message.starts_with("office.text: a zip archive, but not a DOCX"));
  CHECK(errors_text(config_errors("auto.text", {{"ocr", true}})) == "ocr: unknown parameter\n");
}
