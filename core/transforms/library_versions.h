#pragma once
// The run-time versions of the libraries whose output a transform's output depends on, for
// TransformInfo::library_version and so for the chain fingerprint (core/chain_fingerprint.h): an
// upgraded shared library can change a compressor's or an extractor's bytes without a rebuild,
// and `if_exists: "unchanged"` must then redo the documents. Decompressors are left out: their
// output is fixed by the format.

#include <string>

namespace docpipe {

std::string zlib_libdeflate_version();  // gzip: libdeflate (whole documents), zlib (blocks)
std::string zstd_library_version();
std::string cmark_library_version();
std::string libxml2_library_version();
std::string poppler_library_version();
std::string tesseract_library_version();  // tesseract and leptonica
std::string libmagic_library_version();

}  // namespace docpipe
