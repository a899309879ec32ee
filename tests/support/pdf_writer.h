#pragma once
// Minimal PDFs written by the tests themselves (no downloaded corpus): each page holds lines of
// ASCII text in Helvetica, with a correct cross-reference table, so that poppler reads them
// without repairs. Also the hostile shapes the pdf.text tests need.

#include <cstdio>
#include <string>
#include <vector>

namespace docpipe::test {

// A PDF string literal: ( ) and \ escaped.
inline std::string pdf_string(const std::string& s) {
  std::string out = "(";
  for (char c : s) {
    if (c == '(' || c == ')' || c == '\\') out += '\\';
    out += c;
  }
  return out + ")";
}

// Objects 1..N written in order, then the xref table and trailer; `objects[i]` is the body of
// object i + 1 (without "N 0 obj" / "endobj").
inline std::string pdf_from_objects(const std::vector<std::string>& objects, size_t info = 0) {
  std::string pdf = "%PDF-1.4\n%\xE2\xE3\xCF\xD3\n";
  std::vector<size_t> offsets;
  for (size_t i = 0; i < objects.size(); ++i) {
    offsets.push_back(pdf.size());
    pdf += std::to_string(i + 1) + " 0 obj\n" + objects[i] + "\nendobj\n";
  }
  const size_t xref = pdf.size();
  pdf += "xref\n0 " + std::to_string(objects.size() + 1) + "\n0000000000 65535 f \n";
  for (size_t off : offsets) {
    char line[24];
    std::snprintf(line, sizeof line, "%010zu 00000 n \n", off);
    pdf += line;
  }
  pdf += "trailer\n<< /Size " + std::to_string(objects.size() + 1) + " /Root 1 0 R" +
         (info != 0 ? " /Info " + std::to_string(info) + " 0 R" : std::string()) +
         " >>\nstartxref\n" + std::to_string(xref) + "\n%%EOF\n";
  return pdf;
}

// Appends a page of `lines` (Helvetica 12 pt, font object 3, on US Letter) to `objects`: its page
// object, then its content stream; adds the page to `kids`.
inline void add_text_page(std::vector<std::string>& objects, std::string& kids,
                          const std::vector<std::string>& lines) {
  const size_t page_obj = objects.size() + 1;
  kids += std::to_string(page_obj) + " 0 R ";
  std::string content = "BT /F1 12 Tf 14 TL 72 720 Td\n";
  for (const std::string& line : lines) content += pdf_string(line) + " Tj T*\n";
  content += "ET\n";
  objects.push_back("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents " +
                    std::to_string(page_obj + 1) +
                    " 0 R /Resources << /Font << /F1 3 0 R >> >> >>");
  objects.push_back("<< /Length " + std::to_string(content.size()) + " >>\nstream\n" + content +
                    "endstream");
}

// A PDF of `pages`, each a list of lines written top to bottom; `info_entries` (e.g.
// "/Title (Q1) /Author (Ann)") become its document information dictionary.
inline std::string make_pdf(const std::vector<std::vector<std::string>>& pages,
                            const std::string& info_entries = {}) {
  // 1 catalog, 2 pages, 3 font, then per page: page object, content stream.
  std::vector<std::string> objects(3);
  std::string kids;
  for (const std::vector<std::string>& lines : pages) add_text_page(objects, kids, lines);
  objects[0] = "<< /Type /Catalog /Pages 2 0 R >>";
  objects[1] =
      "<< /Type /Pages /Kids [" + kids + "] /Count " + std::to_string(pages.size()) + " >>";
  objects[2] = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>";
  if (info_entries.empty()) return pdf_from_objects(objects);
  objects.push_back("<< " + info_entries + " >>");
  return pdf_from_objects(objects, objects.size());
}

// A page tree that contains itself: the Pages node lists itself as its kid.
inline std::string recursive_pdf() {
  return pdf_from_objects({"<< /Type /Catalog /Pages 2 0 R >>",
                           "<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
                           "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"});
}

}  // namespace docpipe::test
