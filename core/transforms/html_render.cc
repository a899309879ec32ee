// The tree walk and writers behind html.text and html.markdown (html_render.h).

#include "core/transforms/html_render.h"

#include <libxml/tree.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/transforms/html_writer.h"

namespace docpipe {
namespace {

using Mode = HtmlMode;
using Writer = HtmlWriter;

constexpr size_t kMaxNesting = 16;
constexpr size_t kMaxPaddedColumns = 64;

bool name_is(const xmlNode* n, const char* name) {
  return n->name != nullptr && std::strcmp(reinterpret_cast<const char*>(n->name), name) == 0;
}

bool name_in(const xmlNode* n, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (name_is(n, name)) return true;
  }
  return false;
}

std::string attribute(const xmlNode* n, const char* name) {
  xmlChar* v = xmlGetProp(n, reinterpret_cast<const xmlChar*>(name));
  if (v == nullptr) return {};
  std::string out(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return out;
}

std::string lower_ascii(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

// Whether the page marks the element as not shown.
bool hidden(const xmlNode* n) {
  if (xmlHasProp(n, reinterpret_cast<const xmlChar*>("hidden")) != nullptr) return true;
  if (lower_ascii(attribute(n, "aria-hidden")) == "true") return true;
  std::string style = lower_ascii(attribute(n, "style"));
  style.erase(std::remove_if(style.begin(), style.end(), is_html_space), style.end());
  return style.find("display:none") != std::string::npos ||
         style.find("visibility:hidden") != std::string::npos;
}

bool never_shown(const xmlNode* n) {
  return name_in(
      n, {"head",   "title",    "script", "style",  "noscript", "template", "iframe", "object",
          "embed",  "svg",      "math",   "canvas", "audio",    "video",    "select", "input",
          "option", "datalist", "map",    "area",   "base",     "link",     "meta"});
}

bool is_block(const xmlNode* n) {
  return name_in(n,
                 {"p",       "div",        "section", "article",  "header", "footer", "main",
                  "nav",     "aside",      "form",    "fieldset", "legend", "figure", "figcaption",
                  "address", "details",    "summary", "dl",       "dt",     "dd",     "center",
                  "caption", "body",       "html",    "h1",       "h2",     "h3",     "h4",
                  "h5",      "h6",         "ul",      "ol",       "li",     "table",  "tr",
                  "pre",     "blockquote", "hr",      "textarea", "menu",   "dialog"});
}

// A link or image target that is safe to write out as one.
bool safe_url(const std::string& url) {
  std::string scheme;
  for (char c : url) {
    if (c == ':') break;
    if (c == '/' || c == '?' || c == '#') return true;  // relative
    scheme += c;
  }
  if (scheme.size() == url.size()) return true;  // no scheme: relative
  scheme = lower_ascii(scheme);
  return scheme == "http" || scheme == "https" || scheme == "mailto" || scheme == "ftp";
}

struct Table {
  std::vector<std::vector<std::string>> rows;
  bool in_row = false;
  bool header_row = false;  // the first row has <th> cells
};

// Walks the document tree (without recursion) and renders it.
class Renderer {
 public:
  explicit Renderer(Mode mode) : mode_(mode) { writers_.emplace_back(mode); }

  std::string render(xmlNode* root) {
    xmlNode* n = root;
    while (n != nullptr) {
      const bool descend = enter(n);
      if (descend && n->children != nullptr) {
        n = n->children;
        continue;
      }
      if (descend) leave(n);
      while (n != nullptr && n != root && n->next == nullptr) {
        n = n->parent;
        if (n != nullptr) leave(n);
      }
      if (n == nullptr || n == root) break;
      n = n->next;
    }
    return writers_.front().take();
  }

 private:
  Writer& w() { return writers_.back(); }
  bool md() const { return mode_ == Mode::kMarkdown; }

  // Returns whether to walk the node's children (and call leave() after them).
  bool enter(xmlNode* n) {
    if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
      if (n->content != nullptr) {
        w().text(reinterpret_cast<const char*>(n->content), pre_ > 0, md() && code_ == 0);
      }
      return false;
    }
    if (n->type == XML_DOCUMENT_NODE || n->type == XML_HTML_DOCUMENT_NODE) return true;
    if (n->type != XML_ELEMENT_NODE) return false;  // comments, processing instructions
    if (never_shown(n) || hidden(n)) return false;

    if (name_in(n, {"td", "th"})) return enter_cell(n);
    if (name_is(n, "tr")) {
      if (!tables_.empty()) {
        tables_.back().rows.emplace_back();
        tables_.back().in_row = true;
      }
      return true;
    }
    if (name_is(n, "table")) {
      w().block(2);
      tables_.emplace_back();
      return true;
    }
    if (name_is(n, "br")) {
      w().line_break();
      return false;
    }
    if (name_is(n, "hr")) {
      w().block(2);
      if (md()) w().markup("---");
      w().block(2);
      return false;
    }
    if (name_is(n, "img")) {
      if (md()) image(n);
      return false;
    }
    if (n->name != nullptr && n->name[0] == 'h' && n->name[1] >= '1' && n->name[1] <= '6' &&
        n->name[2] == '\0') {
      w().block(2);
      if (md()) w().markup(std::string(static_cast<size_t>(n->name[1] - '0'), '#') + " ");
      return true;
    }
    if (name_in(n, {"ul", "ol", "menu"})) {
      w().block(lists_.empty() ? 2 : 1);
      // CommonMark list numbers have at most 9 digits.
      long long start = 1;
      if (name_is(n, "ol")) {
        const std::string a = attribute(n, "start");
        start = a.empty() ? 1 : std::clamp(std::atoll(a.c_str()), 0LL, 999999999LL);
      }
      lists_.push_back(name_is(n, "ol") ? start : -1);
      return true;
    }
    if (name_is(n, "li")) {
      w().block(1);
      if (md() && w().depth() < kMaxNesting) {
        std::string marker = "- ";
        if (!lists_.empty() && lists_.back() >= 0) {
          marker = std::to_string(lists_.back()) + ". ";
          lists_.back() = std::min(lists_.back() + 1, 999999999LL);
        }
        w().push_prefix(std::string(marker.size(), ' '), marker);
        pushed_.push_back(n);
      }
      return true;
    }
    if (name_is(n, "blockquote")) {
      w().block(2);
      if (md() && w().depth() < kMaxNesting) {
        w().push_prefix("> ");
        pushed_.push_back(n);
      }
      return true;
    }
    if (name_is(n, "pre")) {
      w().block(2);
      if (md() && !w().single_line()) {
        fences_.push_back(fence(n));
        w().markup(fences_.back());
        w().end_line();
      } else if (md()) {
        fences_.emplace_back();  // in a table cell: the code stays on the row's line
      }
      ++pre_;
      ++code_;
      return true;
    }
    if (md()) {
      if (name_is(n, "code") || name_is(n, "kbd") || name_is(n, "samp")) {
        if (code_++ == 0 && pre_ == 0) w().open_inline("`");
        return true;
      }
      if (code_ == 0) {
        if (name_in(n, {"strong", "b"})) {
          w().open_inline("**");
        } else if (name_in(n, {"em", "i", "cite", "dfn"})) {
          w().open_inline("*");
        } else if (name_in(n, {"del", "s", "strike"})) {
          w().open_inline("~~");
        } else if (name_is(n, "a")) {
          const std::string href = attribute(n, "href");
          if (!href.empty() && safe_url(href) && links_.size() < kMaxNesting) {
            w().open_inline("[");
            links_.push_back({n, href});
          }
        }
      }
    }
    if (is_block(n)) w().block(name_in(n, {"p", "dl", "figure", "details"}) ? 2 : 1);
    return true;
  }

  void leave(xmlNode* n) {
    if (n->type != XML_ELEMENT_NODE) return;
    if (!pushed_.empty() && pushed_.back() == n) {
      w().pop_prefix();
      pushed_.pop_back();
    }
    if (name_in(n, {"td", "th"})) return leave_cell(n);
    if (name_is(n, "tr")) {
      if (!tables_.empty()) tables_.back().in_row = false;
      return;
    }
    if (name_is(n, "table")) return leave_table();
    if (n->name != nullptr && n->name[0] == 'h' && n->name[1] >= '1' && n->name[1] <= '6' &&
        n->name[2] == '\0') {
      w().block(2);
      return;
    }
    if (name_in(n, {"ul", "ol", "menu"})) {
      if (!lists_.empty()) lists_.pop_back();
      w().block(lists_.empty() ? 2 : 1);
      return;
    }
    if (name_is(n, "pre")) {
      --pre_;
      --code_;
      if (md() && !fences_.empty()) {
        if (!fences_.back().empty()) {
          w().block(1);
          w().markup(fences_.back());
        }
        fences_.pop_back();
      }
      w().block(2);
      return;
    }
    if (md()) {
      if (name_is(n, "code") || name_is(n, "kbd") || name_is(n, "samp")) {
        if (--code_ == 0 && pre_ == 0) w().close_inline("`", "`");
        return;
      }
      if (code_ == 0) {
        if (name_in(n, {"strong", "b"})) {
          w().close_inline("**", "**");
        } else if (name_in(n, {"em", "i", "cite", "dfn"})) {
          w().close_inline("*", "*");
        } else if (name_in(n, {"del", "s", "strike"})) {
          w().close_inline("~~", "~~");
        } else if (name_is(n, "a") && !links_.empty() && links_.back().node == n) {
          w().close_inline("[", "](" + link_target(links_.back().href) + ")");
          links_.pop_back();
        }
      }
    }
    if (is_block(n)) w().block(name_in(n, {"p", "dl", "figure", "details", "blockquote"}) ? 2 : 1);
  }

  bool enter_cell(xmlNode* n) {
    if (tables_.empty()) {
      w().block(1);
      return true;
    }
    Table& t = tables_.back();
    if (!t.in_row || t.rows.empty()) {
      t.rows.emplace_back();
      t.in_row = true;
    }
    if (t.rows.size() == 1 && name_is(n, "th")) t.header_row = true;
    writers_.emplace_back(mode_, /*single_line=*/true);
    return true;
  }

  void leave_cell(xmlNode*) {
    if (tables_.empty() || writers_.size() < 2) return;
    std::string cell = writers_.back().take();
    writers_.pop_back();
    tables_.back().rows.back().push_back(std::move(cell));
  }

  void leave_table() {
    if (tables_.empty()) return;
    Table t = std::move(tables_.back());
    tables_.pop_back();
    t.rows.erase(std::remove_if(t.rows.begin(), t.rows.end(),
                                [](const std::vector<std::string>& r) { return r.empty(); }),
                 t.rows.end());
    if (t.rows.empty()) return;
    w().block(2);
    if (!md()) {
      for (const std::vector<std::string>& row : t.rows) {
        std::string line;
        for (size_t i = 0; i < row.size(); ++i) {
          if (i > 0) line += '\t';
          line += row[i];
        }
        w().block(1);
        w().markup(line);
      }
      w().block(2);
      return;
    }
    // Rows are padded to the widest, but not past kMaxPaddedColumns: a 100,000-cell first row
    // over 100,000 one-cell rows must not ask for 10^10 cells.
    size_t columns = 0;
    for (const auto& row : t.rows) columns = std::max(columns, row.size());
    const size_t padded = std::min(columns, kMaxPaddedColumns);
    auto line = [&](const std::vector<std::string>& row) {
      std::string s = "|";
      for (size_t i = 0; i < std::max(padded, row.size()); ++i) {
        s += ' ';
        s += i < row.size() ? row[i] : std::string();
        s += " |";
      }
      return s;
    };
    // GFM needs a header row: the first row serves, <th> or not.
    w().block(1);
    w().markup(line(t.rows[0]));
    std::string rule = "|";
    for (size_t i = 0; i < std::max(padded, t.rows[0].size()); ++i) rule += " --- |";
    w().block(1);
    w().markup(rule);
    for (size_t r = 1; r < t.rows.size(); ++r) {
      w().block(1);
      w().markup(line(t.rows[r]));
    }
    w().block(2);
  }

  void image(xmlNode* n) {
    const std::string src = attribute(n, "src");
    if (src.empty() || !safe_url(src)) return;
    std::string alt = attribute(n, "alt");
    for (char& c : alt) {
      if (c == '[' || c == ']' || c == '\n' || c == '\r') c = ' ';
    }
    w().markup("![" + alt + "](" + link_target(src) + ")");
  }

  // A code fence longer than any run of backticks in the block's text (at least ```).
  static std::string fence(const xmlNode* pre) {
    size_t longest = 0, run = 0;
    xmlChar* text = xmlNodeGetContent(pre);
    for (const xmlChar* p = text; p != nullptr && *p != 0; ++p) {
      run = *p == '`' ? run + 1 : 0;
      longest = std::max(longest, run);
    }
    if (text != nullptr) xmlFree(text);
    return std::string(std::max<size_t>(3, longest + 1), '`');
  }

  // A URL as a Markdown link target: in <...> when it holds spaces or parentheses.
  static std::string link_target(const std::string& url) {
    if (url.find_first_of(" ()<>\n\r\t") == std::string::npos) return url;
    std::string out = "<";
    for (char c : url) {
      if (c == '<' || c == '>') {
        out += c == '<' ? "%3C" : "%3E";
      } else if (c == '\n' || c == '\r' || c == '\t') {
        out += "%20";
      } else {
        out += c;
      }
    }
    return out + ">";
  }

  struct Link {
    const xmlNode* node;
    std::string href;
  };

  const Mode mode_;
  std::vector<Writer> writers_;  // the page's, then one per table cell being read
  std::vector<Table> tables_;
  std::vector<long long> lists_;        // per open list: the next number, or -1 for bullets
  std::vector<const xmlNode*> pushed_;  // elements that pushed a prefix
  std::vector<Link> links_;
  std::vector<std::string> fences_;  // per open <pre>: its fence ("" in a table cell)
  int pre_ = 0;
  int code_ = 0;
};

}  // namespace

std::string render_html(xmlNode* root, HtmlMode mode) { return Renderer(mode).render(root); }

}  // namespace docpipe
