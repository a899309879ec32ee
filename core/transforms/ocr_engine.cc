#include "core/transforms/ocr_engine.h"

#include <leptonica/allheaders.h>
#include <sys/stat.h>
#include <tesseract/baseapi.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

namespace docpipe {
namespace {

constexpr size_t kMaxLanguages = 8;

// One engine per worker, for the languages it prepared.
struct Engine {
  std::unique_ptr<tesseract::TessBaseAPI> api;
  std::string lang;
};
Engine& engine() {
  static Engine* e = new Engine;  // never destroyed: a worker ends with _exit or by signal
  return *e;
}

}  // namespace

bool ocr_psm_allowed(int64_t psm) { return (psm >= 3 && psm <= 11) || psm == 13; }

std::string tessdata_dir() {
  const char* prefix = std::getenv("TESSDATA_PREFIX");
  if (prefix != nullptr && *prefix != '\0') return prefix;
  return "/usr/share/tesseract-ocr/5/tessdata";
}

std::string check_ocr_languages(const std::string& lang) {
  if (lang.empty()) return "is empty; give a model name such as \"eng\", or several: \"eng+deu\"";
  if (static_cast<size_t>(std::count(lang.begin(), lang.end(), '+')) >= kMaxLanguages) {
    return "names more than " + std::to_string(kMaxLanguages) + " languages";
  }
  size_t at = 0;
  for (;;) {
    const size_t plus = lang.find('+', at);
    const std::string name = lang.substr(at, plus == std::string::npos ? plus : plus - at);
    if (name.empty()) return "has an empty language name in \"" + lang + "\"";
    for (char c : name) {
      const bool word =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
      if (!word) {
        return "\"" + name + "\" is not a language name (letters, digits and '_', e.g. \"eng\")";
      }
    }
    const std::string file = tessdata_dir() + "/" + name + ".traineddata";
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return "\"" + name + "\" is not installed: no " + file +
             " (on Debian: apt install tesseract-ocr-" + name + ")";
    }
    if (plus == std::string::npos) break;
    at = plus + 1;
  }
  return "";
}

std::string prepare_ocr(const std::string& lang) {
  Engine& e = engine();
  if (e.api != nullptr && e.lang == lang) return "";
  const std::string why = check_ocr_languages(lang);
  if (!why.empty()) return "ocr: lang " + why;
  // Leptonica reports every refused image on stderr (the daemon's log); the transforms report
  // them as the document's error instead.
  setMsgSeverity(L_SEVERITY_NONE);
  auto api = std::make_unique<tesseract::TessBaseAPI>();
  if (api->Init(tessdata_dir().c_str(), lang.c_str(), tesseract::OEM_LSTM_ONLY) != 0) {
    return "tesseract cannot load the models of \"" + lang + "\" from " + tessdata_dir();
  }
  e.api = std::move(api);
  e.lang = lang;
  // Ended before tesseract's own statics (registered after them), which otherwise report the
  // models still in use as leaks when a worker exits.
  static const bool ended_at_exit = std::atexit([] { engine().api.reset(); }) == 0;
  (void)ended_at_exit;
  return "";
}

Result<std::string> ocr_image(Pix* pix, int dpi, int psm, const std::string& lang,
                              const std::string& what) {
  Engine& e = engine();
  if (e.api == nullptr || e.lang != lang) {
    const std::string why = prepare_ocr(lang);
    if (!why.empty()) return make_error(ErrorCode::kInternal, why);
  }
  tesseract::TessBaseAPI& api = *e.api;
  api.SetPageSegMode(static_cast<tesseract::PageSegMode>(psm));
  api.SetImage(pix);
  api.SetSourceResolution(dpi);
  std::unique_ptr<char[]> text(api.GetUTF8Text());
  api.Clear();
  if (text == nullptr) {
    return make_error(ErrorCode::kCorruptInput, what + ": tesseract could not read the image");
  }
  return std::string(text.get());
}

}  // namespace docpipe
