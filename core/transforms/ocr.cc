// ocr: the text of a scanned page or photo (PNG, JPEG, TIFF including multi-page TIFF) read by
// tesseract's LSTM models, pages separated by a form feed or `page_separator`.
//
// - Images are decoded by leptonica. Every page's size (in the page range) is read from its header
//   first, a TIFF's directories walked once with libtiff, and a page of more than `max_pixels` is
//   refused before a pixel of any page is decoded (a 50,000 x 50,000 PNG header
//   over a few bytes of data would otherwise ask for gigabytes).
// - Tesseract and the image libraries run in an isolated worker (isolated_worker.h): memory
//   limit, killed on cancel or timeout. Workers are kept apart by language (the variant): a
//   worker loads its models once, before its sandbox closes, and reads page after page with them.
// - OCR is CPU-heavy: documents count against the "ocr" concurrency group (the daemon config's
//   `ocr_concurrency`), on top of the transformer threads.

#include <leptonica/allheaders.h>
#include <tiffio.h>

#include <climits>
#include <cstdio>
#include <cstring>
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

// A page's size as its header says, and where its directory is (TIFF only; 0 for the others).
struct PageHeader {
  int64_t width = 0;
  int64_t height = 0;
  uint64_t directory = 0;
};

// libtiff reading from the document in memory.
struct MemoryFile {
  const std::string* data;
  uint64_t pos = 0;
};
tmsize_t memory_read(thandle_t h, void* buf, tmsize_t n) {
  auto* f = static_cast<MemoryFile*>(h);
  if (n < 0 || f->pos >= f->data->size()) return 0;
  const size_t take = std::min<size_t>(static_cast<size_t>(n), f->data->size() - f->pos);
  std::memcpy(buf, f->data->data() + f->pos, take);
  f->pos += take;
  return static_cast<tmsize_t>(take);
}
tmsize_t memory_write(thandle_t, void*, tmsize_t) { return -1; }
toff_t memory_seek(thandle_t h, toff_t off, int whence) {
  auto* f = static_cast<MemoryFile*>(h);
  const uint64_t base = whence == SEEK_CUR ? f->pos : whence == SEEK_END ? f->data->size() : 0;
  if (off > UINT64_MAX - base) return static_cast<toff_t>(-1);
  f->pos = base + off;
  return f->pos;
}
int memory_close(thandle_t) { return 0; }
toff_t memory_size(thandle_t h) { return static_cast<MemoryFile*>(h)->data->size(); }
int memory_map(thandle_t, void**, toff_t*) { return 0; }
void memory_unmap(thandle_t, void*, toff_t) {}

// Every page of a TIFF, walking its chain of directories once (reading page N by its index
// walks the chain from the start each time: quadratic in a TIFF of many tiny pages). Empty if
// libtiff cannot read the first directory.
std::vector<PageHeader> tiff_pages(const std::string& data) {
  MemoryFile file{&data};
  std::vector<PageHeader> pages;
  TIFF* tif = TIFFClientOpen("ocr", "rm", &file, memory_read, memory_write, memory_seek,
                             memory_close, memory_size, memory_map, memory_unmap);
  if (tif == nullptr) return pages;
  do {
    uint32_t w = 0, h = 0;
    TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w);
    TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h);
    pages.push_back({w, h, TIFFCurrentDirOffset(tif)});
  } while (TIFFReadDirectory(tif) == 1);
  TIFFClose(tif);
  return pages;
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
    std::vector<PageHeader> headers;
    if (tiff) {
      headers = tiff_pages(data);
      if (headers.empty()) {
        return make_error(ErrorCode::kCorruptInput,
                          "ocr: the TIFF's page directory cannot be read");
      }
    } else {
      l_int32 w = 0, h = 0, bps = 0, spp = 0, cmap = 0, fmt = 0;
      if (pixReadHeaderMem(bytes, data.size(), &fmt, &w, &h, &bps, &spp, &cmap) != 0) w = h = 0;
      headers.push_back({w, h, 0});
    }
    const int64_t pages = static_cast<int64_t>(headers.size());
    const int64_t first = options_.first_page;
    const int64_t last =
        options_.last_page == 0 ? pages : std::min<int64_t>(options_.last_page, pages);
    if (first > pages) {
      return make_error(ErrorCode::kInvalidArgument, "ocr: first_page " + std::to_string(first) +
                                                         " is past the last page of this image (" +
                                                         std::to_string(pages) + ")");
    }
    auto what = [&](int64_t i) {
      return pages > 1 ? "ocr: page " + std::to_string(i) : std::string("ocr: the image");
    };
    // Every page's size first: a bomb on page 900 is refused before 899 pages are read.
    for (int64_t i = first; i <= last; ++i) {
      Status st = check_size(format, headers[i - 1], what(i));
      if (!st) return st;
    }
    for (int64_t i = first; i <= last; ++i) {
      if (i > first) out += options_.page_separator;
      Result<std::string> text = read_page(data, format, headers[i - 1], what(i));
      if (!text) return text.error();
      out += *text;
    }
    if (!out.empty() && out.back() != '\n' && out.back() != '\f') out += '\n';
    return ok();
  }

 private:
  // The page's size as its header gives it, against max_pixels.
  Status check_size(int format, const PageHeader& page, const std::string& what) const {
    const int64_t w = page.width, h = page.height;
    if (w <= 0 || h <= 0) {
      return make_error(ErrorCode::kCorruptInput,
                        what + ": the " + format_name(format) + " header cannot be read");
    }
    const int64_t pixels = w * h;
    if (pixels > options_.max_pixels) {
      return make_error(ErrorCode::kTooLarge,
                        what + " is " + std::to_string(w) + " x " + std::to_string(h) +
                            " pixels, more than max_pixels (" +
                            std::to_string(options_.max_pixels) +
                            "); raise max_pixels (and worker_memory_bytes) to read it");
    }
    return ok();
  }

  // Decodes the page (its size checked) and reads it.
  Result<std::string> read_page(const std::string& data, int format, const PageHeader& page,
                                const std::string& what) {
    const auto* bytes = reinterpret_cast<const l_uint8*>(data.data());
    const int64_t w = page.width, h = page.height;
    size_t directory = page.directory;  // leptonica reads the page whose directory is there
    PixPtr pix(L_FORMAT_IS_TIFF(format)
                   ? pixReadMemFromMultipageTiff(bytes, data.size(), &directory)
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
    .prepare_worker =
        [](const std::string& lang) {
          // libtiff reports every damaged TIFF on stderr (the daemon's log); the document's
          // error says what matters.
          TIFFSetErrorHandler(nullptr);
          TIFFSetWarningHandler(nullptr);
          return prepare_ocr(lang);
        },
    .library_version = tesseract_library_version});

}  // namespace
}  // namespace docpipe
