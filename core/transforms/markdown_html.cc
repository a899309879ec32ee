// markdown.html: CommonMark with the GitHub extensions (tables, strikethrough, autolinks, task
// lists) rendered to an HTML fragment by cmark-gfm. Raw HTML in the document is shown as text
// unless unsafe_html is set.
//
// cmark-gfm 0.29 (Debian 12, without the fixes for CVE-2023-22483..22486, -24824, -26485,
// -37463) is quadratic in time or memory on known shapes: a 120 KB table of 20,000 columns grew
// to 23 GB, a 90 KB document of nested `>` took 9 s. So it is isolated: every document is
// rendered in a sandboxed worker process with a memory limit (worker_memory_bytes), killed on
// cancel or document_timeout_ms (isolated_worker.h). The code below is what the worker runs.

#include <cmark-gfm-core-extensions.h>
#include <cmark-gfm-extension_api.h>
#include <cmark-gfm.h>

#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/transforms/isolated_worker.h"
#include "core/transforms/library_versions.h"
#include "core/transforms/param_reader.h"
#include "core/transforms/whole_document.h"

namespace docpipe {
namespace {

constexpr const char* kExtensionNames[] = {"table", "strikethrough", "autolink", "tasklist"};

struct Extensions {
  std::vector<cmark_syntax_extension*> list;  // null if the library lacks one
};

// The registry is filled once, then only read.
const Extensions& extensions() {
  static std::once_flag once;
  static Extensions ext;
  std::call_once(once, [] {
    cmark_gfm_core_extensions_ensure_registered();
    for (const char* name : kExtensionNames) ext.list.push_back(cmark_find_syntax_extension(name));
  });
  return ext;
}

// cmark-gfm 0.29 keeps the table of inline special characters in a process-wide array that a
// parser changes while it parses (it adds the extensions' characters and removes them again, in
// cmark_parser_feed for table rows and in cmark_parser_finish), so two documents parsed at once on
// two threads corrupt each other's result. Every parser call holds this lock; each call leaves the
// table as it found it. Rendering needs no lock. (A worker renders one document at a time, so the
// lock never waits there; it keeps the in-process code correct wherever it runs.)
std::mutex& parse_mutex() {
  static std::mutex mu;
  return mu;
}

// cmark's default allocator prints and abort()s when an allocation fails. This one ends a worker
// with the status the daemon reports as "exceeded its memory limit" instead.
void* checked_calloc(size_t n, size_t size) {
  void* p = std::calloc(n, size);
  if (p == nullptr && n != 0 && size != 0) transform_out_of_memory();
  return p;
}
void* checked_realloc(void* old, size_t size) {
  void* p = std::realloc(old, size);
  if (p == nullptr && size != 0) transform_out_of_memory();
  return p;
}
cmark_mem g_checked_mem{checked_calloc, checked_realloc, std::free};

struct MarkdownOptions {
  int cmark_options = CMARK_OPT_DEFAULT;
  bool unsafe_html = false;
  uint64_t max_input_bytes = 0;
  WorkerLimits worker;
};

struct ParserFree {
  void operator()(cmark_parser* p) const { cmark_parser_free(p); }
};
struct NodeFree {
  void operator()(cmark_node* n) const { cmark_node_free(n); }
};

// Turns raw HTML nodes into text, which the renderer escapes: an inline tag becomes text in its
// paragraph, an HTML block becomes a paragraph of text. (cmark's own safe mode would drop them
// and write "<!-- raw HTML omitted -->"; showing the text loses nothing and runs nothing.)
void escape_raw_html(cmark_node* root) {
  std::vector<cmark_node*> raw;
  cmark_iter* iter = cmark_iter_new(root);
  for (cmark_event_type ev; (ev = cmark_iter_next(iter)) != CMARK_EVENT_DONE;) {
    cmark_node* node = cmark_iter_get_node(iter);
    cmark_node_type type = cmark_node_get_type(node);
    if (ev == CMARK_EVENT_ENTER &&
        (type == CMARK_NODE_HTML_INLINE || type == CMARK_NODE_HTML_BLOCK)) {
      raw.push_back(node);
    }
  }
  cmark_iter_free(iter);
  // Replaced after the walk: the iterator must not see its current node unlinked.
  for (cmark_node* node : raw) {
    const char* literal = cmark_node_get_literal(node);
    std::string text = literal != nullptr ? literal : "";
    cmark_node* replacement = nullptr;
    cmark_node* text_node = cmark_node_new_with_mem(CMARK_NODE_TEXT, &g_checked_mem);
    if (cmark_node_get_type(node) == CMARK_NODE_HTML_BLOCK) {
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
      replacement = cmark_node_new_with_mem(CMARK_NODE_PARAGRAPH, &g_checked_mem);
      cmark_node_append_child(replacement, text_node);
    } else {
      replacement = text_node;
    }
    cmark_node_set_literal(text_node, text.c_str());
    // A replacement the parent cannot hold stays out; the safe renderer then writes the node as
    // an "omitted" comment, which is still safe.
    if (cmark_node_replace(node, replacement)) {
      cmark_node_free(node);
    } else {
      cmark_node_free(replacement);
    }
  }
}

class MarkdownTransform : public DocumentTransform {
 public:
  explicit MarkdownTransform(const MarkdownOptions& options)
      : options_(options), limit_("markdown.html", options.max_input_bytes) {}

  Status update(std::string_view in, std::string&) override {
    Status st = limit_.add(in.size());
    if (!st) return st;
    if (in.empty()) return ok();
    std::lock_guard<std::mutex> lock(parse_mutex());
    st = start_locked();
    if (!st) return st;
    // The parser holds only an unfinished line and the block tree, not the whole text.
    cmark_parser_feed(parser_.get(), in.data(), in.size());
    return ok();
  }

  Status finish(std::string& out) override {
    std::unique_ptr<cmark_node, NodeFree> doc;
    {
      std::lock_guard<std::mutex> lock(parse_mutex());
      Status st = start_locked();
      if (!st) return st;
      doc.reset(cmark_parser_finish(parser_.get()));
    }
    if (doc == nullptr) {
      return make_error(ErrorCode::kInternal, "markdown.html: cmark-gfm returned no document");
    }
    if (!options_.unsafe_html) escape_raw_html(doc.get());
    cmark_mem* mem = &g_checked_mem;
    char* html = cmark_render_html_with_mem(doc.get(), options_.cmark_options,
                                            cmark_parser_get_syntax_extensions(parser_.get()), mem);
    if (html == nullptr) {
      return make_error(ErrorCode::kInternal, "markdown.html: cmark-gfm rendered nothing");
    }
    out.append(html);
    mem->free(html);
    return ok();
  }

 private:
  Status start_locked() {
    if (parser_ != nullptr) return ok();
    parser_.reset(cmark_parser_new_with_mem(options_.cmark_options, &g_checked_mem));
    if (parser_ == nullptr) return make_error(ErrorCode::kInternal, "markdown.html: out of memory");
    for (cmark_syntax_extension* ext : extensions().list) {
      if (ext != nullptr) cmark_parser_attach_syntax_extension(parser_.get(), ext);
    }
    return ok();
  }

  const MarkdownOptions options_;
  InputLimit limit_;
  std::unique_ptr<cmark_parser, ParserFree> parser_;
};

class MarkdownStep : public TransformStep {
 public:
  explicit MarkdownStep(MarkdownOptions options) : options_(options) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext&) const override {
    return std::make_unique<MarkdownTransform>(options_);
  }

 private:
  MarkdownOptions options_;
};

const ParamSchema& schema() {
  static const ParamSchema s = add_worker_params(add_max_input_bytes(
      ParamSchema()
          .boolean("unsafe_html", false,
                   "pass raw HTML and javascript:/vbscript:/file:/data: links through as written "
                   "(default: raw HTML is shown as text and such links are dropped)")
          .boolean("smart", false,
                   "typographic punctuation: curly quotes, -- and --- as dashes, ... as an "
                   "ellipsis")
          .boolean("hardbreaks", false, "render every line break in a paragraph as <br />")));
  return s;
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "markdown.html",
    .description = "renders GitHub Flavored Markdown (tables, strikethrough, autolinks, task "
                   "lists) to an HTML fragment with cmark-gfm, in a sandboxed worker process",
    .streaming = false,
    .params = schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      extensions();  // registers them once, before any document is parsed
      ParamReader reader(schema(), params, errors);
      MarkdownOptions options;
      options.unsafe_html = reader.boolean("unsafe_html");
      // Invalid UTF-8 becomes U+FFFD, so the HTML is always valid UTF-8.
      options.cmark_options = CMARK_OPT_VALIDATE_UTF8;
      if (options.unsafe_html) options.cmark_options |= CMARK_OPT_UNSAFE;
      if (reader.boolean("smart")) options.cmark_options |= CMARK_OPT_SMART;
      if (reader.boolean("hardbreaks")) options.cmark_options |= CMARK_OPT_HARDBREAKS;
      options.max_input_bytes = static_cast<uint64_t>(reader.integer("max_input_bytes"));
      options.worker = read_worker_limits(reader);
      if (!reader.ok()) return nullptr;
      return isolated_step("markdown.html", params, options.worker,
                           std::make_shared<MarkdownStep>(options));
    },
    .isolated = true,
    .library_version = cmark_library_version});

}  // namespace
}  // namespace docpipe
