#include "core/transforms/json_scan.h"

#include <cstring>

namespace docpipe::json_scan {
namespace {

unsigned hex_digit(char c) {
  if (c >= '0' && c <= '9') return static_cast<unsigned>(c - '0');
  return static_cast<unsigned>((c | 0x20) - 'a' + 10);
}

unsigned read_hex4(std::string_view t, size_t p) {
  unsigned v = 0;
  for (size_t i = 0; i < 4; ++i) v = v * 16 + hex_digit(t[p + i]);
  return v;
}

void append_utf8(std::string& out, unsigned cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Walks the string at p: runs of unescaped bytes go to emit_raw, escaped characters to emit_cp as
// code points. Returns the string's end.
template <typename EmitRaw, typename EmitCodePoint>
size_t decode_string(std::string_view t, size_t p, EmitRaw&& emit_raw, EmitCodePoint&& emit_cp) {
  ++p;
  while (true) {
    const char c = t[p];
    if (c == '"') return p + 1;
    if (c != '\\') {
      size_t run = p;
      while (t[run] != '"' && t[run] != '\\') ++run;
      emit_raw(t.substr(p, run - p));
      p = run;
      continue;
    }
    const char e = t[p + 1];
    p += 2;
    switch (e) {
      case 'b':
        emit_cp(0x08);
        break;
      case 'f':
        emit_cp(0x0C);
        break;
      case 'n':
        emit_cp(0x0A);
        break;
      case 'r':
        emit_cp(0x0D);
        break;
      case 't':
        emit_cp(0x09);
        break;
      case 'u': {
        unsigned cp = read_hex4(t, p);
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {  // validated: a low surrogate follows
          const unsigned low = read_hex4(t, p + 2);
          p += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        emit_cp(cp);
        break;
      }
      default:
        emit_cp(static_cast<unsigned char>(e));
        break;  // '"', '\\', '/'
    }
  }
}

}  // namespace

size_t string_end(std::string_view t, size_t p) {
  for (++p;; ++p) {
    const char* q = static_cast<const char*>(std::memchr(t.data() + p, '"', t.size() - p));
    p = static_cast<size_t>(q - t.data());
    size_t backslashes = 0;
    while (t[p - 1 - backslashes] == '\\') ++backslashes;
    if (backslashes % 2 == 0) return p + 1;
  }
}

size_t value_end(std::string_view t, size_t p) {
  if (t[p] == '"') return string_end(t, p);
  if (t[p] != '{' && t[p] != '[') return scalar_end(t, p);
  int depth = 0;
  while (true) {
    const char c = t[p];
    if (c == '"') {
      p = string_end(t, p);
      continue;
    }
    if (c == '{' || c == '[') ++depth;
    if ((c == '}' || c == ']') && --depth == 0) return p + 1;
    ++p;
  }
}

size_t member_value(std::string_view t, size_t key) {
  size_t p = skip_ws(t, string_end(t, key));  // at ':'
  return skip_ws(t, p + 1);
}

std::string_view decoded_key(std::string_view t, size_t key, std::string& scratch) {
  const size_t end = string_end(t, key);
  std::string_view raw = t.substr(key + 1, end - key - 2);
  if (raw.find('\\') == std::string_view::npos) return raw;
  scratch.clear();
  decode_string(
      t, key, [&](std::string_view run) { scratch.append(run); },
      [&](unsigned cp) { append_utf8(scratch, cp); });
  return scratch;
}

void write_string(std::string_view t, size_t p, std::string& out) {
  out.push_back('"');
  decode_string(
      t, p, [&](std::string_view run) { out.append(run); },
      [&](unsigned cp) {
        switch (cp) {
          case 0x08:
            out.append("\\b");
            return;
          case 0x09:
            out.append("\\t");
            return;
          case 0x0A:
            out.append("\\n");
            return;
          case 0x0C:
            out.append("\\f");
            return;
          case 0x0D:
            out.append("\\r");
            return;
          case '"':
            out.append("\\\"");
            return;
          case '\\':
            out.append("\\\\");
            return;
          default:
            break;
        }
        if (cp < 0x20) {
          static const char kHex[] = "0123456789abcdef";
          out.append("\\u00");
          out.push_back(kHex[cp >> 4]);
          out.push_back(kHex[cp & 0xF]);
        } else {
          append_utf8(out, cp);
        }
      });
  out.push_back('"');
}

}  // namespace docpipe::json_scan
