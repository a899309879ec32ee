#pragma once
// Reading JSON text that is already known to be valid (json.pretty and json.minify validate it
// first): offsets in, offsets out, nothing built. Each function takes the text and the offset of a
// token and returns the offset just past it; none checks bounds beyond what valid JSON implies.

#include <cstddef>
#include <string>
#include <string_view>

namespace docpipe::json_scan {

// The three small ones are inline: the passes call them once per token.
inline bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Past any whitespace from p.
inline size_t skip_ws(std::string_view t, size_t p) {
  while (p < t.size() && is_ws(t[p])) ++p;
  return p;
}

// Just past the number or literal starting at p.
inline size_t scalar_end(std::string_view t, size_t p) {
  while (p < t.size()) {
    const char c = t[p];
    if (is_ws(c) || c == ',' || c == ']' || c == '}' || c == ':') break;
    ++p;
  }
  return p;
}

// Just past the string whose opening quote is at p.
size_t string_end(std::string_view t, size_t p);
// Just past the value (any kind) starting at p.
size_t value_end(std::string_view t, size_t p);
// The value of the member whose key starts at `key`.
size_t member_value(std::string_view t, size_t key);
// The key's characters, decoded: the raw text when it holds no escape, else built in `scratch`.
std::string_view decoded_key(std::string_view t, size_t key, std::string& scratch);
// Writes the string at p as nlohmann's serializer does (ensure_ascii off): UTF-8 as is, escapes
// only for '"', '\\' and control characters (\b \t \n \f \r, else \u00xx).
void write_string(std::string_view t, size_t p, std::string& out);

}  // namespace docpipe::json_scan
