#pragma once
// The output side of html.text and html.markdown (html_render.cc walks the page and calls it):
// text with block structure, Markdown syntax escaped where the page's text would read as syntax.

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "core/transforms/html_render.h"

namespace docpipe {

// HTML's white space (a browser collapses runs of it).
inline bool is_html_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

// Output with block structure: pending line breaks and spaces are written only when more content
// follows, so blocks are separated by at most one blank line and no line ends in a space.
class HtmlWriter {
 public:
  explicit HtmlWriter(HtmlMode mode, bool single_line = false)
      : mode_(mode), single_line_(single_line) {}

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
      if (is_html_space(c)) {
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
    if (mode_ == HtmlMode::kMarkdown && !at_line_start_) out_ += '\\';
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
    if (mode_ != HtmlMode::kMarkdown) return false;
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

  const HtmlMode mode_;
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

}  // namespace docpipe
