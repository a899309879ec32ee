#pragma once
// Office files written by the tests (they are zip archives of XML): DOCX, XLSX, PPTX, ODT, ODS
// and ODP with just the parts office.text reads, made with libzip.

#include <stdlib.h>
#include <unistd.h>
#include <zip.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace docpipe::test {

using ZipEntries = std::vector<std::pair<std::string, std::string>>;

// A zip archive (deflated entries) of `entries`, as bytes.
inline std::string zip_bytes(const ZipEntries& entries) {
  char path[] = "/tmp/docpipe-zip-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) throw std::runtime_error("mkstemp");
  ::close(fd);
  int err = 0;
  zip_t* z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
  if (z == nullptr) throw std::runtime_error("zip_open");
  for (const auto& [name, data] : entries) {
    zip_source_t* src = zip_source_buffer(z, data.data(), data.size(), 0);
    if (src == nullptr || zip_file_add(z, name.c_str(), src, ZIP_FL_OVERWRITE) < 0) {
      throw std::runtime_error("zip_file_add " + name);
    }
  }
  if (zip_close(z) != 0) throw std::runtime_error("zip_close");
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  ::unlink(path);
  return ss.str();
}

inline const char* kW = "xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"";

// A DOCX whose body is `body_xml` (w:p, w:tbl, ... elements).
inline std::string docx(const std::string& body_xml) {
  return zip_bytes(
      {{"[Content_Types].xml", "<Types/>"},
       {"word/document.xml", std::string("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                                         "<w:document ") +
                                 kW + "><w:body>" + body_xml + "</w:body></w:document>"}});
}

inline std::string w_para(const std::string& text) {
  return "<w:p><w:r><w:t xml:space=\"preserve\">" + text + "</w:t></w:r></w:p>";
}

// An XLSX with `sheets` (name, sheetData XML) listed in workbook order, stored under file names
// in the opposite order, and `shared` strings.
inline std::string xlsx(const std::vector<std::pair<std::string, std::string>>& sheets,
                        const std::vector<std::string>& shared) {
  const std::string ns =
      "xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" "
      "xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/"
      "relationships\"";
  std::string workbook = "<workbook " + ns + "><sheets>";
  std::string rels = "<Relationships>";
  ZipEntries entries;
  for (size_t i = 0; i < sheets.size(); ++i) {
    const std::string file = "worksheets/sheet" + std::to_string(sheets.size() - i) + ".xml";
    workbook += "<sheet name=\"" + sheets[i].first + "\" sheetId=\"" + std::to_string(i + 1) +
                "\" r:id=\"rId" + std::to_string(i + 1) + "\"/>";
    rels += "<Relationship Id=\"rId" + std::to_string(i + 1) + "\" Target=\"" + file + "\"/>";
    entries.push_back({"xl/" + file, "<worksheet " + ns + "><sheetData>" + sheets[i].second +
                                         "</sheetData></worksheet>"});
  }
  workbook += "</sheets></workbook>";
  rels += "</Relationships>";
  std::string sst = "<sst " + ns + ">";
  for (const std::string& s : shared) sst += "<si><t>" + s + "</t></si>";
  sst += "</sst>";
  entries.push_back({"xl/workbook.xml", workbook});
  entries.push_back({"xl/_rels/workbook.xml.rels", rels});
  entries.push_back({"xl/sharedStrings.xml", sst});
  return zip_bytes(entries);
}

// A PPTX of `slides` (each a list of paragraphs), in order.
inline std::string pptx(const std::vector<std::vector<std::string>>& slides) {
  const std::string ns =
      "xmlns:p=\"http://schemas.openxmlformats.org/presentationml/2006/main\" "
      "xmlns:a=\"http://schemas.openxmlformats.org/drawingml/2006/main\" "
      "xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/"
      "relationships\"";
  std::string pres = "<p:presentation " + ns + "><p:sldIdLst>";
  std::string rels = "<Relationships>";
  ZipEntries entries;
  for (size_t i = 0; i < slides.size(); ++i) {
    // Stored in the opposite order, as after slides were moved: the list decides.
    const std::string file = "slides/slide" + std::to_string(slides.size() - i) + ".xml";
    pres += "<p:sldId id=\"" + std::to_string(256 + i) + "\" r:id=\"rId" + std::to_string(i + 1) +
            "\"/>";
    rels += "<Relationship Id=\"rId" + std::to_string(i + 1) + "\" Target=\"" + file + "\"/>";
    std::string body = "<p:sld " + ns + "><p:cSld><p:spTree><p:sp><p:txBody>";
    for (const std::string& para : slides[i])
      body += "<a:p><a:r><a:t>" + para + "</a:t></a:r></a:p>";
    body += "</p:txBody></p:sp></p:spTree></p:cSld></p:sld>";
    entries.push_back({"ppt/" + file, body});
  }
  pres += "</p:sldIdLst></p:presentation>";
  rels += "</Relationships>";
  entries.push_back({"ppt/presentation.xml", pres});
  entries.push_back({"ppt/_rels/presentation.xml.rels", rels});
  return zip_bytes(entries);
}

// An OpenDocument file of `kind` ("text", "spreadsheet", "presentation") whose office:body holds
// `body_xml`.
inline std::string odf(const std::string& kind, const std::string& body_xml) {
  const std::string content =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?><office:document-content "
      "xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" "
      "xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\" "
      "xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\" "
      "xmlns:draw=\"urn:oasis:names:tc:opendocument:xmlns:drawing:1.0\"><office:body>" +
      body_xml + "</office:body></office:document-content>";
  return zip_bytes(
      {{"mimetype", "application/vnd.oasis.opendocument." + kind}, {"content.xml", content}});
}

}  // namespace docpipe::test
