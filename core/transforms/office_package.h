#pragma once
// What office.text reads Office (OOXML) and OpenDocument packages with, apart from what it does
// with each format: the zip archive read through one budget (zip bombs), a streaming pass over
// an XML part that refuses document type declarations and entities (billion laughs), attribute
// and relationship helpers, and TextOut, the line-structured text it writes.

#include <libxml/xmlreader.h>
#include <zip.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace docpipe::office {

inline constexpr size_t kMaxRepeat = 1024;  // ODF's repeated empty cells/rows written at most

// What all the parts of one package may unpack to.
struct PackageLimits {
  uint64_t max_unpacked = 0;  // bytes, all parts together
  uint64_t max_ratio = 0;     // unpacked bytes per byte of the file (past the first MiB)
};

// "office.text: WHY", a damaged package.
Error fail(const std::string& why);

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
  Archive(const PackageLimits& limits, std::string_view data);
  ~Archive();
  Archive(const Archive&) = delete;
  Archive& operator=(const Archive&) = delete;

  bool open() const { return zip_ != nullptr; }
  int64_t entries() const;
  bool has(const std::string& name) const;
  // The part `name`, inflated within the budget; an error if it is missing, broken or too large.
  Result<std::string> read(const std::string& name);
  std::string open_error();

 private:
  const PackageLimits limits_;
  const uint64_t compressed_;
  zip_error_t error_{};
  zip_t* zip_ = nullptr;
  uint64_t unpacked_ = 0;
};

// One event of a streaming pass over an XML part.
struct XmlEvent {
  enum Kind { kStart, kEnd, kText } kind;
  std::string_view name;  // local name
  xmlTextReader* reader;
  std::string_view text;
};

// Calls `on` for each start element, end element and text of `xml` (the part named `part`).
// XML with a document type declaration or an entity reference is refused.
Status walk_xml(const std::string& part, const std::string& xml,
                const std::function<void(const XmlEvent&)>& on);

// An attribute by its qualified name; "" if absent.
std::string attr(xmlTextReader* r, const char* name);
// An attribute by local name and namespace, whatever prefix the producer chose.
std::string attr_ns(xmlTextReader* r, const char* local, const char* ns);

inline constexpr const char* kRelNs =
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
inline constexpr const char* kTableNs = "urn:oasis:names:tc:opendocument:xmlns:table:1.0";
inline constexpr const char* kTextNs = "urn:oasis:names:tc:opendocument:xmlns:text:1.0";

// "xl/" + "../x/y.xml" -> "x/y.xml": a relationship target resolved against its base folder.
std::string resolve_part(const std::string& base, const std::string& target);

// Relationship id -> part name, from a .rels part; targets are relative to `base` ("xl/").
Result<std::map<std::string, std::string>> relationships(Archive& zip, const std::string& rels,
                                                         const std::string& base);

// The parts listed in order by `list_part` (elements `element` with an r:id attribute), and
// their `name` attributes in `names` if given.
Result<std::vector<std::string>> ordered_parts(Archive& zip, const std::string& list_part,
                                               const char* element, const std::string& rels,
                                               const std::string& base,
                                               std::vector<std::string>* names = nullptr);

}  // namespace docpipe::office
