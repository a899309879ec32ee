#pragma once
// Optical character recognition with tesseract's LSTM models, shared by `ocr` (images) and
// pdf.text's `ocr: "auto"` (pages without a text layer). Both run in isolated workers: a
// worker's prepare_worker loads the models of its languages once (prepare_ocr), before its
// sandbox closes, and every document it serves after that reuses them.

#include <cstdint>
#include <string>

#include "core/result.h"

struct Pix;

namespace docpipe {

// The page segmentation modes a job may ask for: 3 (automatic, the default) to 11 and 13. 0, 1,
// 2 and 12 detect orientation and script, which loads another model (osd) mid-document.
bool ocr_psm_allowed(int64_t psm);
inline constexpr int64_t kDefaultOcrPsm = 3;
// Resolutions a job may give (dpi); 0 means the image's own, or kFallbackOcrDpi if it has none.
inline constexpr int64_t kMinOcrDpi = 70;
inline constexpr int64_t kMaxOcrDpi = 2400;
inline constexpr int kFallbackOcrDpi = 300;

// Where tesseract's models are: $TESSDATA_PREFIX if the daemon has it (workers are given it),
// else Debian's folder for tesseract 5.
std::string tessdata_dir();

// Checks a `lang` parameter ("eng", "eng+deu"): 1 to 8 names of installed models, each letters,
// digits and '_'. Returns "" or what is wrong, naming the package that would add a missing one.
std::string check_ocr_languages(const std::string& lang);

// Loads the models of `lang` in this process (a worker's prepare_worker). "" or what failed.
std::string prepare_ocr(const std::string& lang);

// The text tesseract reads in `pix` at `dpi` with page segmentation mode `psm`. The models of
// `lang` must have been prepared (a process that may still open files, such as a fuzz target,
// loads them on first use). `what` names the image in errors ("ocr: page 2").
Result<std::string> ocr_image(Pix* pix, int dpi, int psm, const std::string& lang,
                              const std::string& what);

}  // namespace docpipe
