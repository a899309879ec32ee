// office.text (core/transforms/office_text.cc) on DOCX, XLSX, PPTX and OpenDocument files the
// tests write (tests/support/office_writer.h), and on zip bombs, billion laughs and what is not
// an Office file. Each document is read in a real sandboxed worker, as in the daemon.

#include <doctest/doctest.h>

#include <string>

#include "tests/core/transform_test_util.h"
#include "tests/support/office_writer.h"

using docpipe::test::make_step;
using docpipe::test::run_chunked;
using docpipe::test::w_para;
using json = nlohmann::json;
namespace t = docpipe::test;

namespace {

docpipe::Result<std::string> office(const std::string& file, const json& params = json::object()) {
  return run_chunked(*make_step("office.text", params), file, 65536);
}

std::string text_ok(const std::string& file, const json& params = json::object()) {
  docpipe::Result<std::string> out = office(file, params);
  REQUIRE_MESSAGE(out.has_value(), (out ? "" : out.error().message));
  return *out;
}

std::string error_of(const std::string& file, const json& params = json::object()) {
  docpipe::Result<std::string> out = office(file, params);
  REQUIRE_FALSE(out.has_value());
  return out.error().message;
}

}  // namespace

TEST_CASE("office.text: a DOCX's paragraphs, tabs, breaks and tables in reading order") {
  const std::string body =
      w_para("Contract") + w_para("Between A &amp; B") +
      "<w:p><w:pPr><w:tabs><w:tab w:val=\"left\" w:pos=\"720\"/></w:tabs></w:pPr>"
      "<w:r><w:t>Name</w:t></w:r><w:r><w:tab/><w:t>Value</w:t><w:br/><w:t>next line</w:t></w:r>"
      "<w:del><w:r><w:delText>deleted words</w:delText></w:r></w:del>"
      "<w:r><w:instrText> PAGE </w:instrText></w:r></w:p>"
      "<w:tbl><w:tr><w:tc>" +
      w_para("a1") + "</w:tc><w:tc>" + w_para("b1") + w_para("more") +
      "</w:tc></w:tr><w:tr><w:tc>" + w_para("a2") + "</w:tc><w:tc>" + w_para("b2") +
      "</w:tc></w:tr></w:tbl>" + w_para("Signed: \xC3\xA9t\xC3\xA9");
  CHECK(text_ok(t::docx(body)) ==
        "Contract\nBetween A & B\nName\tValue\nnext line\na1\tb1 more\na2\tb2\n"
        "Signed: \xC3\xA9t\xC3\xA9\n");
}

TEST_CASE("office.text: an XLSX's sheets in workbook order, rows as tab-separated cells") {
  const std::string first =
      "<row r=\"1\"><c r=\"A1\" t=\"s\"><v>0</v></c><c r=\"B1\" t=\"s\"><v>1</v></c></row>"
      "<row r=\"2\"><c r=\"A2\" t=\"s\"><v>2</v></c><c r=\"C2\"><v>12.5</v></c>"
      "<c r=\"D2\" t=\"b\"><v>1</v></c><c r=\"E2\" t=\"e\"><v>#DIV/0!</v></c></row>";
  const std::string second =
      "<row r=\"3\"><c r=\"B3\" t=\"inlineStr\"><is><t>inline</t></is></c></row>";
  CHECK(text_ok(t::xlsx({{"Sales", first}, {"Notes", second}}, {"Region", "Total", "North"})) ==
        "Sales\nRegion\tTotal\nNorth\t\t12.5\tTRUE\t#DIV/0!\n\fNotes\n\tinline\n");
}

TEST_CASE("office.text: a PPTX's slides in presentation order, separated by form feeds") {
  CHECK(text_ok(t::pptx({{"Title slide", "by someone"}, {"Second slide"}})) ==
        "Title slide\nby someone\n\fSecond slide\n");
}

TEST_CASE("office.text: ODT, ODS and ODP from content.xml") {
  CHECK(text_ok(t::odf("text",
                       "<office:text><text:h>Heading</text:h><text:p>a<text:s text:c=\"3\"/>b"
                       "<text:tab/>c<text:line-break/>d<office:annotation><text:p>comment"
                       "</text:p></office:annotation></text:p></office:text>")) ==
        "Heading\na   b\tc\nd\n");
  CHECK(text_ok(t::odf(
            "spreadsheet",
            "<office:spreadsheet><table:table table:name=\"Q1\"><table:table-row>"
            "<table:table-cell><text:p>x</text:p></table:table-cell>"
            "<table:table-cell table:number-columns-repeated=\"2\"/>"
            "<table:table-cell><text:p>y</text:p></table:table-cell>"
            "<table:table-cell table:number-columns-repeated=\"16000\"/>"
            "</table:table-row></table:table><table:table table:name=\"Q2\"><table:table-row>"
            "<table:table-cell><text:p>z</text:p></table:table-cell></table:table-row>"
            "</table:table></office:spreadsheet>")) == "Q1\nx\t\t\ty\n\fQ2\nz\n");
  CHECK(text_ok(t::odf("presentation",
                       "<office:presentation><draw:page><draw:frame><draw:text-box><text:p>one"
                       "</text:p></draw:text-box></draw:frame></draw:page><draw:page>"
                       "<draw:frame><draw:text-box><text:p>two</text:p></draw:text-box>"
                       "</draw:frame></draw:page></office:presentation>")) == "one\n\ftwo\n");
}

TEST_CASE("office.text: a zip bomb disguised as a DOCX stops at the limits") {
  // 64 MiB of one byte deflate about 1000 to 1: a bomb by its ratio.
  const std::string bomb = t::zip_bytes({{"word/document.xml", std::string(64u << 20, 'a')}});
  CHECK(bomb.size() < (128u << 10));
  CHECK(error_of(bomb) ==
        "office.text: word/document.xml unpacks to more than max_ratio (1000) times the file's "
        "size: a zip bomb, or raise the limit");
  // Repeated paragraphs deflate less, but 64 MiB of them pass an 8 MiB budget.
  std::string body;
  const std::string para = w_para("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
  while (body.size() < (64u << 20)) body += para;
  CHECK(error_of(t::docx(body), {{"max_unpacked_bytes", 8 << 20}}) ==
        "office.text: word/document.xml unpacks past max_unpacked_bytes (8388608 bytes for all "
        "parts): a zip bomb, or raise the limit");
}

TEST_CASE("office.text: billion laughs and other DTDs are refused") {
  const std::string laughs =
      "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
      "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
      "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>"
      "<w:document xmlns:w=\"x\"><w:body><w:p><w:r><w:t>&lol3;</w:t></w:r></w:p></w:body>"
      "</w:document>";
  CHECK(error_of(t::zip_bytes({{"word/document.xml", laughs}})) ==
        "office.text: word/document.xml: XML with a document type declaration is refused "
        "(Office and OpenDocument files never have one; entity expansion hides there)");
}

TEST_CASE("office.text: what is not an Office file fails clearly") {
  CHECK(error_of("plain text").starts_with("office.text: not a zip archive ("));
  CHECK(error_of(std::string("\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", 8) + std::string(504, '\0')) ==
        "office.text: an OLE2 compound file, not a zip: a password-protected (encrypted) Office "
        "file, or a legacy .doc/.xls/.ppt, which office.text does not read");
  CHECK(error_of(t::zip_bytes({{"readme.txt", "hello"}})) ==
        "office.text: a zip archive, but not a DOCX, XLSX, PPTX, ODT, ODS or ODP file (none of "
        "word/document.xml, xl/workbook.xml, ppt/presentation.xml, content.xml)");
  CHECK(error_of(t::zip_bytes({{"word/document.xml", "<w:document><unclosed>"}}))
            .starts_with("office.text: word/document.xml: "));
  // A truncated archive.
  const std::string whole = t::docx(w_para("x"));
  CHECK(error_of(whole.substr(0, whole.size() / 2)).starts_with("office.text: "));
}

TEST_CASE("office.text: review cases: repeated filled cells, empty first slides, text boxes") {
  CHECK(text_ok(t::odf("spreadsheet",
                       "<office:spreadsheet><table:table table:name=\"S\"><table:table-row>"
                       "<table:table-cell table:number-columns-repeated=\"3\"><text:p>7</text:p>"
                       "</table:table-cell><table:table-cell><text:p>end</text:p>"
                       "</table:table-cell></table:table-row></table:table>"
                       "</office:spreadsheet>")) == "S\n7\t7\t7\tend\n");
  // An image-only first slide still counts: the second slide's text is on page 2.
  CHECK(text_ok(t::pptx({{}, {"second"}, {"third"}})) == "\fsecond\n\fthird\n");
  // An empty paragraph at the top of a slide: the next paragraph's runs stay on one line.
  CHECK(text_ok(t::zip_bytes(
            {{"ppt/presentation.xml",
              "<p:presentation xmlns:p=\"p\" xmlns:r=\"http://schemas.openxmlformats.org/"
              "officeDocument/2006/relationships\"><p:sldIdLst><p:sldId r:id=\"a\"/>"
              "<p:sldId r:id=\"b\"/></p:sldIdLst></p:presentation>"},
             {"ppt/_rels/presentation.xml.rels",
              "<Relationships><Relationship Id=\"a\" Target=\"slides/1.xml\"/>"
              "<Relationship Id=\"b\" Target=\"slides/2.xml\"/></Relationships>"},
             {"ppt/slides/1.xml", "<s xmlns:a=\"a\"><a:p><a:r><a:t>one</a:t></a:r></a:p></s>"},
             {"ppt/slides/2.xml",
              "<s xmlns:a=\"a\"><a:p/><a:p><a:r><a:t>two</a:t></a:r><a:r><a:t> runs</a:t></a:r>"
              "</a:p></s>"}})) == "one\n\ftwo runs\n");
  // Word's text box: mc:Choice and mc:Fallback hold the same text; it is read once.
  CHECK(text_ok(t::docx("<w:p><w:r><mc:AlternateContent "
                        "xmlns:mc=\"http://schemas.openxmlformats.org/markup-compatibility/2006\">"
                        "<mc:Choice><w:t>boxed</w:t></mc:Choice><mc:Fallback><w:t>boxed</w:t>"
                        "</mc:Fallback></mc:AlternateContent></w:r></w:p>")) == "boxed\n");
  // An entity expanded in an attribute default of the internal subset never gets that far.
  const std::string attr_laugh =
      "<?xml version=\"1.0\"?>\n<!-- a comment first -->\n<!doctype w:document [<!ENTITY a "
      "\"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ATTLIST w:document x CDATA "
      "\"&b;\">]><w:document xmlns:w=\"x\"/>";
  CHECK(error_of(t::zip_bytes({{"word/document.xml", attr_laugh}})) ==
        "office.text: word/document.xml: XML with a document type declaration is refused "
        "(Office and OpenDocument files never have one; entity expansion hides there)");
}

TEST_CASE("office.text: relationships are read by namespace, and targets resolved") {
  // Prefix "rel" instead of "r", and targets written as "../xl/..." from the package root.
  const std::string ns =
      "xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" "
      "xmlns:rel=\"http://schemas.openxmlformats.org/officeDocument/2006/"
      "relationships\"";
  const std::string file = t::zip_bytes(
      {{"xl/workbook.xml", "<workbook " + ns +
                               "><sheets><sheet name=\"Only\" sheetId=\"1\" rel:id=\"rId1\"/>"
                               "</sheets></workbook>"},
       {"xl/_rels/workbook.xml.rels",
        "<Relationships><Relationship Id=\"rId1\" Target=\"../xl/./worksheets/s.xml\"/>"
        "</Relationships>"},
       {"xl/worksheets/s.xml", "<worksheet " + ns +
                                   "><sheetData><row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>"
                                   "cell</t></is></c></row></sheetData></worksheet>"}});
  CHECK(text_ok(file) == "Only\ncell\n");
}
