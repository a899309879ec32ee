#pragma once
// The character set of an HTML document, found as a browser finds it (WHATWG Encoding Standard,
// HTML "prescan"), and its conversion to UTF-8 for html.text and html.markdown:
//
// - a byte order mark (UTF-8, UTF-16LE, UTF-16BE) wins;
// - else the first <meta charset="..."> or <meta http-equiv="Content-Type" content="...;
//   charset=..."> within the first 1024 bytes, by its label ("latin1", "sjis", "gb2312", ...);
//   a label docpipe does not know is passed over, as browsers do;
// - else UTF-8 if the bytes are valid UTF-8, windows-1252 if not (what browsers assume for
//   Western pages without a declaration).
//
// Conversion runs in the sandboxed worker, which can no longer load glibc's converter modules
// (no open(), no executable mappings). So every supported converter is opened once before the
// sandbox closes (prepare_html_charsets) and reused.

#include <string>
#include <string_view>

#include "core/result.h"

namespace docpipe {

struct HtmlCharset {
  std::string name;    // the converter's (iconv) name: "UTF-8", "CP1252", "SHIFT_JIS", ...
  std::string label;   // as the document gave it ("iso-8859-1"), or "UTF-8"/"windows-1252"
  std::string source;  // "bom", "meta", "parameter" or "default"
  size_t bom_bytes = 0;
};

// The converter name for an encoding label (case-insensitive, surrounding blanks ignored), or ""
// for a label docpipe does not support.
std::string_view charset_for_label(std::string_view label);

// The document's character set; an error only for a `forced` label docpipe does not know (the
// transform's `charset` parameter, "" for auto).
Result<HtmlCharset> detect_html_charset(std::string_view doc, std::string_view forced = {});

// Opens every supported converter (in a worker, before its sandbox). "" or what failed.
std::string prepare_html_charsets();

// `in` (after its byte order mark) converted from `charset` to UTF-8, appended to `out`. Bytes
// that are invalid in that character set become U+FFFD.
Status convert_to_utf8(std::string_view in, const HtmlCharset& charset, std::string& out);

// Whether `s` is valid UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace docpipe
