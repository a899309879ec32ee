// ocr: the text of a scanned page or photo (PNG, JPEG, TIFF including multi-page TIFF) read by
// tesseract's LSTM models, pages separated by a form feed or `page_separator`.
//
// - Images are decoded by leptonica. Each page's size is read from its header first, and a page
//   of more than `max_pixels` is refused before a pixel is decoded (a 50,000 x 50,000 PNG header
//   over a few bytes of data would otherwise ask for gigabytes).
// - Tesseract and the image libraries run in an isolated worker (isolated_worker.h): memory
//   limit, killed on cancel or timeout. Workers are kept apart by language (the variant): a
//   worker loads its models once, before its sandbox closes, and reads page after page with them.
// - OCR is CPU-heavy: documents count against the "ocr" concurrency group (the daemon config's
//   `ocr_concurrency`), on top of the transformer threads.

#include <leptonica/allheaders.h>

#include <climits>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/transforms/isolated_worker.h"
#include "core/transforms/ocr_engine.h"
#include "core/transforms/param_reader.h"
#include "core/transforms/whole_document.h"

namespace docpipe {
namespace {

constexpr int64_t kDefaultMaxPixels = 40'000'000;  // A4 at 600 dpi is 35 megapixels

struct OcrOptions {
  std::string lang = "eng";
  int psm = static_cast<int>(kDefaultOcrPsm);
  int dpi = 0;  // 0: the image's own
  int64_t max_pixels = kDefaultMaxPixels;
  std::string page_separator = "\f";
  int64_t first_page = 1;
  int64_t last_page = 0;  // 0: the last page
  uint64_t max_input_bytes = 0;
  WorkerLimits worker;
};

struct PixDeleter {
  void operator()(Pix* p) const { pixDestroy(&p); }
};
using PixPtr = std::unique_ptr<Pix, PixDeleter>;

const char* format_name(int format) {
  if (format == IFF_PNG) return "PNG";
  if (format == IFF_JFIF_JPEG) return "JPEG";
  if (L_FORMAT_IS_TIFF(format)) return "TIFF";
  return nullptr;
}

// Pages in a TIFF (1 for the other formats).
int tiff_pages(const std::string& data) {
  FILE* f = ::fmemopen(const_cast<char*>(data.data()), data.size(), "r");
  if (f == nullptr) return 0;
  l_int32 n = 0;
  if (tiffGetCount(f, &n) != 0) n = 0;
  std::fclose(f);
  return n;
}

class OcrTransform : public DocumentTransform {
 public:
  explicit OcrTransform(const OcrOptions& options)
      : options_(options), input_("ocr", options.max_input_bytes) {}

  Status update(std::string_view in, std::string&) override { return input_.add(in); }

  Status finish(std::string& out) override {
    const std::string& data = input_.data();
    const auto* bytes = reinterpret_cast<const l_uint8*>(data.data());
    l_int32 format = IFF_UNKNOWN;
    if (data.size() < 12 || findFileFormatBuffer(bytes, &format) != 0 ||
        format_name(format) == nullptr) {
      return make_error(ErrorCode::kCorruptInput,
                        "ocr: not a PNG, JPEG or TIFF image (the first bytes are none of theirs)");
    }
    const bool tiff = L_FORMAT_IS_TIFF(format);
    const int pages = tiff ? tiff_pages(data) : 1;
    if (pages <= 0) {
      return make_error(ErrorCode::kCorruptInput, "ocr: the TIFF's page directory cannot be read");
    }
    const int64_t first = options_.first_page;
    const int64_t last =
        options_.last_page == 0 ? pages : std::min<int64_t>(options_.last_page, pages);
    if (first > pages) {
      return make_error(ErrorCode::kInvalidArgument, "ocr: first_page " + std::to_string(first) +
                                                         " is past the last page of this image (" +
                                                         std::to_string(pages) + ")");
    }
    for (int64_t i = first; i <= last; ++i) {
      if (i > first) out += options_.page_separator;
      Result<std::string> text = read_page(data, format, tiff, static_cast<int>(i), pages);
      if (!text) return text.error();
      out += *text;
    }
    if (!out.empty() && out.back() != '\n' && out.back() != '\f') out += '\n';
    return ok();
  }

 private:
  Result<std::string> read_page(const std::string& data, int format, bool tiff, int page,
                                int pages) {
    const auto* bytes = reinterpret_cast<const l_uint8*>(data.data());
    const std::string what =
        pages > 1 ? "ocr: page " + std::to_string(page) : std::string("ocr: the image");
    l_int32 w = 0, h = 0, bps = 0, spp = 0, res = 0, cmap = 0, fmt = 0;
    const l_ok header =
        tiff
            ? readHeaderMemTiff(bytes, data.size(), page - 1, &w, &h, &bps, &spp, &res, &cmap, &fmt)
            : pixReadHeaderMem(bytes, data.size(), &fmt, &w, &h, &bps, &spp, &cmap);
    if (header != 0 || w <= 0 || h <= 0) {
      return make_error(ErrorCode::kCorruptInput,
                        what + ": the " + format_name(format) + " header cannot be read");
    }
    const int64_t pixels = int64_t{w} * h;
    if (pixels > options_.max_pixels) {
      return make_error(ErrorCode::kTooLarge,
                        what + " is " + std::to_string(w) + " x " + std::to_string(h) +
                            " pixels, more than max_pixels (" +
                            std::to_string(options_.max_pixels) +
                            "); raise max_pixels (and worker_memory_bytes) to read it");
    }
    PixPtr pix(tiff ? pixReadMemTiff(bytes, data.size(), page - 1)
                    : pixReadMem(bytes, data.size()));
    if (pix == nullptr) {
      return make_error(ErrorCode::kCorruptInput,
                        what + ": the " + format_name(format) + " data cannot be decoded");
    }
    if (pixGetWidth(pix.get()) != w || pixGetHeight(pix.get()) != h) {
      return make_error(ErrorCode::kCorruptInput,
                        what + ": the decoded size differs from the header's");
    }
    int dpi = options_.dpi;
    if (dpi == 0) {
      const int own = pixGetXRes(pix.get());
      dpi = own >= kMinOcrDpi && own <= kMaxOcrDpi ? own : kFallbackOcrDpi;
    }
    return ocr_image(pix.get(), dpi, options_.psm, options_.lang, what);
  }

  const OcrOptions options_;
  WholeInput input_;
};

class OcrStep : public TransformStep {
 public:
  explicit OcrStep(OcrOptions options) : options_(std::move(options)) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext&) const override {
    return std::make_unique<OcrTransform>(options_);
  }

 private:
  OcrOptions options_;
};

const ParamSchema& schema() {
  static const ParamSchema s = [] {
    ParamSchema p;
    p.string("lang", "eng",
             "tesseract's models to read with, e.g. \"eng\" or \"eng+deu\" (installed by the "
             "tesseract-ocr-LANG packages)")
        .integer("psm", 3, 13, kDefaultOcrPsm,
                 "tesseract's page segmentation mode: 3 automatic (the default), 4 one column, "
                 "6 one block, 7 one line, 8 one word, 11 sparse text, 13 raw line (0, 1, 2 and "
                 "12 need orientation detection and are not offered)")
        .integer("dpi", 0, kMaxOcrDpi, 0,
                 "the scan's resolution; 0 (the default) uses the image's own, or 300 if it "
                 "records none; otherwise 70 to 2400")
        .integer("max_pixels", 1, INT64_C(1) << 32, kDefaultMaxPixels,
                 "largest page accepted, in pixels (default 40,000,000, an A4 page at 600 dpi); "
                 "a larger one is refused from its header, before it is decoded")
        .string("page_separator", "\f",
                "written between the pages of a multi-page TIFF (default a form feed)")
        .integer("first_page", 1, INT_MAX, 1, "the first page of a multi-page TIFF to read")
        .integer("last_page", 0, INT_MAX, 0,
                 "the last page of a multi-page TIFF to read; 0 (the default) reads to the end");
    p.integer("max_input_bytes", 1, ParamSchema::kNoMax, kDefaultMaxInputBytes,
              "largest image file accepted (default 64 MiB); the whole file is held in memory, "
              "so a larger one fails instead");
    return add_worker_params(std::move(p));
  }();
  return s;
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "ocr",
    .description = "the text of scanned pages and photos (PNG, JPEG, TIFF, multi-page TIFF) read "
                   "by tesseract, in a sandboxed worker process that loads its models once",
    .streaming = false,
    .params = schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      ParamReader reader(schema(), params, errors);
      OcrOptions options;
      options.lang = reader.string("lang");
      options.psm = static_cast<int>(reader.integer("psm"));
      options.dpi = static_cast<int>(reader.integer("dpi"));
      options.max_pixels = reader.integer("max_pixels");
      options.page_separator = reader.string("page_separator");
      options.first_page = reader.integer("first_page");
      options.last_page = reader.integer("last_page");
      options.max_input_bytes = static_cast<uint64_t>(reader.integer("max_input_bytes"));
      options.worker = read_worker_limits(reader);
      if (!reader.ok()) return nullptr;
      if (const std::string why = check_ocr_languages(options.lang); !why.empty()) {
        reader.error("lang", why);
      }
      if (!ocr_psm_allowed(options.psm)) {
        reader.error("psm", std::to_string(options.psm) +
                                " needs orientation detection, which ocr does not offer; use 3 "
                                "to 11 or 13");
      }
      if (options.dpi != 0 && options.dpi < kMinOcrDpi) {
        reader.error("dpi", "is below 70; give 0 for the image's own resolution");
      }
      if (options.last_page != 0 && options.last_page < options.first_page) {
        reader.error("last_page", "is before first_page (" + std::to_string(options.first_page) +
                                      "); 0 reads to the end");
      }
      if (!reader.ok()) return nullptr;
      return isolated_step("ocr", params, options.worker, std::make_shared<OcrStep>(options),
                           WorkerOptions{.variant = options.lang, .concurrency_group = "ocr"});
    },
    .isolated = true,
    .prepare_worker = prepare_ocr});

}  // namespace
}  // namespace docpipe
