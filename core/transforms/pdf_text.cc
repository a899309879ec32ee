// pdf.text: the text of a PDF's pages in reading order (poppler's C++ API, the engine behind
// pdftotext), pages separated by a form feed or `page_separator`, optionally a page range.
//
// - An encrypted PDF opens only with its `password`; without one it fails clearly.
// - poppler repairs what it can of a damaged file and reports the rest. `on_damage` says what
//   such a report means: "text" (the default) keeps the text poppler could read, "fail" fails
//   the document with poppler's first message. (poppler-cpp gives no category: warnings and
//   unimplemented features are reported as errors are, so failing on them is opt-in.)
// - poppler has a long record of crashes and runaway memory on hostile files, so pdf.text is an
//   isolated transform: each PDF is read in a sandboxed worker with a memory limit, killed on
//   cancel or timeout (isolated_worker.h). The worker reads one tiny PDF before its sandbox
//   closes, so that poppler's global tables are built while files can still be opened.
// - Pages are extracted one at a time; a page's text is freed before the next is read.
// - `ocr: "auto"` reads a page that has no text layer (a scan) with tesseract (ocr_engine.h): the
//   page is rendered in gray at `ocr_dpi` (lowered for a page that would exceed kMaxOcrPixels)
//   and its pixels freed once read. The worker then loads tesseract's models for `ocr_lang`
//   before its sandbox closes, and the document counts against the "ocr" concurrency group.

#include <leptonica/allheaders.h>
#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-global.h>
#include <poppler/cpp/poppler-page-renderer.h>
#include <poppler/cpp/poppler-page.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/transforms/isolated_worker.h"
#include "core/transforms/library_versions.h"
#include "core/transforms/ocr_engine.h"
#include "core/transforms/param_reader.h"
#include "core/transforms/whole_document.h"

namespace docpipe {
namespace {

constexpr int64_t kDefaultMaxPdfBytes = int64_t{256} << 20;
// A page rendered for OCR is at most this many pixels (one byte each, plus tesseract's own
// copies): A4 at 600 dpi is 35 million.
constexpr double kMaxOcrPixels = 40e6;
// A title or author longer than this is cut in the manifest.
constexpr size_t kMaxMetadataText = 1024;

struct PdfOptions {
  std::string page_separator = "\f";
  int64_t first_page = 1;
  int64_t last_page = 0;  // 0: the last page
  bool keep_damaged = true;
  std::string password;
  uint64_t max_input_bytes = 0;
  bool ocr = false;  // ocr "auto"
  std::string ocr_lang = "eng";
  int ocr_dpi = 300;
  WorkerLimits worker;
};

// poppler reports problems through one process-wide function. A worker reads one document at a
// time, so the messages of the current one are collected here (the first few).
struct Reports {
  std::vector<std::string> messages;
  size_t count = 0;
};
Reports* g_reports = nullptr;

void collect(const std::string& message, void*) {
  if (g_reports == nullptr) return;
  ++g_reports->count;
  if (g_reports->messages.size() < 3) g_reports->messages.push_back(message);
}

class ReportScope {
 public:
  explicit ReportScope(Reports& r) {
    g_reports = &r;
    poppler::set_debug_error_function(collect, nullptr);
  }
  ~ReportScope() { g_reports = nullptr; }
  ReportScope(const ReportScope&) = delete;
  ReportScope& operator=(const ReportScope&) = delete;
};

std::string utf8(const poppler::ustring& s) {
  poppler::byte_array bytes = s.to_utf8();
  return std::string(bytes.begin(), bytes.end());
}

class PdfTransform : public DocumentTransform {
 public:
  explicit PdfTransform(const PdfOptions& options)
      : options_(options), input_("pdf.text", options.max_input_bytes) {}

  Status update(std::string_view in, std::string&) override { return input_.add(in); }

  Status finish(std::string& out) override {
    const std::string& input = input_.data();
    if (input.size() > static_cast<size_t>(INT_MAX)) {
      return make_error(ErrorCode::kTooLarge, "pdf.text: document too large for poppler (2 GiB)");
    }
    Reports reports;
    ReportScope scope(reports);
    std::unique_ptr<poppler::document> doc(poppler::document::load_from_raw_data(
        input.data(), static_cast<int>(input.size()), options_.password, options_.password));
    if (doc == nullptr) {
      return make_error(ErrorCode::kCorruptInput,
                        "pdf.text: not a PDF that poppler can read" + first_report(reports));
    }
    if (doc->is_locked()) {
      return make_error(ErrorCode::kInvalidArgument,
                        options_.password.empty()
                            ? "pdf.text: the PDF is encrypted; give its password in the "
                              "transform's password parameter"
                            : "pdf.text: the password does not open this encrypted PDF");
    }
    const int pages = doc->pages();
    describe(*doc, pages);
    const int64_t first = options_.first_page;
    const int64_t last =
        options_.last_page == 0 ? pages : std::min<int64_t>(options_.last_page, pages);
    if (pages > 0 && first > pages) {
      return make_error(ErrorCode::kInvalidArgument,
                        "pdf.text: first_page " + std::to_string(first) +
                            " is past the last page of this PDF (" + std::to_string(pages) + ")");
    }
    for (int64_t i = first; i <= last; ++i) {
      std::unique_ptr<poppler::page> page(doc->create_page(static_cast<int>(i - 1)));
      if (i > first) out += options_.page_separator;
      if (page == nullptr) {
        collect("page " + std::to_string(i) + " cannot be read", nullptr);
        continue;
      }
      std::string text = utf8(page->text());
      // poppler ends each line with "\n" and each page with a form feed of its own: the page
      // separator stands for that one.
      if (!text.empty() && text.back() == '\f') text.pop_back();
      if (options_.ocr && blank(text)) {
        Result<std::string> read = read_scan(*page, i);
        if (!read) return read.error();
        text = std::move(read).value();
        while (!text.empty() && (text.back() == '\n' || text.back() == '\f')) text.pop_back();
        if (!text.empty()) text += '\n';
      }
      out += text;
    }
    if (!out.empty() && out.back() != '\n' && out.back() != '\f') out += '\n';
    if (reports.count > 0 && !options_.keep_damaged) {
      return make_error(ErrorCode::kCorruptInput,
                        "pdf.text: damaged PDF" + first_report(reports) + " (" +
                            std::to_string(reports.count) +
                            " problem(s) reported; on_damage \"text\" keeps what poppler can "
                            "read)");
    }
    return ok();
  }

  std::string metadata() const override { return metadata_; }

 private:
  // The manifest's metadata: the page count and, where the PDF gives them, its title and
  // author (each cut to kMaxMetadataText bytes at a character boundary).
  void describe(const poppler::document& doc, int pages) {
    nlohmann::json m{{"pages", pages}};
    for (const auto& [key, name] : {std::pair{"Title", "title"}, std::pair{"Author", "author"}}) {
      std::string value = utf8(doc.info_key(key));
      if (value.size() > kMaxMetadataText) {
        size_t cut = kMaxMetadataText;
        while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;
        value.resize(cut);
      }
      if (!value.empty()) m[name] = std::move(value);
    }
    metadata_ = m.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

  static bool blank(const std::string& text) {
    return std::all_of(text.begin(), text.end(),
                       [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; });
  }

  // The text tesseract reads in page `number` rendered in gray.
  Result<std::string> read_scan(const poppler::page& page, int64_t number) {
    const std::string what = "pdf.text: page " + std::to_string(number);
    const poppler::rectf box = page.page_rect();
    double dpi = options_.ocr_dpi;
    const double points = std::max(box.width(), 1.0) * std::max(box.height(), 1.0);
    const double pixels = points * dpi * dpi / (72.0 * 72.0);
    if (pixels > kMaxOcrPixels) dpi = std::floor(dpi * std::sqrt(kMaxOcrPixels / pixels));
    if (dpi < kMinOcrDpi) {
      return make_error(ErrorCode::kTooLarge,
                        what + " is " + std::to_string(std::lround(box.width())) + " x " +
                            std::to_string(std::lround(box.height())) +
                            " points, too large to render for OCR at 70 dpi within " +
                            std::to_string(static_cast<int64_t>(kMaxOcrPixels)) + " pixels");
    }
    poppler::page_renderer renderer;
    renderer.set_render_hints(poppler::page_renderer::antialiasing |
                              poppler::page_renderer::text_antialiasing);
    renderer.set_image_format(poppler::image::format_gray8);
    poppler::image image = renderer.render_page(&page, dpi, dpi);
    if (!image.is_valid() || image.width() <= 0 || image.height() <= 0) {
      return make_error(ErrorCode::kCorruptInput, what + ": poppler cannot render it for OCR");
    }
    Pix* pix = pixCreate(image.width(), image.height(), 8);
    if (pix == nullptr) transform_out_of_memory();
    for (int y = 0; y < image.height(); ++y) {
      const auto* row = reinterpret_cast<const unsigned char*>(image.const_data()) +
                        static_cast<size_t>(y) * image.bytes_per_row();
      l_uint32* line = pixGetData(pix) + static_cast<size_t>(y) * pixGetWpl(pix);
      for (int x = 0; x < image.width(); ++x) SET_DATA_BYTE(line, x, row[x]);
    }
    image = poppler::image();  // the page's pixels, once copied
    pixSetResolution(pix, static_cast<int>(dpi), static_cast<int>(dpi));
    Result<std::string> text = ocr_image(pix, static_cast<int>(dpi),
                                         static_cast<int>(kDefaultOcrPsm), options_.ocr_lang, what);
    pixDestroy(&pix);
    return text;
  }

  static std::string first_report(const Reports& r) {
    if (r.messages.empty()) return "";
    std::string m = r.messages.front();
    // poppler-cpp's own prefix: "error: " or "error (OFFSET): ", whatever the category.
    if (m.starts_with("error")) {
      const size_t colon = m.find(": ");
      if (colon != std::string::npos && colon < 32) m.erase(0, colon + 2);
    }
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    if (m.size() > 300) m.resize(300);
    return ": " + m;
  }

  const PdfOptions options_;
  WholeInput input_;  // poppler reads it in place until the document is closed
  std::string metadata_;
};

class PdfStep : public TransformStep {
 public:
  explicit PdfStep(PdfOptions options) : options_(std::move(options)) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext&) const override {
    return std::make_unique<PdfTransform>(options_);
  }

 private:
  PdfOptions options_;
};

const ParamSchema& schema() {
  static const ParamSchema s = [] {
    ParamSchema p;
    p.string("page_separator", "\f",
             "written between pages (default a form feed, as pdftotext writes)")
        .integer("first_page", 1, INT_MAX, 1, "the first page to read (1 is the first)")
        .integer("last_page", 0, INT_MAX, 0,
                 "the last page to read; 0 (the default) reads to the end")
        .string_choice("on_damage", {"fail", "text"}, "text",
                       "when poppler reports problems: keep the \"text\" it could read (the "
                       "default; poppler reports warnings and unimplemented features the same "
                       "way as damage), or \"fail\" the document with its first message")
        .optional_string("password", "the password of an encrypted PDF (owner or user)")
        .string_choice("ocr", {"off", "auto"}, "off",
                       "\"auto\" reads a page without a text layer (a scan) with tesseract; "
                       "\"off\" (the default) leaves such pages empty")
        .string("ocr_lang", "eng",
                "tesseract's models for ocr \"auto\", e.g. \"eng\" or \"eng+deu\" (the "
                "tesseract-ocr-LANG packages)")
        .integer("ocr_dpi", kMinOcrDpi, 1200, 300,
                 "the resolution a page is rendered at for ocr \"auto\" (default 300; lowered "
                 "for a page that would exceed 40 million pixels)");
    p.integer("max_input_bytes", 1, ParamSchema::kNoMax, kDefaultMaxPdfBytes,
              "largest PDF accepted (default 256 MiB); the whole file is held in memory, so a "
              "larger one fails instead");
    return add_worker_params(std::move(p));
  }();
  return s;
}

// A one-page PDF, read once before the sandbox closes: poppler builds its global tables (and
// looks for its data folders) on the first document.
constexpr const char kWarmUpPdf[] =
    "%PDF-1.4\n"
    "1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    "2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    "3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]/Contents 4 0 R"
    "/Resources<</Font<</F1 5 0 R>>>>>>endobj\n"
    "4 0 obj<</Length 36>>stream\nBT /F1 12 Tf 20 100 Td (warm) Tj ET\nendstream endobj\n"
    "5 0 obj<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>endobj\n"
    "trailer<</Root 1 0 R>>\n%%EOF\n";

std::string prepare(const std::string& ocr_lang) {
  Reports reports;
  ReportScope scope(reports);
  // Kept for the worker's life: poppler-cpp builds its global tables when the first document is
  // opened and frees them when the last one is closed, scanning its data folders again (an open()
  // the sandbox refuses) for the next.
  static std::unique_ptr<poppler::document> keep;
  keep.reset(poppler::document::load_from_raw_data(kWarmUpPdf, sizeof kWarmUpPdf - 1));
  if (keep == nullptr || keep->pages() != 1) return "poppler cannot read its warm-up PDF";
  std::unique_ptr<poppler::page> page(keep->create_page(0));
  if (page == nullptr) return "poppler cannot read its warm-up PDF's page";
  (void)page->text();
  if (ocr_lang.empty()) return "";
  // ocr "auto": tesseract's models, and one rendering, while files can still be opened.
  poppler::page_renderer renderer;
  renderer.set_image_format(poppler::image::format_gray8);
  if (!renderer.render_page(page.get(), 72, 72).is_valid()) {
    return "poppler cannot render its warm-up PDF's page";
  }
  return prepare_ocr(ocr_lang);
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "pdf.text",
    .description = "the text of a PDF's pages in reading order (poppler, in a sandboxed worker "
                   "process), pages separated by a form feed; encrypted PDFs need their password",
    .streaming = false,
    .params = schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      ParamReader reader(schema(), params, errors);
      PdfOptions options;
      options.page_separator = reader.string("page_separator");
      options.first_page = reader.integer("first_page");
      options.last_page = reader.integer("last_page");
      options.keep_damaged = reader.string("on_damage") == "text";
      options.password = reader.optional_string("password").value_or("");
      options.max_input_bytes = static_cast<uint64_t>(reader.integer("max_input_bytes"));
      options.ocr = reader.string("ocr") == "auto";
      options.ocr_lang = reader.string("ocr_lang");
      options.ocr_dpi = static_cast<int>(reader.integer("ocr_dpi"));
      options.worker = read_worker_limits(reader);
      // Only when used: a daemon without tesseract's models still reads text layers.
      if (const std::string why = options.ocr ? check_ocr_languages(options.ocr_lang) : "";
          !why.empty()) {
        reader.error("ocr_lang", why);
      }
      if (options.last_page != 0 && options.last_page < options.first_page) {
        reader.error("last_page", "is before first_page (" + std::to_string(options.first_page) +
                                      "); 0 reads to the end");
      }
      if (!reader.ok()) return nullptr;
      WorkerOptions worker_options;
      if (options.ocr) worker_options = {.variant = options.ocr_lang, .concurrency_group = "ocr"};
      return isolated_step("pdf.text", params, options.worker, std::make_shared<PdfStep>(options),
                           worker_options);
    },
    .isolated = true,
    .prepare_worker = prepare,
    .library_version =
        [] { return poppler_library_version() + ", " + tesseract_library_version(); }});

}  // namespace
}  // namespace docpipe
