// auto.text: text out of whatever a document is, so that one job over a mixed folder sends each
// file to the right extractor. The first bytes (up to 64 KiB) are identified by libmagic, as
// `file --mime-type` does, and the document goes on to:
//
//   application/pdf                        -> pdf.text (ocr "auto": scanned pages are read)
//   Office and OpenDocument types, zip     -> office.text (which says so if a zip is not one)
//   text/html, application/xhtml+xml       -> html.text
//   image/png, image/jpeg, image/tiff      -> ocr
//   any other text/*, JSON, XML            -> unchanged
//   anything else                          -> fails, naming the type
//
// The extractors run as they would on their own (in their sandboxed workers), with their
// default parameters; `ocr` "off" reads no scans (images then fail, PDFs keep text layers only)
// and `ocr_lang` picks tesseract's models. libmagic itself runs in the daemon, on at most 64 KiB,
// with its decompression, CDF, ELF and tar tests off (MAGIC_NO_CHECK_*): what is left is its table
// of byte patterns.

#include <magic.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "core/transforms/library_versions.h"
#include "core/transforms/param_reader.h"

namespace docpipe {
namespace {

constexpr size_t kHeadBytes = 64u << 10;

// One libmagic handle for the process, loaded once; magic_t is not thread-safe, so calls are
// serialised (a detection is a few microseconds of pattern tests on 64 KiB at most).
class Magic {
 public:
  static Magic& instance() {
    static Magic m;
    return m;
  }
  Result<std::string> mime_type(std::string_view head) {
    std::lock_guard<std::mutex> lock(mu_);
    if (cookie_ == nullptr) return make_error(ErrorCode::kInternal, "auto.text: " + error_);
    const char* type = magic_buffer(cookie_, head.data(), head.size());
    if (type == nullptr) {
      const char* e = magic_error(cookie_);
      return make_error(ErrorCode::kInternal,
                        std::string("auto.text: libmagic: ") + (e != nullptr ? e : "failed"));
    }
    return std::string(type);
  }
  bool ok(std::string* why) const {
    if (cookie_ != nullptr) return true;
    *why = error_;
    return false;
  }

 private:
  Magic() {
    cookie_ =
        magic_open(MAGIC_MIME_TYPE | MAGIC_NO_CHECK_COMPRESS | MAGIC_NO_CHECK_TAR |
                   MAGIC_NO_CHECK_ELF | MAGIC_NO_CHECK_CDF | MAGIC_NO_CHECK_APPTYPE | MAGIC_ERROR);
    if (cookie_ == nullptr) {
      error_ = "libmagic cannot start";
      return;
    }
    if (magic_load(cookie_, nullptr) != 0) {
      const char* e = magic_error(cookie_);
      error_ = std::string("libmagic cannot load its database: ") + (e != nullptr ? e : "?") +
               " (is libmagic-mgc installed?)";
      magic_close(cookie_);
      cookie_ = nullptr;
    }
  }
  std::mutex mu_;
  magic_t cookie_ = nullptr;
  std::string error_;
};

struct Extractors {
  std::shared_ptr<const TransformStep> pdf, office, html;
  std::shared_ptr<const TransformStep> image;  // null with ocr "off"
};

bool is_image(const std::string& type) {
  return type == "image/png" || type == "image/jpeg" || type == "image/tiff";
}

bool is_office(const std::string& type) {
  return type == "application/zip" ||
         type.starts_with("application/vnd.openxmlformats-officedocument.") ||
         type.starts_with("application/vnd.oasis.opendocument.") ||
         type == "application/vnd.ms-excel.sheet.macroEnabled.12" ||
         type == "application/vnd.ms-word.document.macroEnabled.12" ||
         type == "application/vnd.ms-powerpoint.presentation.macroEnabled.12";
}

bool is_text(const std::string& type) {
  return type.starts_with("text/") || type == "application/json" || type == "application/xml" ||
         type == "application/x-empty" || type == "inode/x-empty";
}

class AutoTransform : public DocumentTransform {
 public:
  AutoTransform(const Extractors& extractors, const DocumentContext& doc)
      : extractors_(extractors), path_(doc.relative_path), name_(doc.name), doc_(doc) {
    doc_.relative_path = path_;
    doc_.name = name_;
  }

  Status update(std::string_view in, std::string& out) override {
    if (decided_) return next_ ? next_->update(in, out) : pass(in, out);
    head_.append(in);
    if (head_.size() < kHeadBytes) return ok();
    return decide(out, /*finishing=*/false);
  }

  Status finish(std::string& out) override {
    if (!decided_) return decide(out, /*finishing=*/true);
    if (next_) return next_->finish(out);
    return ok();
  }

  bool has_more() const override { return next_ != nullptr && next_->has_more(); }
  std::string metadata() const override { return next_ != nullptr ? next_->metadata() : ""; }

 private:
  static Status pass(std::string_view in, std::string& out) {
    out.append(in);
    return ok();
  }

  // Picks the extractor from the head and hands it what was held.
  Status decide(std::string& out, bool finishing) {
    decided_ = true;
    Result<std::string> type = Magic::instance().mime_type(head_);
    if (!type) return type.error();
    std::shared_ptr<const TransformStep> step;
    if (*type == "application/pdf") {
      step = extractors_.pdf;
    } else if (is_office(*type)) {
      step = extractors_.office;
    } else if (*type == "text/html" || *type == "application/xhtml+xml") {
      step = extractors_.html;
    } else if (is_image(*type) && extractors_.image != nullptr) {
      step = extractors_.image;
    } else if (!is_text(*type)) {
      std::string why;
      if (is_image(*type)) {
        why = " (this job's auto.text has ocr \"off\")";
      } else if (type->starts_with("image/")) {
        why = " (ocr reads PNG, JPEG and TIFF)";
      }
      return make_error(ErrorCode::kInvalidArgument, "auto.text: no extractor for " + *type + why);
    }
    std::string head;
    head.swap(head_);
    if (step == nullptr) {  // text: unchanged
      out.append(head);
      return ok();
    }
    next_ = step->begin(doc_);
    // What was held goes on as one update; the extractor's has_more() is the caller's to drain.
    Status st = next_->update(head, out);
    if (!st || !finishing) return st;
    // finish() came before the extractor started: its update is drained first.
    while (next_->has_more()) {
      st = next_->update({}, out);
      if (!st) return st;
    }
    return next_->finish(out);
  }

  const Extractors& extractors_;
  std::string path_, name_;
  DocumentContext doc_;
  std::string head_;
  bool decided_ = false;
  std::unique_ptr<DocumentTransform> next_;
};

class AutoStep : public TransformStep {
 public:
  explicit AutoStep(Extractors extractors) : extractors_(std::move(extractors)) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext& doc) const override {
    return std::make_unique<AutoTransform>(extractors_, doc);
  }

 private:
  Extractors extractors_;
};

std::shared_ptr<const TransformStep> extractor(const char* op, const nlohmann::json& params,
                                               const TransformEnv& env, FieldErrors& errors) {
  const TransformInfo* info = TransformRegistry::instance().find(op);
  if (info == nullptr) {
    errors.push_back({"op", std::string("auto.text needs ") + op + ", which is not built in"});
    return nullptr;
  }
  FieldErrors mine;
  std::shared_ptr<const TransformStep> step = info->configure(params, env, mine);
  // The extractors' parameters are auto.text's own: their errors name them as such.
  for (FieldError& e : mine) {
    if (e.path == "lang") e.path = "ocr_lang";
    const bool said = std::any_of(errors.begin(), errors.end(), [&](const FieldError& o) {
      return o.path == e.path && o.reason == e.reason;
    });
    if (!said) errors.push_back(std::move(e));
  }
  return step;
}

const ParamSchema& schema() {
  static const ParamSchema s = [] {
    ParamSchema p;
    p.string_choice("ocr", {"off", "auto"}, "auto",
                    "\"auto\" (the default) reads images and the scanned pages of PDFs with "
                    "tesseract; \"off\" fails images and leaves scanned pages empty")
        .string("ocr_lang", "eng",
                "tesseract's models, e.g. \"eng\" or \"eng+deu\" (the tesseract-ocr-LANG "
                "packages)");
    return p;
  }();
  return s;
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "auto.text",
    .description = "text out of PDF, Office, OpenDocument, HTML, image and plain text files: "
                   "the type is read from the first bytes (libmagic) and the document goes to "
                   "pdf.text, office.text, html.text or ocr, or on unchanged if it is text",
    .streaming = false,
    .params = schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv& env,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      ParamReader reader(schema(), params, errors);
      const bool ocr = reader.string("ocr") == "auto";
      const std::string lang = reader.string("ocr_lang");
      std::string why;
      if (!Magic::instance().ok(&why)) reader.error("op", "auto.text: " + why);
      if (!reader.ok()) return nullptr;
      nlohmann::json pdf_params = nlohmann::json::object();
      if (ocr) pdf_params = {{"ocr", "auto"}, {"ocr_lang", lang}};
      Extractors x{extractor("pdf.text", pdf_params, env, errors),
                   extractor("office.text", nlohmann::json::object(), env, errors),
                   extractor("html.text", nlohmann::json::object(), env, errors), nullptr};
      if (ocr) x.image = extractor("ocr", {{"lang", lang}}, env, errors);
      if (!reader.ok() || !x.pdf || !x.office || !x.html || (ocr && !x.image)) return nullptr;
      return std::make_shared<AutoStep>(std::move(x));
    },
    .library_version =
        [] {
          return libmagic_library_version() + ", " + poppler_library_version() + ", " +
                 tesseract_library_version() + ", " + libxml2_library_version();
        }});

}  // namespace
}  // namespace docpipe
