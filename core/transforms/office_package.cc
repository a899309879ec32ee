#include "core/transforms/office_package.h"

#include <cctype>
#include <climits>
#include <memory>

namespace docpipe::office {
namespace {

// Below this many unpacked bytes the ratio is not checked: small files compress well.
constexpr uint64_t kRatioFloorBytes = 1u << 20;

struct ReaderFree {
  void operator()(xmlTextReader* r) const { xmlFreeTextReader(r); }
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

}  // namespace

Error fail(const std::string& why) {
  return make_error(ErrorCode::kCorruptInput, "office.text: " + why);
}

Archive::Archive(const PackageLimits& limits, std::string_view data)
    : limits_(limits), compressed_(data.size()) {
  zip_error_init(&error_);
  zip_source_t* src = zip_source_buffer_create(data.data(), data.size(), 0, &error_);
  if (src == nullptr) return;
  zip_ = zip_open_from_source(src, ZIP_RDONLY, &error_);
  if (zip_ == nullptr) zip_source_free(src);
}

Archive::~Archive() {
  if (zip_ != nullptr) zip_discard(zip_);
  zip_error_fini(&error_);
}

int64_t Archive::entries() const { return zip_ == nullptr ? 0 : zip_get_num_entries(zip_, 0); }

bool Archive::has(const std::string& name) const {
  return zip_ != nullptr && zip_name_locate(zip_, name.c_str(), 0) >= 0;
}

Result<std::string> Archive::read(const std::string& name) {
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
    if (unpacked_ > limits_.max_unpacked) {
      zip_fclose(f);
      return make_error(ErrorCode::kTooLarge,
                        "office.text: " + name + " unpacks past max_unpacked_bytes (" +
                            std::to_string(limits_.max_unpacked) +
                            " bytes for all parts): a zip bomb, or raise the limit");
    }
    if (unpacked_ > kRatioFloorBytes &&
        unpacked_ / std::max<uint64_t>(compressed_, 1) > limits_.max_ratio) {
      zip_fclose(f);
      return make_error(ErrorCode::kTooLarge,
                        "office.text: " + name + " unpacks to more than max_ratio (" +
                            std::to_string(limits_.max_ratio) +
                            ") times the file's size: a zip bomb, or raise the limit");
    }
    out.append(buf, static_cast<size_t>(n));
  }
  zip_fclose(f);
  return out;
}

std::string Archive::open_error() { return zip_error_strerror(&error_); }

Status walk_xml(const std::string& part, const std::string& xml,
                const std::function<void(const XmlEvent&)>& on) {
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

std::string attr_ns(xmlTextReader* r, const char* local, const char* ns) {
  xmlChar* v = xmlTextReaderGetAttributeNs(r, reinterpret_cast<const xmlChar*>(local),
                                           reinterpret_cast<const xmlChar*>(ns));
  if (v == nullptr) return {};
  std::string out(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return out;
}

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

Result<std::vector<std::string>> ordered_parts(Archive& zip, const std::string& list_part,
                                               const char* element, const std::string& rels,
                                               const std::string& base,
                                               std::vector<std::string>* names) {
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

}  // namespace docpipe::office
