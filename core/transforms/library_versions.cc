#include "core/transforms/library_versions.h"

#include <cmark-gfm.h>
#include <leptonica/allheaders.h>
#include <libdeflate.h>
#include <libxml/parser.h>
#include <magic.h>
#include <poppler/cpp/poppler-version.h>
#include <tesseract/baseapi.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdlib>

namespace docpipe {

std::string zlib_libdeflate_version() {
  // libdeflate has no run-time version call: the version it was built against. "libdeflate/1.14",
  // not "libdeflate 1.14": lintian takes "deflate <digit>" in a binary for an embedded zlib.
  return std::string("zlib ") + zlibVersion() + ", libdeflate/" LIBDEFLATE_VERSION_STRING;
}

std::string zstd_library_version() { return std::string("zstd ") + ZSTD_versionString(); }

std::string cmark_library_version() { return std::string("cmark-gfm ") + cmark_version_string(); }

std::string libxml2_library_version() { return std::string("libxml2 ") + xmlParserVersion; }

std::string poppler_library_version() { return "poppler " + poppler::version_string(); }

std::string tesseract_library_version() {
  std::string out = std::string("tesseract ") + tesseract::TessBaseAPI::Version();
  if (char* lept = getLeptonicaVersion()) {
    out += std::string(", ") + lept;
    std::free(lept);
  }
  return out;
}

std::string libmagic_library_version() { return "libmagic " + std::to_string(magic_version()); }

}  // namespace docpipe
