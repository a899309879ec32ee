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

namespace docpipe {
namespace {

using Mode = HtmlMode;

constexpr size_t kMaxNesting = 16;
constexpr size_t kMaxPaddedColumns = 64;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

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
  style.erase(std::remove_if(style.begin(), style.end(), is_space), style.end());
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

// Output with block structure: pending line breaks and spaces are written only when more content
// follows, so blocks are separated by at most one blank line and no line ends in a space.
class Writer {
 public:
  explicit Writer(Mode mode, bool single_line = false) : mode_(mode), single_line_(single_line) {}

  // Text of the page: runs of white space are one space unless `pre`.
  void text(std::string_view t, bool pre, bool escape) {
    if (pre) {
      for (char c : t) {
        if (c == '\r') continue;
        if (c == '\n') {
          if (single_line_) {
            pending_space_ = true;
          } else {
            start_content();
            out_ += '\n';
            at_line_start_ = true;
          }
          continue;
        }
        start_content();
        out_ += c;
      }
      return;
    }
    for (size_t i = 0; i < t.size(); ++i) {
      const char c = t[i];
      if (is_space(c)) {
        if (!at_line_start_ || !pending_open_.empty()) pending_space_ = true;
        continue;
      }
      // Whether c starts a line (where '#', '-' and the like would become syntax).
      const bool line_start = at_line_start_ || (pending_breaks_ > 0 && !out_.empty());
      if (line_start) digits_only_line_ = true;
      start_content();
      if (escape && needs_escape(c, line_start)) out_ += '\\';
      out_ += c;
      digits_only_line_ = digits_only_line_ && c >= '0' && c <= '9';
    }
  }

  // Markup written as it is (Markdown syntax); counts as content.
  void markup(std::string_view s) {
    start_content();
    out_ += s;
    digits_only_line_ = false;
  }

  // Ends the current line; the next content starts a new one with the prefixes.
  void end_line() {
    if (single_line_) {
      pending_space_ = true;
      return;
    }
    out_ += '\n';
    at_line_start_ = true;
    pending_space_ = false;
  }
  bool single_line() const { return single_line_; }

  // An inline marker (**, *, `, ~~, [): written before the next content, dropped if none comes.
  void open_inline(std::string marker) { pending_open_ += marker; }
  // Closes what open_inline opened: `close` after the content, or nothing if there was none.
  // Returns whether there was content.
  bool close_inline(std::string_view opened, std::string_view close) {
    if (pending_open_.size() >= opened.size() &&
        pending_open_.compare(pending_open_.size() - opened.size(), opened.size(), opened) == 0) {
      pending_open_.resize(pending_open_.size() - opened.size());
      return false;
    }
    out_ += close;
    return true;
  }

  // A break before the next content: 1 a new line, 2 a blank line between.
  void block(int newlines) {
    if (single_line_) {
      if (!out_.empty()) pending_space_ = true;
      return;
    }
    pending_breaks_ = std::max(pending_breaks_, newlines);
  }

  // <br>: a line break even within a paragraph.
  void line_break() {
    if (single_line_) {
      pending_space_ = true;
      return;
    }
    if (out_.empty()) return;
    if (mode_ == Mode::kMarkdown && !at_line_start_) out_ += '\\';
    out_ += '\n';
    at_line_start_ = true;
    pending_space_ = false;
    write_prefix();
  }

  // Lines from now on start with `prefix` (a quote's "> ", a list item's indent); `marker`
  // ("- ", "3. ") replaces this level's prefix on the next line only.
  void push_prefix(std::string prefix, std::string marker = {}) {
    prefixes_.push_back(std::move(prefix));
    marker_ = std::move(marker);
  }
  void pop_prefix() {
    if (!prefixes_.empty()) prefixes_.pop_back();
    marker_.clear();
  }
  size_t depth() const { return prefixes_.size(); }

  bool empty() const { return out_.empty() && pending_open_.empty(); }
  std::string take() {
    if (!out_.empty() && !single_line_) out_ += '\n';
    return std::move(out_);
  }

 private:
  bool needs_escape(char c, bool line_start) const {
    if (mode_ != Mode::kMarkdown) return false;
    switch (c) {
      case '\\':
      case '`':
      case '*':
      case '_':
      case '[':
      case ']':
      case '<':
      case '>':
      case '!':  // "Wow!" before a link would make it an image
        return true;
      case '.':
      case ')':
        return digits_only_line_;  // "2024. Year" must not start an ordered list
      case '|':
        return single_line_;  // table cells
      case '#':
      case '+':
      case '-':
      case '=':
        return line_start && pending_open_.empty();
      default:
        return false;
    }
  }

  void write_prefix() {
    for (size_t i = 0; i < prefixes_.size(); ++i) {
      if (i + 1 == prefixes_.size() && !marker_.empty()) {
        out_ += marker_;
        marker_.clear();
      } else {
        out_ += prefixes_[i];
      }
    }
  }

  void start_content() {
    if (pending_breaks_ > 0 && !out_.empty()) {
      if (!at_line_start_) out_ += '\n';
      for (int i = 1; i < pending_breaks_; ++i) {
        // A blank line inside a quote keeps the quote's "> " (trimmed).
        std::string blank;
        for (const std::string& p : prefixes_) blank += p;
        while (!blank.empty() && blank.back() == ' ') blank.pop_back();
        out_ += blank;
        out_ += '\n';
      }
      at_line_start_ = true;
      pending_space_ = false;
    }
    pending_breaks_ = 0;
    if (at_line_start_) {
      write_prefix();
      at_line_start_ = false;
      pending_space_ = false;
    }
    if (pending_space_) {
      out_ += ' ';
      pending_space_ = false;
    }
    if (!pending_open_.empty()) {
      out_ += pending_open_;
      pending_open_.clear();
    }
  }

  const Mode mode_;
  const bool single_line_;
  std::string out_;
  int pending_breaks_ = 0;
  bool at_line_start_ = true;
  bool pending_space_ = false;
  std::string pending_open_;
  std::vector<std::string> prefixes_;
  std::string marker_;
  bool digits_only_line_ = false;  // the line so far is digits only
};

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
