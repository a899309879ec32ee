#include "core/transforms/json_format.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/transforms/whole_document.h"

namespace docpipe {
namespace {

// How the document is rewritten, in three passes over the text the transform holds anyway:
//  1. nlohmann's SAX parser with a handler that keeps nothing validates it (strict, UTF-8, the
//     depth bound) and gives the same errors and locations as before;
//  2. find_duplicates notes, by text offset, which object members repeat an earlier key;
//  3. Rewriter writes the tokens again with new whitespace, a piece of at most about
//     kMaxCallOutputBytes per call, numbers and literals copied byte for byte.
// No DOM is built: beside the text, memory is 4 bytes per key of the objects open at one time in
// pass 2, a bit per input byte once a duplicate is seen, and the output piece. (Building an
// nlohmann DOM cost about 25 times the document.)

using nlohmann::json;

// Stops at the first error and at kMaxJsonDepth; keeps no value.
class Validator {
 public:
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(number_integer_t) { return true; }
  bool number_unsigned(number_unsigned_t) { return true; }
  bool number_float(number_float_t, const string_t&) { return true; }
  bool string(string_t&) { return true; }
  bool binary(binary_t&) { return true; }
  bool key(string_t&) { return true; }
  bool start_object(std::size_t) { return enter(); }
  bool end_object() { return leave(); }
  bool start_array(std::size_t) { return enter(); }
  bool end_array() { return leave(); }

  template <typename Exception>
  bool parse_error(std::size_t position, const std::string&, const Exception& ex) {
    error_position_ = position;
    error_ = ex.what();
    return false;
  }

  bool too_deep() const { return too_deep_; }
  uint64_t error_position() const { return error_position_; }
  const std::string& error() const { return error_; }

 private:
  bool enter() {
    if (++depth_ <= kMaxJsonDepth) return true;
    too_deep_ = true;
    return false;
  }
  bool leave() {
    --depth_;
    return true;
  }

  int depth_ = 0;
  bool too_deep_ = false;
  uint64_t error_position_ = 0;
  std::string error_;
};

// The offset just past the bracket that opens level kMaxJsonDepth + 1. Only called once the
// parser has stopped there, so everything before it is valid JSON.
uint64_t too_deep_position(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return i + 1;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return text.size();
}

// nlohmann's message without its "[json.exception...] parse error at line L, column C: " head.
std::string error_reason(const std::string& what) {
  size_t at = what.find(", column ");
  if (at != std::string::npos) at = what.find(": ", at);
  if (at != std::string::npos) return what.substr(at + 2);
  at = what.find("] ");
  return at == std::string::npos ? what : what.substr(at + 2);
}

// ---- Scanning text that is known to be valid JSON ----------------------------------------------

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t skip_ws(std::string_view t, size_t p) {
  while (p < t.size() && is_ws(t[p])) ++p;
  return p;
}

// Just past the string whose opening quote is at p.
size_t string_end(std::string_view t, size_t p) {
  for (++p;; ++p) {
    const char* q = static_cast<const char*>(std::memchr(t.data() + p, '"', t.size() - p));
    p = static_cast<size_t>(q - t.data());
    size_t backslashes = 0;
    while (t[p - 1 - backslashes] == '\\') ++backslashes;
    if (backslashes % 2 == 0) return p + 1;
  }
}

// Just past the number or literal starting at p.
size_t scalar_end(std::string_view t, size_t p) {
  while (p < t.size()) {
    const char c = t[p];
    if (is_ws(c) || c == ',' || c == ']' || c == '}' || c == ':') break;
    ++p;
  }
  return p;
}

// Just past the value starting at p.
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

// The value of the member whose key starts at p.
size_t member_value(std::string_view t, size_t key) {
  size_t p = skip_ws(t, string_end(t, key));  // at ':'
  return skip_ws(t, p + 1);
}

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

// The key's characters, decoded: the raw text when it holds no escape.
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

// ---- Pass 2: duplicate keys ---------------------------------------------------------------------

// What the rewrite does differently where a key repeats: "for a duplicate key the last value
// wins, at the place of the first" (the behaviour of nlohmann's ordered_json, kept).
struct Duplicates {
  std::vector<bool> dropped_key;  // by offset: this member repeats an earlier key; left out
  // first value's offset -> the last duplicate's value's offset, sorted by the first (each first
  // value appears once: the key's duplicates are all found when its object closes).
  std::vector<std::pair<uint32_t, uint32_t>> replaced;

  bool is_dropped(size_t key) const { return !dropped_key.empty() && dropped_key[key]; }
  size_t replacement(size_t value) const {
    auto it = std::lower_bound(replaced.begin(), replaced.end(),
                               std::pair<uint32_t, uint32_t>{static_cast<uint32_t>(value), 0});
    return it != replaced.end() && it->first == value ? it->second : value;
  }
};

// Orders key offsets by decoded key, then by position. Sorting (rather than hashing) keeps an
// object of n keys at O(n log n) whatever the keys: no hash flooding.
class KeyOrder {
 public:
  explicit KeyOrder(std::string_view t) : t_(t) {}
  bool operator()(uint32_t a, uint32_t b) {
    const int c = compare(a, b);
    return c != 0 ? c < 0 : a < b;
  }
  bool same(uint32_t a, uint32_t b) { return compare(a, b) == 0; }

 private:
  int compare(uint32_t a, uint32_t b) {
    return decoded_key(t_, a, scratch_a_).compare(decoded_key(t_, b, scratch_b_));
  }
  std::string_view t_;
  std::string scratch_a_, scratch_b_;
};

// Records the duplicates among one object's keys (their offsets, in any order).
void note_duplicates(std::string_view t, std::vector<uint32_t>& keys, Duplicates& d) {
  if (keys.size() < 2) return;
  KeyOrder order(t);
  std::sort(keys.begin(), keys.end(), std::ref(order));
  for (size_t i = 0; i < keys.size();) {
    size_t j = i + 1;
    while (j < keys.size() && order.same(keys[i], keys[j])) ++j;
    if (j - i > 1) {
      if (d.dropped_key.empty()) d.dropped_key.resize(t.size());
      for (size_t k = i + 1; k < j; ++k) d.dropped_key[keys[k]] = true;
      d.replaced.emplace_back(static_cast<uint32_t>(member_value(t, keys[i])),
                              static_cast<uint32_t>(member_value(t, keys[j - 1])));
    }
    i = j;
  }
}

Duplicates find_duplicates(std::string_view t) {
  Duplicates d;
  struct Frame {
    bool object = false;
    bool expect_key = false;
    std::vector<uint32_t> keys;  // offsets of the object's keys so far: 4 bytes each
  };
  std::vector<Frame> stack;  // reused from one container to the next
  size_t depth = 0;
  for (size_t p = skip_ws(t, 0); p < t.size(); p = skip_ws(t, p)) {
    const char c = t[p];
    if (c == '{' || c == '[') {
      if (depth == stack.size()) stack.emplace_back();
      Frame& f = stack[depth++];
      f.object = c == '{';
      f.expect_key = f.object;
      f.keys.clear();
      ++p;
    } else if (c == '}' || c == ']') {
      Frame& f = stack[--depth];
      if (f.object) note_duplicates(t, f.keys, d);
      if (f.keys.capacity() > 1024) std::vector<uint32_t>().swap(f.keys);  // a wide one's memory
      ++p;
    } else if (c == ',') {
      if (stack[depth - 1].object) stack[depth - 1].expect_key = true;
      ++p;
    } else if (c == ':') {
      ++p;
    } else if (c == '"') {
      if (depth > 0 && stack[depth - 1].expect_key) {
        stack[depth - 1].expect_key = false;
        stack[depth - 1].keys.push_back(static_cast<uint32_t>(p));
      }
      p = string_end(t, p);
    } else {
      p = scalar_end(t, p);
    }
  }
  // One entry per duplicated key of each object; looked up by the first value's offset.
  std::sort(d.replaced.begin(), d.replaced.end());
  return d;
}

// ---- Pass 3: writing ----------------------------------------------------------------------------

// Writes a string as nlohmann's serializer does (ensure_ascii off): UTF-8 as is, escapes only for
// '"', '\\' and control characters (\b \t \n \f \r, else \u00xx).
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

class Rewriter {
 public:
  Rewriter(std::string_view text, Duplicates dups, int indent)
      : t_(text), dups_(std::move(dups)), indent_(indent) {}

  bool done() const { return done_; }
  uint64_t written() const { return written_; }

  // Appends the next piece of output, about `piece` bytes (one token may make it longer).
  void write_some(std::string& out, size_t piece) {
    const size_t start = out.size();
    while (!done_ && out.size() - start < piece) step(out);
    written_ += out.size() - start;
  }

 private:
  struct Frame {
    bool object;
    size_t pos;      // where to read on in this container
    size_t members;  // written so far
    size_t resume;   // for a value written in place of another: where its parent reads on
  };

  void step(std::string& out) {
    if (stack_.empty()) {
      if (started_) {
        done_ = true;
        return;
      }
      started_ = true;
      const size_t root = skip_ws(t_, 0);
      write_value(root, root, out);
      return;
    }
    Frame& f = stack_.back();
    size_t p = skip_ws(t_, f.pos);
    if (t_[p] == ',') p = skip_ws(t_, p + 1);
    if (t_[p] == '}' || t_[p] == ']') {
      if (f.members > 0) newline(out, stack_.size() - 1);
      out.push_back(t_[p]);
      const size_t resume = f.resume == std::string_view::npos ? p + 1 : f.resume;
      stack_.pop_back();
      if (!stack_.empty()) stack_.back().pos = resume;
      return;
    }
    if (f.object && dups_.is_dropped(p)) {
      f.pos = value_end(t_, member_value(t_, p));
      return;
    }
    if (f.members > 0) out.push_back(',');
    ++f.members;
    newline(out, stack_.size());
    size_t value = p;
    if (f.object) {
      write_string(t_, p, out);
      out.append(indent_ >= 0 ? ": " : ":");
      value = member_value(t_, p);
    }
    const size_t source = f.object ? dups_.replacement(value) : value;
    const size_t after = write_value(value, source, out);
    // `f` may have moved when a container was pushed; its position is set when that closes.
    if (after != std::string_view::npos) stack_[stack_.size() - 1].pos = after;
  }

  // Writes the value at `source` in place of the one at `at` (the same but for a duplicate key).
  // Returns where the parent reads on, or npos when a container was opened (the parent's
  // position is set when it closes).
  size_t write_value(size_t at, size_t source, std::string& out) {
    const char c = t_[source];
    if (c == '{' || c == '[') {
      out.push_back(c);
      stack_.push_back(Frame{c == '{', source + 1, 0,
                             source == at ? std::string_view::npos : value_end(t_, at)});
      return std::string_view::npos;
    }
    size_t end;
    if (c == '"') {
      write_string(t_, source, out);
      end = string_end(t_, source);
    } else {
      end = scalar_end(t_, source);
      out.append(t_.substr(source, end - source));  // numbers and literals exactly as written
    }
    return source == at ? end : value_end(t_, at);
  }

  void newline(std::string& out, size_t depth) {
    if (indent_ < 0) return;
    out.push_back('\n');
    out.append(depth * static_cast<size_t>(indent_), ' ');
  }

  std::string_view t_;
  Duplicates dups_;
  int indent_;
  std::vector<Frame> stack_;
  bool started_ = false;
  bool done_ = false;
  uint64_t written_ = 0;
};

constexpr uint64_t kMaxOutputRatio = 16;
constexpr uint64_t kOutputAllowance = 1u << 20;
// Offsets are kept in 32 bits (half the memory of the duplicate bookkeeping).
constexpr uint64_t kMaxDocumentBytes = std::numeric_limits<uint32_t>::max() - 1;

class JsonFormatTransform : public DocumentTransform {
 public:
  explicit JsonFormatTransform(const JsonFormat& format)
      : format_(format), limit_(format.op, std::min(format.max_input_bytes, kMaxDocumentBytes)) {}

  Status update(std::string_view in, std::string&) override {
    Status st = limit_.add(in.size());
    if (!st) return st;
    text_.append(in);
    return ok();
  }

  Status finish(std::string& out) override {
    if (!rewriter_) {
      Status st = start();
      if (!st) return st;
    }
    const size_t start = out.size();
    rewriter_->write_some(out, kMaxCallOutputBytes);
    // Indentation can multiply a deeply nested document's size (a 1 KiB "[[[...]]]" at indent 8
    // is 2 MiB), so the output is capped relative to the input.
    if (rewriter_->written() > max_output_) {
      out.resize(start);
      rewriter_.reset();
      std::string().swap(text_);
      return make_error(ErrorCode::kTooLarge,
                        std::string(format_.op) + ": output would exceed " +
                            std::to_string(max_output_) + " bytes (" +
                            std::to_string(kMaxOutputRatio) +
                            " times the input): the document nests too deeply for this indent");
    }
    if (rewriter_->done()) {
      if (format_.final_newline) out.push_back('\n');
      rewriter_.reset();
      std::string().swap(text_);
    }
    return ok();
  }

  bool has_more() const override { return rewriter_ != nullptr; }

 private:
  Status start() {
    // nlohmann's lexer takes a NUL byte for the end of the input, so "[1]\0]" would validate as
    // "[1]" while the rewriter reads on past it. JSON has no raw NUL anywhere (not even in a
    // string), so one is refused here, by its position.
    if (const size_t nul = text_.find('\0'); nul != std::string::npos) {
      std::string location = json_error_location(text_, nul + 1);  // 1-based, as nlohmann counts
      std::string().swap(text_);
      return make_error(ErrorCode::kCorruptInput, std::string(format_.op) + ": invalid JSON at " +
                                                      location + ": a NUL byte");
    }
    Validator validator;
    const bool valid = json::sax_parse(text_.data(), text_.data() + text_.size(), &validator,
                                       json::input_format_t::json, /*strict=*/true);
    if (!valid) {
      uint64_t position =
          validator.too_deep() ? too_deep_position(text_) : validator.error_position();
      std::string reason = validator.too_deep()
                               ? "nesting deeper than " + std::to_string(kMaxJsonDepth) + " levels"
                               : error_reason(validator.error());
      std::string location = json_error_location(text_, position);
      std::string().swap(text_);
      return make_error(ErrorCode::kCorruptInput,
                        std::string(format_.op) + ": invalid JSON at " + location + ": " + reason);
    }
    max_output_ = kMaxOutputRatio * text_.size() + kOutputAllowance;
    rewriter_ = std::make_unique<Rewriter>(text_, find_duplicates(text_), format_.indent);
    return ok();
  }

  const JsonFormat format_;
  InputLimit limit_;
  std::string text_;
  std::unique_ptr<Rewriter> rewriter_;  // set while output remains to be written
  uint64_t max_output_ = 0;
};

class JsonFormatStep : public TransformStep {
 public:
  explicit JsonFormatStep(const JsonFormat& format) : format_(format) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext&) const override {
    return std::make_unique<JsonFormatTransform>(format_);
  }

 private:
  JsonFormat format_;
};

}  // namespace

std::shared_ptr<const TransformStep> make_json_format_step(const JsonFormat& format) {
  return std::make_shared<JsonFormatStep>(format);
}

std::string json_error_location(std::string_view text, uint64_t position) {
  const std::string_view read = text.substr(0, std::min<uint64_t>(position, text.size()));
  const uint64_t lines = static_cast<uint64_t>(std::count(read.begin(), read.end(), '\n'));
  const size_t last_newline = read.rfind('\n');
  const uint64_t column =
      last_newline == std::string_view::npos ? position : position - (last_newline + 1);
  return "line " + std::to_string(lines + 1) + ", column " + std::to_string(column);
}

}  // namespace docpipe
