// auto.text (core/transforms/auto_text.cc): the type read from the first bytes sends each
// document to pdf.text, office.text, html.text or ocr (in their workers), or on unchanged as text.

#include <doctest/doctest.h>

#include <string>

#include "tests/core/transform_test_util.h"
#include "tests/support/office_writer.h"
#include "tests/support/pdf_writer.h"
#include "tests/support/scan_writer.h"

using docpipe::test::config_errors;
using docpipe::test::errors_text;
using docpipe::test::make_step;
using docpipe::test::run_chunked;
using json = nlohmann::json;

namespace {

docpipe::Result<std::string> auto_text(const std::string& doc, size_t piece = 4096,
                                       const json& params = json::object()) {
  return run_chunked(*make_step("auto.text", params), doc, piece);
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

TEST_CASE("auto.text: images and scanned PDFs are read by ocr unless ocr is off") {
  const std::vector<std::string> lines = {"Scanned receipt", "Total amount paid"};
  const docpipe::test::GrayPage scan = docpipe::test::scan_lines(lines);
  const std::string known = "Scanned receipt\nTotal amount paid\n";
  CHECK(docpipe::test::word_recall(known, text_ok(docpipe::test::encode_png(scan))) >= 0.8);
  CHECK(docpipe::test::word_recall(known, text_ok(docpipe::test::encode_jpeg(scan))) >= 0.8);
  CHECK(docpipe::test::word_recall(known, text_ok(docpipe::test::encode_tiff({scan}))) >= 0.8);
  const std::string scanned_pdf = docpipe::test::make_scanned_pdf({scan});
  CHECK(docpipe::test::word_recall(known, text_ok(scanned_pdf)) >= 0.8);

  const json off{{"ocr", "off"}};
  docpipe::Result<std::string> out = auto_text(docpipe::test::encode_png(scan), 4096, off);
  REQUIRE_FALSE(out.has_value());
  CHECK(out.error().message ==
        "auto.text: no extractor for image/png (this job's auto.text has ocr \"off\")");
  out = auto_text(scanned_pdf, 4096, off);
  REQUIRE(out.has_value());
  CHECK(out->find("receipt") == std::string::npos);
  // One error for the language, although both pdf.text and ocr would use it.
  CHECK(errors_text(config_errors("auto.text", {{"ocr_lang", "xyz"}})) ==
        "ocr_lang: \"xyz\" is not installed: no /usr/share/tesseract-ocr/5/tessdata/"
        "xyz.traineddata (on Debian: apt install tesseract-ocr-xyz)\n");
}

TEST_CASE("auto.text: what has no extractor fails, naming its type") {
  // A 50000 x 50000 PNG header goes to ocr, which refuses it from its header.
  docpipe::Result<std::string> out =
      auto_text(docpipe::test::png_header_only(50000, 50000, std::string(64, '\0')));
  REQUIRE_FALSE(out.has_value());
  CHECK(
      out.error().message.starts_with("ocr: the image is 50000 x 50000 pixels, more than "
                                      "max_pixels"));
  out = auto_text(
      "GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00"
      "\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;");
  REQUIRE_FALSE(out.has_value());
  CHECK(out.error().message ==
        "auto.text: no extractor for image/gif (ocr reads PNG, JPEG and TIFF)");
  std::string binary;
  for (int i = 0; i < 4096; ++i) binary += static_cast<char>((i * 7919) % 251);
  out = auto_text(binary);
  REQUIRE_FALSE(out.has_value());
  CHECK(out.error().message.starts_with("auto.text: no extractor for application/"));
  // A zip that is not an Office file: office.text says so.
  out = auto_text(docpipe::test::zip_bytes({{"notes.txt", "hello"}}));
  REQUIRE_FALSE(out.has_value());
  CHECK(out.error().message.starts_with("office.text: a zip archive, but not a DOCX"));
  CHECK(errors_text(config_errors("auto.text", {{"pages", 1}})) == "pages: unknown parameter\n");
}
