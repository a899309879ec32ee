// office.text: the text of DOCX, XLSX, PPTX, ODT, ODS and ODP files, read from their zip
// (libzip) and XML (libxml2's streaming reader) in reading order:
//
// - DOCX: the body's paragraphs, one per line; tabs and breaks kept; table rows as tab-separated
//   cells. Deleted text (tracked changes) and field codes are left out.
// - XLSX: each sheet in workbook order, its name on the first line, then one line per row with
//   the cells separated by tabs (empty cells kept between filled ones); shared and inline strings,
//   numbers as stored (a date is its serial number), TRUE/FALSE, errors (#DIV/0!) as written.
// - PPTX: each slide in presentation order, one line per paragraph.
// - ODT, ODS, ODP: the same from content.xml (an ODS sheet's name first, ODP's pages in order).
// - Sheets and slides are separated by form feeds, like pdf.text's pages.
//
// Hostile files: a zip bomb is stopped by `max_unpacked_bytes` (all parts read, counted as they
// are inflated, whatever sizes the archive declares) and `max_ratio`; XML with a document type
// declaration is refused outright (Office files never have one, and it is where entity expansion
// lives: billion laughs), no entity is substituted and nothing is loaded (XML_PARSE_NONET); the
// declared encoding is ignored (both formats are UTF-8). libzip and libxml2 run in a sandboxed
// worker with a memory limit (isolated_worker.h).

#include <libxml/xmlreader.h>
#include <zip.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/transforms/isolated_worker.h"
#include "core/transforms/param_reader.h"
#include "core/transforms/whole_document.h"

namespace docpipe {
namespace {

constexpr int64_t kDefaultMaxUnpacked = int64_t{256} << 20;
constexpr int64_t kDefaultMaxRatio = 1000;
constexpr uint64_t kRatioFloorBytes = 1u << 20;
constexpr int64_t kMaxEntries = 100000;
constexpr size_t kMaxRepeat = 1024;  // ODF's repeated empty cells/rows written at most

struct OfficeOptions {
  uint64_t max_input_bytes = 0;
  uint64_t max_unpacked = 0;
  uint64_t max_ratio = 0;
  WorkerLimits worker;
};

Error fail(const std::string& why) {
  return make_error(ErrorCode::kCorruptInput, "office.text: " + why);
}

// Text with line structure: trailing blanks of a line are dropped, tabs and line breaks asked for
// between cells and rows are written only when something follows.
class TextOut {
 public:
  void text(std::string_view t) {
    if (t.empty()) return;
    flush();
    out_.append(t);
  }
  void tab(size_t n = 1) { pending_tabs_ += n; }
  void newline(size_t n = 1) {
    pending_tabs_ = 0;
    if (!out_.empty()) pending_lines_ += n;
  }
  // A new sheet or slide: a form feed before every one but the first, even after one without
  // text, so that the n-th page is always the n-th sheet or slide.
  void page() {
    pending_tabs_ = 0;
    pending_lines_ = 0;
    if (pages_++ == 0) return;
    trim();
    if (!out_.empty() && out_.back() != '\f') out_ += '\n';
    out_ += '\f';
  }
  void drop_pending_tabs() { pending_tabs_ = 0; }
  std::string take() {
    trim();
    if (!out_.empty() && out_.back() != '\n' && out_.back() != '\f') out_ += '\n';
    return std::move(out_);
  }

 private:
  void trim() {
    while (!out_.empty() && (out_.back() == ' ' || out_.back() == '\t')) out_.pop_back();
  }
  void flush() {
    // No blank lines right after a form feed: a sheet or slide starts at its first text.
    if (pending_lines_ > 0 && !out_.empty() && out_.back() != '\f') {
      trim();
      out_.append(std::min(pending_lines_, size_t{2}), '\n');
    }
    pending_lines_ = 0;
    out_.append(std::min(pending_tabs_, kMaxRepeat), '\t');
    pending_tabs_ = 0;
  }
  std::string out_;
  size_t pending_tabs_ = 0;
  size_t pending_lines_ = 0;
  size_t pages_ = 0;
};

// The archive, with every part read through one budget.
class Archive {
 public:
  Archive(const OfficeOptions& options, std::string_view data)
      : options_(options), compressed_(data.size()) {
    zip_error_init(&error_);
    zip_source_t* src = zip_source_buffer_create(data.data(), data.size(), 0, &error_);
    if (src == nullptr) return;
    zip_ = zip_open_from_source(src, ZIP_RDONLY, &error_);
    if (zip_ == nullptr) zip_source_free(src);
  }
  ~Archive() {
    if (zip_ != nullptr) zip_discard(zip_);
    zip_error_fini(&error_);
  }
  Archive(const Archive&) = delete;
  Archive& operator=(const Archive&) = delete;

  bool open() const { return zip_ != nullptr; }
  int64_t entries() const { return zip_ == nullptr ? 0 : zip_get_num_entries(zip_, 0); }
  bool has(const std::string& name) const {
    return zip_ != nullptr && zip_name_locate(zip_, name.c_str(), 0) >= 0;
  }

  // The part `name`, inflated within the budget; nullopt (with `error`) if it is missing, broken
  // or too large.
  Result<std::string> read(const std::string& name) {
    zip_file_t* f = zip_fopen(zip_, name.c_str(), 0);
    if (f == nullptr) return fail(name + ": " + zip_strerror(zip_));
    std::string out;
    char buf[65536];
    for (;;) {
      const zip_int64_t n = zip_fread(f, buf, sizeof buf);
      if (n < 0) {
        std::string why = zip_file_strerror(f);
        zip_fclose(f);
        return fail(name + ": " + why);
      }
      if (n == 0) break;
      unpacked_ += static_cast<uint64_t>(n);
      if (unpacked_ > options_.max_unpacked) {
        zip_fclose(f);
        return make_error(ErrorCode::kTooLarge,
                          "office.text: " + name + " unpacks past max_unpacked_bytes (" +
                              std::to_string(options_.max_unpacked) +
                              " bytes for all parts): a zip bomb, or raise the limit");
      }
      if (unpacked_ > kRatioFloorBytes &&
          unpacked_ / std::max<uint64_t>(compressed_, 1) > options_.max_ratio) {
        zip_fclose(f);
        return make_error(ErrorCode::kTooLarge,
                          "office.text: " + name + " unpacks to more than max_ratio (" +
                              std::to_string(options_.max_ratio) +
                              ") times the file's size: a zip bomb, or raise the limit");
      }
      out.append(buf, static_cast<size_t>(n));
    }
    zip_fclose(f);
    return out;
  }

  std::string open_error() { return zip_error_strerror(&error_); }

 private:
  const OfficeOptions& options_;
  const uint64_t compressed_;
  zip_error_t error_{};
  zip_t* zip_ = nullptr;
  uint64_t unpacked_ = 0;
};

struct ReaderFree {
  void operator()(xmlTextReader* r) const { xmlFreeTextReader(r); }
};

// A streaming pass over one XML part: calls `on` for each start element, end element and text.
struct XmlEvent {
  enum Kind { kStart, kEnd, kText } kind;
  std::string_view name;  // local name
  xmlTextReader* reader;
  std::string_view text;
};

// Whether the XML has a document type declaration before its root element. Checked before
// libxml2 sees the part: the reader reports the declaration only after it has parsed the
// internal subset, and an attribute default there can already expand entities.
bool has_doctype(std::string_view xml) {
  size_t at = 0;
  while ((at = xml.find('<', at)) != std::string_view::npos) {
    const std::string_view rest = xml.substr(at);
    if (rest.starts_with("<?")) {
      at = xml.find("?>", at);
    } else if (rest.starts_with("<!--")) {
      at = xml.find("-->", at);
    } else {
      if (rest.size() < 9) return false;
      std::string head(rest.substr(0, 9));
      for (char& c : head) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      return head == "<!DOCTYPE";
    }
    if (at == std::string_view::npos) return false;
    ++at;
  }
  return false;
}

template <typename F>
Status walk_xml(const std::string& part, const std::string& xml, F&& on) {
  if (has_doctype(xml)) {
    return fail(part +
                ": XML with a document type declaration is refused (Office and "
                "OpenDocument files never have one; entity expansion hides there)");
  }
  // Not XML_PARSE_HUGE: libxml2's own limits (depth, entity amplification) stay on.
  std::unique_ptr<xmlTextReader, ReaderFree> r(xmlReaderForMemory(
      xml.data(), static_cast<int>(std::min<size_t>(xml.size(), INT32_MAX)), nullptr, "UTF-8",
      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_COMPACT |
          XML_PARSE_IGNORE_ENC));
  if (r == nullptr) return fail(part + ": cannot start the XML reader");
  int rc;
  while ((rc = xmlTextReaderRead(r.get())) == 1) {
    const int type = xmlTextReaderNodeType(r.get());
    if (type == XML_READER_TYPE_DOCUMENT_TYPE) {
      return fail(part +
                  ": XML with a document type declaration is refused (Office and "
                  "OpenDocument files never have one; entity expansion hides there)");
    }
    const char* local = reinterpret_cast<const char*>(xmlTextReaderConstLocalName(r.get()));
    const std::string_view name = local != nullptr ? local : "";
    if (type == XML_READER_TYPE_ELEMENT) {
      on(XmlEvent{XmlEvent::kStart, name, r.get(), {}});
      if (xmlTextReaderIsEmptyElement(r.get())) on(XmlEvent{XmlEvent::kEnd, name, r.get(), {}});
    } else if (type == XML_READER_TYPE_END_ELEMENT) {
      on(XmlEvent{XmlEvent::kEnd, name, r.get(), {}});
    } else if (type == XML_READER_TYPE_TEXT || type == XML_READER_TYPE_CDATA ||
               type == XML_READER_TYPE_SIGNIFICANT_WHITESPACE) {
      const char* v = reinterpret_cast<const char*>(xmlTextReaderConstValue(r.get()));
      on(XmlEvent{XmlEvent::kText, name, r.get(), v != nullptr ? v : ""});
    } else if (type == XML_READER_TYPE_ENTITY_REFERENCE) {
      return fail(part + ": XML entity references are refused");
    }
  }
  if (rc < 0) {
    const xmlError* e = xmlGetLastError();
    std::string why = e != nullptr && e->message != nullptr ? e->message : "malformed XML";
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return fail(part + ": " + why);
  }
  return ok();
}

std::string attr(xmlTextReader* r, const char* name) {
  xmlChar* v = xmlTextReaderGetAttribute(r, reinterpret_cast<const xmlChar*>(name));
  if (v == nullptr) return {};
  std::string out(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return out;
}

// An attribute by local name and namespace, whatever prefix the producer chose.
std::string attr_ns(xmlTextReader* r, const char* local, const char* ns) {
  xmlChar* v = xmlTextReaderGetAttributeNs(r, reinterpret_cast<const xmlChar*>(local),
                                           reinterpret_cast<const xmlChar*>(ns));
  if (v == nullptr) return {};
  std::string out(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return out;
}

constexpr const char* kRelNs =
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
constexpr const char* kTableNs = "urn:oasis:names:tc:opendocument:xmlns:table:1.0";
constexpr const char* kTextNs = "urn:oasis:names:tc:opendocument:xmlns:text:1.0";

// "xl/" + "../x/y.xml" -> "x/y.xml": a relationship target resolved against its base folder.
std::string resolve_part(const std::string& base, const std::string& target) {
  std::vector<std::string> parts;
  std::string path = target.starts_with("/") ? target.substr(1) : base + target;
  size_t at = 0;
  while (at <= path.size()) {
    size_t slash = path.find('/', at);
    if (slash == std::string::npos) slash = path.size();
    const std::string seg = path.substr(at, slash - at);
    if (seg == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!seg.empty() && seg != ".") {
      parts.push_back(seg);
    }
    at = slash + 1;
  }
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : "/") + p;
  return out;
}

// Relationship id -> part name, from a .rels part; targets are relative to `base` ("xl/").
Result<std::map<std::string, std::string>> relationships(Archive& zip, const std::string& rels,
                                                         const std::string& base) {
  Result<std::string> xml = zip.read(rels);
  if (!xml) return xml.error();
  std::map<std::string, std::string> out;
  Status st = walk_xml(rels, *xml, [&](const XmlEvent& e) {
    if (e.kind != XmlEvent::kStart || e.name != "Relationship") return;
    out[attr(e.reader, "Id")] = resolve_part(base, attr(e.reader, "Target"));
  });
  if (!st) return st.error();
  return out;
}

// The parts listed in order by `list_part` (elements `element` with an r:id attribute).
Result<std::vector<std::string>> ordered_parts(Archive& zip, const std::string& list_part,
                                               const char* element, const std::string& rels,
                                               const std::string& base,
                                               std::vector<std::string>* names = nullptr) {
  Result<std::map<std::string, std::string>> targets = relationships(zip, rels, base);
  if (!targets) return targets.error();
  Result<std::string> xml = zip.read(list_part);
  if (!xml) return xml.error();
  std::vector<std::string> parts;
  Status st = walk_xml(list_part, *xml, [&](const XmlEvent& e) {
    if (e.kind != XmlEvent::kStart || e.name != element) return;
    auto it = targets->find(attr_ns(e.reader, "id", kRelNs));
    if (it == targets->end()) return;
    parts.push_back(it->second);
    if (names != nullptr) names->push_back(attr(e.reader, "name"));
  });
  if (!st) return st.error();
  return parts;
}

Status docx(Archive& zip, TextOut& out) {
  Result<std::string> xml = zip.read("word/document.xml");
  if (!xml) return xml.error();
  int in_t = 0, in_run = 0, in_cell = 0, fallback = 0;
  bool space = false;  // a cell's paragraphs are joined by spaces
  return walk_xml("word/document.xml", *xml, [&](const XmlEvent& e) {
    // Word writes text boxes twice, as mc:Choice and as an mc:Fallback for old readers.
    if (e.kind != XmlEvent::kText && e.name == "Fallback") {
      fallback += e.kind == XmlEvent::kStart ? 1 : -1;
      return;
    }
    if (fallback > 0) return;
    if (e.kind == XmlEvent::kText) {
      if (in_t == 0) return;
      if (space && !e.text.empty()) out.text(" ");
      space = false;
      out.text(e.text);
      return;
    }
    const bool start = e.kind == XmlEvent::kStart;
    if (e.name == "t") {
      in_t += start ? 1 : -1;
    } else if (e.name == "r") {
      in_run += start ? 1 : -1;
    } else if (e.name == "tc") {
      in_cell += start ? 1 : -1;
      space = false;
      if (!start) out.tab();
    } else if (e.name == "tr" && !start) {
      out.newline();
    } else if (e.name == "p" && !start) {
      if (in_cell > 0) {
        space = true;
      } else {
        out.newline();
      }
    } else if (start && in_run > 0 && e.name == "tab") {
      out.text("\t");
    } else if (start && in_run > 0 && (e.name == "br" || e.name == "cr")) {
      out.newline();
    }
  });
}

// "BC12" -> 54 (0-based column of a cell reference); -1 if there is none.
int64_t column_of(const std::string& ref) {
  int64_t col = 0;
  size_t i = 0;
  for (; i < ref.size() && ref[i] >= 'A' && ref[i] <= 'Z' && i < 4; ++i) {
    col = col * 26 + (ref[i] - 'A' + 1);
  }
  return i == 0 ? -1 : col - 1;
}

Status xlsx(Archive& zip, TextOut& out) {
  std::vector<std::string> shared;
  if (zip.has("xl/sharedStrings.xml")) {
    Result<std::string> xml = zip.read("xl/sharedStrings.xml");
    if (!xml) return xml.error();
    int in_si = 0, in_t = 0, in_phonetic = 0;
    Status st = walk_xml("xl/sharedStrings.xml", *xml, [&](const XmlEvent& e) {
      const bool start = e.kind == XmlEvent::kStart;
      if (e.kind == XmlEvent::kText) {
        if (in_si > 0 && in_t > 0 && in_phonetic == 0) shared.back().append(e.text);
      } else if (e.name == "si") {
        in_si += start ? 1 : -1;
        if (start) shared.emplace_back();
      } else if (e.name == "t") {
        in_t += start ? 1 : -1;
      } else if (e.name == "rPh") {
        in_phonetic += start ? 1 : -1;
      }
    });
    if (!st) return st;
  }
  std::vector<std::string> names;
  Result<std::vector<std::string>> sheets =
      ordered_parts(zip, "xl/workbook.xml", "sheet", "xl/_rels/workbook.xml.rels", "xl/", &names);
  if (!sheets) return sheets.error();
  for (size_t s = 0; s < sheets->size(); ++s) {
    out.page();
    out.text(names[s]);
    out.newline();
    Result<std::string> xml = zip.read((*sheets)[s]);
    if (!xml) return xml.error();
    int64_t next_col = 0;
    std::string type, value;
    int in_v = 0, in_is_t = 0, in_cell = 0;
    Status st = walk_xml((*sheets)[s], *xml, [&](const XmlEvent& e) {
      const bool start = e.kind == XmlEvent::kStart;
      if (e.kind == XmlEvent::kText) {
        if (in_cell > 0 && (in_v > 0 || in_is_t > 0)) value.append(e.text);
        return;
      }
      if (e.name == "row") {
        if (start) {
          next_col = 0;
        } else {
          out.newline();
        }
      } else if (e.name == "c") {
        if (start) {
          ++in_cell;
          type = attr(e.reader, "t");
          value.clear();
          const int64_t col = column_of(attr(e.reader, "r"));
          if (col > next_col) out.tab(static_cast<size_t>(col - next_col));
          next_col = std::max(col, next_col);
          return;
        }
        --in_cell;
        std::string text = value;
        if (type == "s") {
          const size_t idx = static_cast<size_t>(std::strtoull(value.c_str(), nullptr, 10));
          text = idx < shared.size() ? shared[idx] : std::string();
        } else if (type == "b") {
          text = value == "1" ? "TRUE" : "FALSE";
        }
        out.text(text);
        out.tab();
        ++next_col;
      } else if (e.name == "v") {
        in_v += start ? 1 : -1;
      } else if (e.name == "t") {
        in_is_t += start ? 1 : -1;
      }
    });
    if (!st) return st;
  }
  return ok();
}

Status pptx(Archive& zip, TextOut& out) {
  Result<std::vector<std::string>> slides = ordered_parts(
      zip, "ppt/presentation.xml", "sldId", "ppt/_rels/presentation.xml.rels", "ppt/");
  if (!slides) return slides.error();
  for (const std::string& slide : *slides) {
    out.page();
    Result<std::string> xml = zip.read(slide);
    if (!xml) return xml.error();
    int in_t = 0;
    Status st = walk_xml(slide, *xml, [&](const XmlEvent& e) {
      const bool start = e.kind == XmlEvent::kStart;
      if (e.kind == XmlEvent::kText) {
        if (in_t > 0) out.text(e.text);
      } else if (e.name == "t") {
        in_t += start ? 1 : -1;
      } else if (e.name == "p" && !start) {
        out.newline();
      } else if (e.name == "br" && start) {
        out.newline();
      } else if (e.name == "tc" && !start) {
        out.tab();
      } else if (e.name == "tr" && !start) {
        out.newline();
      }
    });
    if (!st) return st;
  }
  return ok();
}

Status odf(Archive& zip, const std::string& mimetype, TextOut& out) {
  Result<std::string> xml = zip.read("content.xml");
  if (!xml) return xml.error();
  const bool sheets = mimetype.ends_with(".spreadsheet");
  const bool pages = mimetype.ends_with(".presentation");
  int in_para = 0, skip = 0, in_cell = 0;
  size_t repeat = 1;
  bool cell_has_text = false;
  std::string cell_text;  // a repeated cell's content, written once per repetition
  bool space = false;     // a cell's paragraphs are joined by spaces
  return walk_xml("content.xml", *xml, [&](const XmlEvent& e) {
    const bool start = e.kind == XmlEvent::kStart;
    if (skip > 0) {
      if (e.kind != XmlEvent::kText && e.name == "annotation") skip += start ? 1 : -1;
      return;
    }
    if (e.kind == XmlEvent::kText) {
      if (in_para > 0 && !e.text.empty()) {
        if (space) out.text(" ");
        space = false;
        out.text(e.text);
        if (in_cell > 0) cell_text.append(e.text);
        cell_has_text = true;
      }
      return;
    }
    if (e.name == "annotation" && start) {
      skip = 1;
    } else if (e.name == "p" || e.name == "h") {
      in_para += start ? 1 : -1;
      if (!start) {
        if (in_cell > 0) {
          space = true;
        } else {
          out.newline();
        }
      }
    } else if (e.name == "s" && start && in_para > 0) {
      const std::string c = attr_ns(e.reader, "c", kTextNs);
      const size_t n =
          c.empty() ? 1 : std::min<size_t>(std::strtoull(c.c_str(), nullptr, 10), kMaxRepeat);
      out.text(std::string(n, ' '));
    } else if (e.name == "tab" && start && in_para > 0) {
      out.text("\t");
    } else if (e.name == "line-break" && start && in_para > 0) {
      out.newline();
    } else if (e.name == "table" && start && sheets) {
      out.page();
      out.text(attr_ns(e.reader, "name", kTableNs));
      out.newline();
    } else if (e.name == "page" && start && pages) {
      out.page();
    } else if (e.name == "table-cell" || e.name == "covered-table-cell") {
      space = false;
      if (start) {
        ++in_cell;
        const std::string r = attr_ns(e.reader, "number-columns-repeated", kTableNs);
        repeat =
            r.empty() ? 1 : std::min<size_t>(std::strtoull(r.c_str(), nullptr, 10), kMaxRepeat);
        cell_has_text = false;
        cell_text.clear();
      } else {
        in_cell = std::max(in_cell - 1, 0);
        // A filled cell repeated (LibreOffice merges equal neighbours so): each copy is a cell.
        for (size_t i = 1; cell_has_text && i < repeat; ++i) {
          out.tab();
          out.text(cell_text);
        }
        // Cells inside a cell's paragraphs end their lines with newlines: a tab between cells.
        out.tab(cell_has_text ? 1 : repeat);
      }
    } else if (e.name == "table-row" && !start) {
      out.newline();
    }
  });
}

class OfficeTransform : public DocumentTransform {
 public:
  explicit OfficeTransform(const OfficeOptions& options)
      : options_(options), input_("office.text", options.max_input_bytes) {}

  Status update(std::string_view in, std::string&) override { return input_.add(in); }

  Status finish(std::string& out) override {
    const std::string& data = input_.data();
    if (data.size() >= 8 && std::memcmp(data.data(), "\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", 8) == 0) {
      return fail(
          "an OLE2 compound file, not a zip: a password-protected (encrypted) Office "
          "file, or a legacy .doc/.xls/.ppt, which office.text does not read");
    }
    Archive zip(options_, data);
    if (!zip.open()) {
      return fail("not a zip archive (" + zip.open_error() +
                  "); DOCX, XLSX, PPTX and OpenDocument files are zip archives");
    }
    if (zip.entries() > kMaxEntries) {
      return fail("the archive lists " + std::to_string(zip.entries()) + " entries (at most " +
                  std::to_string(kMaxEntries) + ")");
    }
    TextOut text;
    Status st;
    if (zip.has("word/document.xml")) {
      st = docx(zip, text);
    } else if (zip.has("xl/workbook.xml")) {
      st = xlsx(zip, text);
    } else if (zip.has("ppt/presentation.xml")) {
      st = pptx(zip, text);
    } else if (zip.has("content.xml") && zip.has("mimetype")) {
      Result<std::string> mimetype = zip.read("mimetype");
      if (!mimetype) return mimetype.error();
      if (!mimetype->starts_with("application/vnd.oasis.opendocument.")) {
        return fail("an OpenDocument-like archive of type \"" + mimetype->substr(0, 100) +
                    "\", not text, spreadsheet or presentation");
      }
      st = odf(zip, *mimetype, text);
    } else {
      return fail(
          "a zip archive, but not a DOCX, XLSX, PPTX, ODT, ODS or ODP file (none of "
          "word/document.xml, xl/workbook.xml, ppt/presentation.xml, content.xml)");
    }
    if (!st) return st;
    out += text.take();
    return ok();  // the input is freed with the transform, after the archive reading it
  }

 private:
  const OfficeOptions options_;
  WholeInput input_;
};

class OfficeStep : public TransformStep {
 public:
  explicit OfficeStep(OfficeOptions options) : options_(options) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext&) const override {
    return std::make_unique<OfficeTransform>(options_);
  }

 private:
  OfficeOptions options_;
};

const ParamSchema& schema() {
  static const ParamSchema s = add_worker_params(add_max_input_bytes(
      ParamSchema()
          .integer("max_unpacked_bytes", 1, ParamSchema::kNoMax, kDefaultMaxUnpacked,
                   "most bytes all the parts read may unpack to (default 256 MiB), counted as "
                   "they are inflated whatever the archive declares; a guard against zip bombs")
          .integer("max_ratio", 1, ParamSchema::kNoMax, kDefaultMaxRatio,
                   "largest allowed unpacked/file size ratio, checked once 1 MiB is unpacked "
                   "(Office XML rarely passes 100)")));
  return s;
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "office.text",
    .description = "the text of DOCX, XLSX, PPTX, ODT, ODS and ODP files in reading order "
                   "(libzip and libxml2, in a sandboxed worker process): paragraphs on lines, "
                   "table rows and sheet rows as tab-separated cells, sheets and slides "
                   "separated by form feeds; zip bombs and DTDs refused",
    .streaming = false,
    .params = schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      ParamReader reader(schema(), params, errors);
      OfficeOptions options;
      options.max_input_bytes = static_cast<uint64_t>(reader.integer("max_input_bytes"));
      options.max_unpacked = static_cast<uint64_t>(reader.integer("max_unpacked_bytes"));
      options.max_ratio = static_cast<uint64_t>(reader.integer("max_ratio"));
      options.worker = read_worker_limits(reader);
      if (!reader.ok()) return nullptr;
      return isolated_step("office.text", params, options.worker,
                           std::make_shared<OfficeStep>(options));
    },
    .isolated = true,
    .prepare_worker =
        [](const std::string&) {
          xmlInitParser();
          // libzip turns entries' DOS times into time_t with mktime(), which reads /etc/localtime
          // once (glibc keeps it): read it now, while the worker may still open files.
          std::time_t now = std::time(nullptr);
          std::tm local{};
          ::localtime_r(&now, &local);
          (void)std::mktime(&local);
          return std::string();
        }});

}  // namespace
}  // namespace docpipe
