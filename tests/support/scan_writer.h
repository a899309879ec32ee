#pragma once
// "Scanned" pages written by the tests themselves: lines of text typeset as a PDF
// (pdf_writer.h), rendered to gray pixels by poppler at a given resolution, then encoded as PNG,
// JPEG or (multi-page) TIFF by leptonica, or wrapped as an image-only PDF page. The content is
// known, so OCR output can be checked against it.

#include <leptonica/allheaders.h>
#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-page-renderer.h>
#include <poppler/cpp/poppler-page.h>
#include <zlib.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/support/pdf_writer.h"

namespace docpipe::test {

// A rendered page: 8-bit gray, one byte per pixel, rows packed.
struct GrayPage {
  int width = 0;
  int height = 0;
  int dpi = 0;
  std::string pixels;
};

// The first page of `pdf` rendered at `dpi` in gray, anti-aliased as a scanner's output is.
inline GrayPage render_gray(const std::string& pdf, int dpi) {
  std::unique_ptr<poppler::document> doc(
      poppler::document::load_from_raw_data(pdf.data(), static_cast<int>(pdf.size())));
  if (doc == nullptr) throw std::runtime_error("render_gray: poppler cannot read the PDF");
  std::unique_ptr<poppler::page> page(doc->create_page(0));
  poppler::page_renderer renderer;
  renderer.set_render_hints(poppler::page_renderer::antialiasing |
                            poppler::page_renderer::text_antialiasing);
  renderer.set_image_format(poppler::image::format_gray8);
  poppler::image img = renderer.render_page(page.get(), dpi, dpi);
  if (!img.is_valid()) throw std::runtime_error("render_gray: poppler cannot render the page");
  GrayPage g{img.width(), img.height(), dpi, {}};
  g.pixels.reserve(static_cast<size_t>(g.width) * g.height);
  for (int y = 0; y < g.height; ++y) {
    g.pixels.append(img.const_data() + static_cast<size_t>(y) * img.bytes_per_row(),
                    static_cast<size_t>(g.width));
  }
  return g;
}

// One page of `lines` (Helvetica 12 pt on US Letter), rendered at `dpi`.
inline GrayPage scan_lines(const std::vector<std::string>& lines, int dpi = 200) {
  return render_gray(make_pdf({lines}), dpi);
}

struct PixFree {
  void operator()(Pix* p) const { pixDestroy(&p); }
};
using OwnedPix = std::unique_ptr<Pix, PixFree>;

inline OwnedPix to_pix(const GrayPage& g) {
  OwnedPix pix(pixCreate(g.width, g.height, 8));
  for (int y = 0; y < g.height; ++y) {
    l_uint32* line = pixGetData(pix.get()) + static_cast<size_t>(y) * pixGetWpl(pix.get());
    for (int x = 0; x < g.width; ++x) {
      SET_DATA_BYTE(line, x, static_cast<unsigned char>(g.pixels[size_t(y) * g.width + x]));
    }
  }
  pixSetResolution(pix.get(), g.dpi, g.dpi);
  return pix;
}

inline std::string take_lept_bytes(l_uint8* data, size_t size) {
  std::string out(reinterpret_cast<const char*>(data), size);
  lept_free(data);
  return out;
}

inline std::string encode_png(const GrayPage& g) {
  l_uint8* data = nullptr;
  size_t size = 0;
  if (pixWriteMemPng(&data, &size, to_pix(g).get(), 0.0f) != 0) {
    throw std::runtime_error("encode_png failed");
  }
  return take_lept_bytes(data, size);
}

inline std::string encode_jpeg(const GrayPage& g, int quality = 90) {
  l_uint8* data = nullptr;
  size_t size = 0;
  if (pixWriteMemJpeg(&data, &size, to_pix(g).get(), quality, 0) != 0) {
    throw std::runtime_error("encode_jpeg failed");
  }
  return take_lept_bytes(data, size);
}

// A multi-page TIFF (LZW compressed), one page per element.
inline std::string encode_tiff(const std::vector<GrayPage>& pages) {
  Pixa* pixa = pixaCreate(static_cast<l_int32>(pages.size()));
  for (const GrayPage& g : pages) pixaAddPix(pixa, to_pix(g).release(), L_INSERT);
  l_uint8* data = nullptr;
  size_t size = 0;
  const l_ok rc = pixaWriteMemMultipageTiff(&data, &size, pixa);
  pixaDestroy(&pixa);
  if (rc != 0) throw std::runtime_error("encode_tiff failed");
  return take_lept_bytes(data, size);
}

// The first 33 bytes of a PNG that says it is `width` x `height` 8-bit gray: a signature and an
// IHDR chunk with a correct CRC, then `tail` (e.g. a few bytes of IDAT). No real pixels follow.
inline std::string png_header_only(uint32_t width, uint32_t height, const std::string& tail = {}) {
  auto be32 = [](uint32_t v) {
    return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  };
  std::string ihdr = "IHDR" + be32(width) + be32(height) + std::string("\x08\x00\x00\x00\x00", 5);
  const uLong crc = crc32(0, reinterpret_cast<const Bytef*>(ihdr.data()), ihdr.size());
  return std::string("\x89PNG\r\n\x1a\n", 8) + be32(13) + ihdr + be32(static_cast<uint32_t>(crc)) +
         tail;
}

// A little-endian TIFF of `pages` 1 x 1 gray pages written by hand, the last one saying it is
// `last_width` x `last_height` (its pixels are not there): many directories, cheaply.
inline std::string many_page_tiff(uint32_t pages, uint32_t last_width, uint32_t last_height) {
  auto le16 = [](uint16_t v) { return std::string{char(v), char(v >> 8)}; };
  auto le32 = [](uint32_t v) {
    return std::string{char(v), char(v >> 8), char(v >> 16), char(v >> 24)};
  };
  constexpr uint32_t kEntries = 8;
  constexpr uint32_t kIfdBytes = 2 + kEntries * 12 + 4;
  std::string out = "II*" + std::string(1, '\0') + le32(8);
  for (uint32_t p = 0; p < pages; ++p) {
    const uint32_t at = 8 + p * (kIfdBytes + 2);  // each directory, then 2 bytes of pixel data
    const bool last = p + 1 == pages;
    const uint32_t w = last ? last_width : 1, h = last ? last_height : 1;
    auto entry = [&](uint16_t tag, uint16_t type, uint32_t value) {
      return le16(tag) + le16(type) + le32(1) +
             (type == 3 ? le16(uint16_t(value)) + le16(0) : le32(value));
    };
    out += le16(kEntries) + entry(256, 4, w) + entry(257, 4, h) + entry(258, 3, 8) +
           entry(259, 3, 1) + entry(262, 3, 1) + entry(273, 4, at + kIfdBytes) + entry(278, 4, h) +
           entry(279, 4, 1) + le32(last ? 0 : at + kIfdBytes + 2);
    out += std::string("\x80\0", 2);
  }
  return out;
}

// A PDF whose pages are each one gray image filling the page and no text at all: what a scanner
// writes. `text_pages` adds ordinary text pages after them (lines each).
inline std::string make_scanned_pdf(const std::vector<GrayPage>& scans,
                                    const std::vector<std::vector<std::string>>& text_pages = {}) {
  // 1 catalog, 2 pages, 3 font, then per scan: page, content, image; per text page: page,
  // content.
  std::vector<std::string> objects(3);
  std::string kids;
  size_t count = 0;
  for (const GrayPage& g : scans) {
    const size_t page_obj = objects.size() + 1;
    kids += std::to_string(page_obj) + " 0 R ";
    ++count;
    const double w = g.width * 72.0 / g.dpi, h = g.height * 72.0 / g.dpi;
    const std::string content =
        std::to_string(w) + " 0 0 " + std::to_string(h) + " 0 0 cm /Im1 Do\n";
    uLongf packed_size = compressBound(g.pixels.size());
    std::string packed(packed_size, '\0');
    compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size,
              reinterpret_cast<const Bytef*>(g.pixels.data()), g.pixels.size(), 6);
    packed.resize(packed_size);
    objects.push_back("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 " + std::to_string(w) + " " +
                      std::to_string(h) + "] /Contents " + std::to_string(page_obj + 1) +
                      " 0 R /Resources << /XObject << /Im1 " + std::to_string(page_obj + 2) +
                      " 0 R >> >> >>");
    objects.push_back("<< /Length " + std::to_string(content.size()) + " >>\nstream\n" + content +
                      "endstream");
    objects.push_back("<< /Type /XObject /Subtype /Image /Width " + std::to_string(g.width) +
                      " /Height " + std::to_string(g.height) +
                      " /ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode /Length " +
                      std::to_string(packed.size()) + " >>\nstream\n" + packed + "\nendstream");
  }
  for (const auto& lines : text_pages) {
    add_text_page(objects, kids, lines);
    ++count;
  }
  objects[0] = "<< /Type /Catalog /Pages 2 0 R >>";
  objects[1] = "<< /Type /Pages /Kids [" + kids + "] /Count " + std::to_string(count) + " >>";
  objects[2] = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>";
  return pdf_from_objects(objects);
}

// Words of the OCR output that are also words of the known text, over the known text's words:
// 1.0 is a perfect read. Case and punctuation are ignored.
inline double word_recall(const std::string& known, const std::string& read) {
  auto words = [](const std::string& s) {
    std::vector<std::string> out;
    std::string w;
    for (char c : s) {
      if (std::isalnum(static_cast<unsigned char>(c))) {
        w += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      } else if (!w.empty()) {
        out.push_back(w);
        w.clear();
      }
    }
    if (!w.empty()) out.push_back(w);
    return out;
  };
  std::vector<std::string> want = words(known), got = words(read);
  if (want.empty()) return 1.0;
  size_t hit = 0;
  for (const std::string& w : want) {
    auto it = std::find(got.begin(), got.end(), w);
    if (it != got.end()) {
      ++hit;
      got.erase(it);
    }
  }
  return static_cast<double>(hit) / static_cast<double>(want.size());
}

}  // namespace docpipe::test
