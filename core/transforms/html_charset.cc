#include "core/transforms/html_charset.h"

#include <iconv.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

namespace docpipe {
namespace {

struct Encoding {
  const char* iconv_name;
  std::vector<const char*> labels;  // lower case, as the WHATWG Encoding Standard lists them
};

// The WHATWG encodings docpipe supports, each decoded by the glibc converter that matches the
// standard's mapping (windows-31j for shift_jis, GB18030 for gbk, Big5-HKSCS for big5, UHC for
// euc-kr). Latin-1 and ASCII labels mean windows-1252, as in every browser.
const std::vector<Encoding>& encodings() {
  static const std::vector<Encoding> table = {
      {"UTF-8",
       {"utf-8", "utf8", "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8"}},
      {"UTF-16LE",
       {"utf-16le", "utf-16", "unicode", "ucs-2", "csunicode", "iso-10646-ucs-2", "unicodefeff"}},
      {"UTF-16BE", {"utf-16be", "unicodefffe"}},
      {"CP1252",
       {"windows-1252", "cp1252", "x-cp1252", "iso-8859-1", "iso8859-1", "iso88591", "iso_8859-1",
        "iso_8859-1:1987", "iso-ir-100", "l1", "latin1", "ibm819", "cp819", "csisolatin1", "ascii",
        "us-ascii", "ansi_x3.4-1968", "iso646-us", "csascii"}},
      {"CP1250", {"windows-1250", "cp1250", "x-cp1250"}},
      {"CP1251", {"windows-1251", "cp1251", "x-cp1251"}},
      {"CP1253", {"windows-1253", "cp1253", "x-cp1253"}},
      {"CP1254",
       {"windows-1254", "cp1254", "x-cp1254", "iso-8859-9", "iso8859-9", "iso88599", "iso_8859-9",
        "iso-ir-148", "l5", "latin5", "csisolatin5"}},
      {"CP1255", {"windows-1255", "cp1255", "x-cp1255"}},
      {"CP1256", {"windows-1256", "cp1256", "x-cp1256"}},
      {"CP1257", {"windows-1257", "cp1257", "x-cp1257"}},
      {"CP1258", {"windows-1258", "cp1258", "x-cp1258"}},
      {"CP874", {"windows-874", "dos-874", "iso-8859-11", "iso8859-11", "iso885911", "tis-620"}},
      {"ISO-8859-2",
       {"iso-8859-2", "iso8859-2", "iso88592", "iso_8859-2", "l2", "latin2", "csisolatin2",
        "iso-ir-101"}},
      {"ISO-8859-3",
       {"iso-8859-3", "iso8859-3", "iso88593", "iso_8859-3", "l3", "latin3", "csisolatin3",
        "iso-ir-109"}},
      {"ISO-8859-4",
       {"iso-8859-4", "iso8859-4", "iso88594", "iso_8859-4", "l4", "latin4", "csisolatin4",
        "iso-ir-110"}},
      {"ISO-8859-5",
       {"iso-8859-5", "iso8859-5", "iso88595", "iso_8859-5", "cyrillic", "csisolatincyrillic",
        "iso-ir-144"}},
      {"ISO-8859-6",
       {"iso-8859-6", "iso8859-6", "iso88596", "iso_8859-6", "arabic", "csisolatinarabic",
        "iso-ir-127", "ecma-114", "asmo-708"}},
      {"ISO-8859-7",
       {"iso-8859-7", "iso8859-7", "iso88597", "iso_8859-7", "greek", "greek8", "csisolatingreek",
        "iso-ir-126", "ecma-118", "elot_928"}},
      {"ISO-8859-8",
       {"iso-8859-8", "iso8859-8", "iso88598", "iso_8859-8", "hebrew", "csisolatinhebrew",
        "iso-ir-138", "visual", "iso-8859-8-i", "logical", "csiso88598i"}},
      {"ISO-8859-10",
       {"iso-8859-10", "iso8859-10", "iso885910", "l6", "latin6", "csisolatin6", "iso-ir-157"}},
      {"ISO-8859-13", {"iso-8859-13", "iso8859-13", "iso885913"}},
      {"ISO-8859-14", {"iso-8859-14", "iso8859-14", "iso885914"}},
      {"ISO-8859-15",
       {"iso-8859-15", "iso8859-15", "iso885915", "iso_8859-15", "l9", "csisolatin9"}},
      {"ISO-8859-16", {"iso-8859-16"}},
      {"KOI8-R", {"koi8-r", "koi8_r", "koi8", "koi", "cskoi8r"}},
      {"KOI8-U", {"koi8-u", "koi8-ru"}},
      {"IBM866", {"ibm866", "866", "cp866", "csibm866"}},
      {"MACINTOSH", {"macintosh", "mac", "x-mac-roman", "csmacintosh"}},
      {"MAC-CYRILLIC", {"x-mac-cyrillic", "x-mac-ukrainian"}},
      {"CP932",
       {"shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "ms932", "windows-31j",
        "csshiftjis"}},
      {"EUC-JP", {"euc-jp", "x-euc-jp", "cseucpkdfmtjapanese"}},
      {"ISO-2022-JP", {"iso-2022-jp", "csiso2022jp"}},
      {"GB18030",
       {"gb18030", "gbk", "gb2312", "chinese", "x-gbk", "csgb2312", "gb_2312", "gb_2312-80",
        "iso-ir-58", "csiso58gb231280"}},
      {"BIG5-HKSCS", {"big5", "big5-hkscs", "cn-big5", "x-x-big5", "csbig5"}},
      {"CP949",
       {"euc-kr", "korean", "ks_c_5601-1987", "ks_c_5601-1989", "ksc5601", "ksc_5601",
        "windows-949", "cseuckr", "csksc56011987", "iso-ir-149"}},
  };
  return table;
}

const std::map<std::string, const char*, std::less<>>& label_index() {
  static const auto index = [] {
    std::map<std::string, const char*, std::less<>> m;
    for (const Encoding& e : encodings()) {
      for (const char* label : e.labels) m.emplace(label, e.iconv_name);
    }
    return m;
  }();
  return index;
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// Position of `needle` (lower case) in `hay` from `from`, ignoring ASCII case; npos if none.
size_t find_nocase(std::string_view hay, std::string_view needle, size_t from) {
  if (needle.size() > hay.size()) return std::string_view::npos;
  for (size_t i = from; i + needle.size() <= hay.size(); ++i) {
    size_t k = 0;
    while (k < needle.size() && lower(hay[i + k]) == needle[k]) ++k;
    if (k == needle.size()) return i;
  }
  return std::string_view::npos;
}

// The value after "charset" [blanks] "=" [blanks] in a meta tag's text: quoted or up to a blank,
// ';', quote or '>'.
std::string_view charset_value(std::string_view tag) {
  for (size_t at = find_nocase(tag, "charset", 0); at != std::string_view::npos;
       at = find_nocase(tag, "charset", at + 1)) {
    size_t i = at + 7;
    while (i < tag.size() && is_blank(tag[i])) ++i;
    if (i >= tag.size() || tag[i] != '=') continue;
    ++i;
    while (i < tag.size() && is_blank(tag[i])) ++i;
    if (i >= tag.size()) return {};
    if (tag[i] == '"' || tag[i] == '\'') {
      const char quote = tag[i];
      const size_t end = tag.find(quote, i + 1);
      if (end == std::string_view::npos) return {};
      return tag.substr(i + 1, end - i - 1);
    }
    size_t end = i;
    while (end < tag.size() && !is_blank(tag[end]) && tag[end] != ';' && tag[end] != '"' &&
           tag[end] != '\'' && tag[end] != '>' && tag[end] != '/') {
      ++end;
    }
    return tag.substr(i, end - i);
  }
  return {};
}

// The value of a `charset` attribute of the tag (outside any quoted value), or "".
std::string_view charset_attribute(std::string_view tag) {
  char quote = 0;
  for (size_t i = 1; i < tag.size(); ++i) {
    const char c = tag[i];
    if (quote != 0) {
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '"' || c == '\'') {
      quote = c;
      continue;
    }
    if (is_blank(tag[i - 1]) && find_nocase(tag.substr(i, 7), "charset", 0) == 0) {
      size_t j = i + 7;
      while (j < tag.size() && is_blank(tag[j])) ++j;
      if (j < tag.size() && tag[j] == '=') return charset_value(tag.substr(i));
    }
  }
  return {};
}

// The first supported charset a <meta> tag in `head` declares, or nullopt. Comments are
// skipped, so a commented-out declaration does not count.
std::optional<std::string_view> meta_charset(std::string_view head) {
  size_t at = 0;
  while (at < head.size()) {
    const size_t lt = head.find('<', at);
    if (lt == std::string_view::npos) return std::nullopt;
    if (head.substr(lt, 4) == "<!--") {
      const size_t end = head.find("-->", lt + 4);
      if (end == std::string_view::npos) return std::nullopt;
      at = end + 3;
      continue;
    }
    const size_t gt = head.find('>', lt);
    const std::string_view tag =
        head.substr(lt, gt == std::string_view::npos ? std::string_view::npos : gt - lt);
    at = gt == std::string_view::npos ? head.size() : gt + 1;
    if (tag.size() < 6 || find_nocase(tag.substr(0, 6), "<meta", 0) != 0 ||
        !(is_blank(tag[5]) || tag[5] == '/')) {
      continue;
    }
    // <meta charset=...> (an attribute of its own), or <meta http-equiv="Content-Type"
    // content="...; charset=...">; not a "charset=" in any other attribute's text. A label
    // docpipe does not know is passed over, as browsers do.
    std::string_view value = charset_attribute(tag);
    if (value.empty() && find_nocase(tag, "http-equiv", 0) != std::string_view::npos) {
      value = charset_value(tag);
    }
    if (!value.empty() && !charset_for_label(value).empty()) return value;
  }
  return std::nullopt;
}

// The converters, opened once and kept: iconv_open cannot load a module inside the sandbox.
struct Converter {
  iconv_t cd = reinterpret_cast<iconv_t>(-1);
  std::mutex mu;  // iconv_t keeps state; one document at a time
};

std::map<std::string, Converter, std::less<>>& converters() {
  static auto* table = [] {
    auto* m = new std::map<std::string, Converter, std::less<>>;
    for (const Encoding& e : encodings()) (*m)[e.iconv_name];
    return m;
  }();
  return *table;
}

std::mutex& open_mutex() {
  static std::mutex mu;
  return mu;
}

// Opens `c` for `name` unless it is open. Outside a worker this may load a module now.
bool ensure_open(const std::string& name, Converter& c) {
  std::lock_guard<std::mutex> lock(open_mutex());
  if (c.cd != reinterpret_cast<iconv_t>(-1)) return true;
  c.cd = ::iconv_open("UTF-8", name.c_str());
  return c.cd != reinterpret_cast<iconv_t>(-1);
}

void append_replacement(std::string& out) { out += "\xEF\xBF\xBD"; }

}  // namespace

std::string_view charset_for_label(std::string_view label) {
  std::string key(trim_blanks(label));
  for (char& c : key) c = lower(c);
  auto it = label_index().find(key);
  return it == label_index().end() ? std::string_view{} : std::string_view(it->second);
}

bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

Result<HtmlCharset> detect_html_charset(std::string_view doc, std::string_view forced) {
  HtmlCharset cs;
  if (doc.starts_with("\xEF\xBB\xBF")) {
    cs = {"UTF-8", "UTF-8", "bom", 3};
    return cs;
  }
  if (doc.starts_with("\xFF\xFE")) {
    cs = {"UTF-16LE", "UTF-16LE", "bom", 2};
    return cs;
  }
  if (doc.starts_with("\xFE\xFF")) {
    cs = {"UTF-16BE", "UTF-16BE", "bom", 2};
    return cs;
  }
  std::string_view label;
  if (!trim_blanks(forced).empty()) {
    label = forced;
    cs.source = "parameter";
  } else if (std::optional<std::string_view> meta = meta_charset(doc.substr(0, 1024))) {
    label = *meta;
    cs.source = "meta";
  }
  if (!label.empty()) {
    std::string_view name = charset_for_label(label);
    if (name.empty()) {
      return make_error(ErrorCode::kInvalidArgument,
                        "the document declares character set \"" + std::string(label) + "\" (" +
                            cs.source +
                            "), which docpipe does not support; give the transform's charset "
                            "parameter to read it as another");
    }
    // A page served as UTF-16 that still says so in ASCII cannot be right: browsers read it as
    // UTF-8 then.
    if (cs.source == "meta" && name.starts_with("UTF-16")) name = "UTF-8";
    cs.name = std::string(name);
    cs.label = std::string(trim_blanks(label));
    return cs;
  }
  cs.source = "default";
  if (is_valid_utf8(doc)) {
    cs.name = cs.label = "UTF-8";
  } else {
    cs.name = "CP1252";
    cs.label = "windows-1252";
  }
  return cs;
}

std::string prepare_html_charsets() {
  for (auto& [name, c] : converters()) {
    if (!ensure_open(name, c)) {
      return "cannot open the " + name + " converter: " + std::strerror(errno) +
             " (is glibc's gconv installed?)";
    }
  }
  return "";
}

Status convert_to_utf8(std::string_view in, const HtmlCharset& charset, std::string& out) {
  in.remove_prefix(std::min(charset.bom_bytes, in.size()));
  if (charset.name == "UTF-8") {
    if (is_valid_utf8(in)) {
      out.append(in);
      return ok();
    }
  }
  auto it = converters().find(charset.name);
  if (it == converters().end() || !ensure_open(it->first, it->second)) {
    return make_error(ErrorCode::kInternal,
                      "no converter for character set " + charset.name + " in this worker");
  }
  Converter& c = it->second;
  std::lock_guard<std::mutex> lock(c.mu);
  ::iconv(c.cd, nullptr, nullptr, nullptr, nullptr);  // the initial shift state
  char* src = const_cast<char*>(in.data());
  size_t src_left = in.size();
  char buf[16384];
  while (src_left > 0) {
    char* dst = buf;
    size_t dst_left = sizeof buf;
    const size_t r = ::iconv(c.cd, &src, &src_left, &dst, &dst_left);
    out.append(buf, static_cast<size_t>(dst - buf));
    if (r != static_cast<size_t>(-1)) continue;
    if (errno == E2BIG) continue;
    // EILSEQ (a byte that means nothing in this set) or EINVAL (a sequence cut off at the end):
    // one U+FFFD, then on after the byte.
    append_replacement(out);
    ++src;
    --src_left;
    ::iconv(c.cd, nullptr, nullptr, nullptr, nullptr);
  }
  // Flush a stateful converter's pending output (ISO-2022-JP back to ASCII).
  char* dst = buf;
  size_t dst_left = sizeof buf;
  ::iconv(c.cd, nullptr, nullptr, &dst, &dst_left);
  out.append(buf, static_cast<size_t>(dst - buf));
  return ok();
}

}  // namespace docpipe
