#pragma once
// What html.text and html.markdown write for a parsed page (html_text.cc parses it): the walk of
// libxml2's tree, without recursion, and the writers that keep the output's block structure.
//
// - Text: blocks on their own lines, paragraphs and headings separated by a blank line, table
//   rows as tab-separated cells; what a browser does not show is left out.
// - Markdown (GFM): headings, lists, links and images with safe URLs, emphasis, code fences,
//   quotes and tables, with what Markdown would read as syntax escaped; quotes and lists add
//   prefixes for at most 16 levels, tables are padded to at most 64 cells.

#include <string>

typedef struct _xmlNode xmlNode;

namespace docpipe {

enum class HtmlMode { kText, kMarkdown };

// The page below `root` (a document node) as text or Markdown, ending in one newline ("" for a
// page with nothing shown).
std::string render_html(xmlNode* root, HtmlMode mode);

}  // namespace docpipe
