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
#include "core/transforms/library_versions.h"
#include "core/transforms/office_package.h"
#include "core/transforms/param_reader.h"
#include "core/transforms/whole_document.h"

namespace docpipe {
namespace {

using namespace office;

constexpr int64_t kDefaultMaxUnpacked = int64_t{256} << 20;
constexpr int64_t kDefaultMaxRatio = 1000;
constexpr int64_t kMaxEntries = 100000;

struct OfficeOptions {
  uint64_t max_input_bytes = 0;
  uint64_t max_unpacked = 0;
  uint64_t max_ratio = 0;
  WorkerLimits worker;
};

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
    Archive zip(PackageLimits{options_.max_unpacked, options_.max_ratio}, data);
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
        },
    .library_version = libxml2_library_version});

}  // namespace
}  // namespace docpipe
