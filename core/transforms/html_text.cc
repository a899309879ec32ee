// html.text and html.markdown: an HTML page to its visible text, or to Markdown with headings,
// lists, links, emphasis, code and tables, with libxml2's HTML parser (the error-tolerant one
// browsers' tag soup needs).
//
// - The character set comes from the byte order mark, a <meta> declaration or the `charset`
//   parameter (html_charset.h); the page is converted to UTF-8 before libxml2 sees it, and
//   libxml2 is told to ignore the page's own declaration, so it never loads a converter.
// - What a browser does not show is left out: <head> (title included), scripts, styles,
//   templates, <noscript>, embedded objects, form controls, and elements marked `hidden`,
//   aria-hidden="true" or style="display:none".
// - libxml2 has a record of memory-safety bugs on hostile markup, so both transforms are
//   isolated: each document is parsed in a sandboxed worker with a memory limit, killed on
//   cancel or timeout (isolated_worker.h). The worker opens its character set converters before
//   the sandbox closes (prepare_html_charsets).
// - The tree is walked without recursion, and Markdown's nesting (quotes, lists) stops adding
//   prefixes past kMaxNesting levels, so neither a deep tree nor deep nesting can blow the stack
//   or the output up.

#include <libxml/HTMLparser.h>
#include <libxml/tree.h>

#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/transforms/html_charset.h"
#include "core/transforms/html_render.h"
#include "core/transforms/isolated_worker.h"
#include "core/transforms/library_versions.h"
#include "core/transforms/param_reader.h"
#include "core/transforms/whole_document.h"

namespace docpipe {
namespace {

struct HtmlOptions {
  HtmlMode mode = HtmlMode::kText;
  std::string charset;  // "" for auto
  uint64_t max_input_bytes = 0;
  WorkerLimits worker;
};

struct DocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
struct CtxtFree {
  void operator()(htmlParserCtxt* c) const { htmlFreeParserCtxt(c); }
};

class HtmlTransform : public DocumentTransform {
 public:
  HtmlTransform(const HtmlOptions& options, const char* op)
      : options_(options), op_(op), input_(op, options.max_input_bytes) {}

  Status update(std::string_view in, std::string&) override { return input_.add(in); }

  Status finish(std::string& out) override {
    Result<HtmlCharset> charset = detect_html_charset(input_.data(), options_.charset);
    if (!charset) {
      return make_error(charset.error().code, std::string(op_) + ": " + charset.error().message);
    }
    std::string utf8;
    Status st = convert_to_utf8(input_.data(), *charset, utf8);
    if (!st) return st;
    input_.release();
    if (utf8.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
      return make_error(ErrorCode::kTooLarge, std::string(op_) +
                                                  ": document too large for "
                                                  "libxml2 (2 GiB)");
    }
    std::unique_ptr<htmlParserCtxt, CtxtFree> ctxt(htmlNewParserCtxt());
    if (ctxt == nullptr)
      return make_error(ErrorCode::kInternal, std::string(op_) + ": out of memory");
    // Not XML_PARSE_HUGE: without libxml2's depth limit (256) its end-tag matching is quadratic
    // in the depth ("<b>" x 1e6 then "</i>" x 1e6). A deeper page stops the parser, and the
    // check below fails it clearly.
    std::unique_ptr<xmlDoc, DocFree> doc(htmlCtxtReadMemory(
        ctxt.get(), utf8.data(), static_cast<int>(utf8.size()), nullptr, "UTF-8",
        HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET |
            HTML_PARSE_IGNORE_ENC | HTML_PARSE_COMPACT | HTML_PARSE_NODEFDTD));
    std::string().swap(utf8);
    // A parse libxml2 gave up on (out of memory, an internal limit) would leave the rest of the
    // page out: the document fails rather than losing text silently.
    if (ctxt->disableSAX != 0) {
      const xmlError* e = xmlCtxtGetLastError(ctxt.get());
      std::string why = e != nullptr && e->message != nullptr ? e->message : "unknown error";
      while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
      if (why.starts_with("Excessive depth")) {
        return make_error(ErrorCode::kCorruptInput,
                          std::string(op_) +
                              ": the page nests elements deeper than 256 levels (libxml2's limit)");
      }
      return make_error(ErrorCode::kCorruptInput,
                        std::string(op_) + ": libxml2 stopped parsing the page: " + why);
    }
    if (doc == nullptr) return ok();  // nothing in the page
    out += render_html(reinterpret_cast<xmlNode*>(doc.get()), options_.mode);
    return ok();
  }

 private:
  const HtmlOptions options_;
  const char* op_;
  WholeInput input_;
};

class HtmlStep : public TransformStep {
 public:
  HtmlStep(HtmlOptions options, const char* op) : options_(std::move(options)), op_(op) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext&) const override {
    return std::make_unique<HtmlTransform>(options_, op_);
  }

 private:
  HtmlOptions options_;
  const char* op_;
};

const ParamSchema& schema() {
  static const ParamSchema s = add_worker_params(add_max_input_bytes(ParamSchema().string(
      "charset", "auto",
      "the page's character set: \"auto\" (its byte order mark, else its <meta> declaration, "
      "else UTF-8 if it is valid UTF-8, else windows-1252) or an encoding label such as "
      "\"windows-1251\" or \"shift_jis\" (a byte order mark still wins)")));
  return s;
}

std::string prepare(const std::string&) {
  xmlInitParser();
  return prepare_html_charsets();
}

std::shared_ptr<const TransformStep> configure(const char* op, HtmlMode mode,
                                               const nlohmann::json& params, FieldErrors& errors) {
  ParamReader reader(schema(), params, errors);
  HtmlOptions options;
  options.mode = mode;
  options.charset = reader.string("charset");
  if (options.charset == "auto") options.charset.clear();
  if (!options.charset.empty() && charset_for_label(options.charset).empty()) {
    reader.error("charset", "unknown or unsupported encoding label \"" + options.charset +
                                "\" (WHATWG labels such as \"utf-8\", \"windows-1252\", "
                                "\"iso-8859-2\", \"koi8-r\", \"shift_jis\", \"gbk\", \"big5\", "
                                "\"euc-kr\")");
  }
  options.max_input_bytes = static_cast<uint64_t>(reader.integer("max_input_bytes"));
  options.worker = read_worker_limits(reader);
  if (!reader.ok()) return nullptr;
  return isolated_step(op, params, options.worker, std::make_shared<HtmlStep>(options, op));
}

const TransformRegistration kText(TransformInfo{
    .op = "html.text",
    .description = "the visible text of an HTML page (libxml2's HTML parser, in a sandboxed worker "
                   "process): blocks on their own lines, table rows as tab-separated cells; "
                   "scripts, styles, <head> and hidden elements left out",
    .streaming = false,
    .params = schema().specs(),
    .configure =
        [](const nlohmann::json& params, const TransformEnv&, FieldErrors& errors) {
          return configure("html.text", HtmlMode::kText, params, errors);
        },
    .isolated = true,
    .prepare_worker = prepare,
    .library_version = libxml2_library_version});

const TransformRegistration kMarkdown(TransformInfo{
    .op = "html.markdown",
    .description = "an HTML page as GitHub Flavored Markdown (libxml2's HTML parser, in a "
                   "sandboxed worker process): headings, lists, links, emphasis, code, quotes, "
                   "images and tables; scripts, styles, <head> and hidden elements left out",
    .streaming = false,
    .params = schema().specs(),
    .configure =
        [](const nlohmann::json& params, const TransformEnv&, FieldErrors& errors) {
          return configure("html.markdown", HtmlMode::kMarkdown, params, errors);
        },
    .isolated = true,
    .prepare_worker = prepare,
    .library_version = libxml2_library_version});

}  // namespace
}  // namespace docpipe
