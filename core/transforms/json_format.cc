#include "core/transforms/json_format.h"

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <vector>

#include "core/transforms/whole_document.h"

namespace docpipe {
namespace {

using ordered_json = nlohmann::ordered_json;

// Builds the ordered_json document from SAX events, recording the first error instead of
// throwing (the data path does not throw) and stopping at kMaxJsonDepth. nlohmann's own builder
// finds each key by a linear search of its object, which makes an object of n keys cost n^2;
// here an object past kIndexedKeys keys gets a hash index, so a wide object costs n.
class DomBuilder {
 public:
  using number_integer_t = ordered_json::number_integer_t;
  using number_unsigned_t = ordered_json::number_unsigned_t;
  using number_float_t = ordered_json::number_float_t;
  using string_t = ordered_json::string_t;
  using binary_t = ordered_json::binary_t;
  using object_t = ordered_json::object_t;
  using array_t = ordered_json::array_t;

  explicit DomBuilder(ordered_json& root) : root_(root) {}

  bool null() { return put(nullptr); }
  bool boolean(bool v) { return put(v); }
  bool number_integer(number_integer_t v) { return put(v); }
  bool number_unsigned(number_unsigned_t v) { return put(v); }
  bool number_float(number_float_t v, const string_t&) { return put(v); }
  bool string(string_t& v) { return put(std::move(v)); }
  bool binary(binary_t& v) { return put(ordered_json::binary(std::move(v))); }

  // A duplicate key keeps the place of its first occurrence; its last value wins.
  bool key(string_t& k) {
    Frame& f = stack_.back();
    Members& obj = members(*f.value);
    if (f.index.empty() && obj.size() < kIndexedKeys) {
      for (size_t i = 0; i < obj.size(); ++i) {
        if (obj[i].first == k) {
          f.pending = i;
          return true;
        }
      }
    } else {
      if (f.index.empty()) {
        for (size_t i = 0; i < obj.size(); ++i) f.index.emplace(obj[i].first, i);
      }
      auto [it, inserted] = f.index.try_emplace(k, obj.size());
      if (!inserted) {
        f.pending = it->second;
        return true;
      }
    }
    f.pending = obj.size();
    obj.emplace_back(std::move(k), nullptr);
    return true;
  }

  bool start_object(std::size_t) {
    if (!enter()) return false;
    stack_.push_back(Frame{place(ordered_json::object()), {}, 0});
    return true;
  }
  bool end_object() { return leave(); }
  bool start_array(std::size_t) {
    if (!enter()) return false;
    stack_.push_back(Frame{place(ordered_json::array()), {}, 0});
    return true;
  }
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
  static constexpr size_t kIndexedKeys = 32;

  // An ordered_json object is a vector of members; used as one, positions and appends are O(1).
  using Members = object_t::Container;
  static Members& members(ordered_json& object) {
    return static_cast<Members&>(object.get_ref<object_t&>());
  }

  struct Frame {
    ordered_json* value;                            // the open object or array
    std::unordered_map<std::string, size_t> index;  // key -> position, for wide objects
    size_t pending;                                 // the object member the next value goes to
  };

  // Where a new value goes: the root, the next array element, or the member of the last key.
  ordered_json* place(ordered_json&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Frame& f = stack_.back();
    if (f.value->is_array()) {
      array_t& arr = f.value->get_ref<array_t&>();
      arr.push_back(std::move(v));
      return &arr.back();
    }
    ordered_json& member = members(*f.value)[f.pending].second;
    member = std::move(v);
    return &member;
  }

  bool put(ordered_json&& v) {
    place(std::move(v));
    return true;
  }

  bool enter() {
    if (++depth_ <= kMaxJsonDepth) return true;
    too_deep_ = true;
    return false;
  }

  bool leave() {
    stack_.pop_back();
    --depth_;
    return true;
  }

  ordered_json& root_;
  std::vector<Frame> stack_;
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

// The serializer's output, appended to a string that may not grow past `limit`.
class CappedOutput : public nlohmann::detail::output_adapter_protocol<char> {
 public:
  struct Full {};
  CappedOutput(std::string& out, size_t limit) : out_(out), limit_(limit) {}
  void write_character(char c) override {
    if (out_.size() >= limit_) throw Full{};
    out_.push_back(c);
  }
  void write_characters(const char* s, std::size_t n) override {
    if (n > limit_ - std::min(limit_, out_.size())) throw Full{};
    out_.append(s, n);
  }

 private:
  std::string& out_;
  size_t limit_;
};

constexpr uint64_t kMaxOutputRatio = 16;
constexpr uint64_t kOutputAllowance = 1u << 20;

class JsonFormatTransform : public DocumentTransform {
 public:
  explicit JsonFormatTransform(const JsonFormat& format)
      : format_(format), limit_(format.op, format.max_input_bytes) {}

  Status update(std::string_view in, std::string&) override {
    Status st = limit_.add(in.size());
    if (!st) return st;
    text_.append(in);
    return ok();
  }

  Status finish(std::string& out) override {
    ordered_json doc;
    DomBuilder builder(doc);
    const bool parsed = ordered_json::sax_parse(text_.data(), text_.data() + text_.size(), &builder,
                                                nlohmann::json::input_format_t::json,
                                                /*strict=*/true);
    if (!parsed) {
      uint64_t position = builder.too_deep() ? too_deep_position(text_) : builder.error_position();
      std::string reason = builder.too_deep()
                               ? "nesting deeper than " + std::to_string(kMaxJsonDepth) + " levels"
                               : error_reason(builder.error());
      return make_error(ErrorCode::kCorruptInput, std::string(format_.op) + ": invalid JSON at " +
                                                      json_error_location(text_, position) + ": " +
                                                      reason);
    }
    // Indentation can multiply a deeply nested document's size (a 1 KiB "[[[...]]]" at indent 8
    // is 2 MiB), so the output is capped relative to the input.
    const uint64_t max_output = kMaxOutputRatio * text_.size() + kOutputAllowance;
    std::string().swap(text_);
    const size_t start = out.size();
    try {
      // Strings were validated as UTF-8 while parsing, so the serializer has nothing to refuse.
      nlohmann::detail::serializer<ordered_json> serializer(
          std::make_shared<CappedOutput>(out, start + max_output), ' ');
      serializer.dump(doc, format_.indent >= 0, /*ensure_ascii=*/false,
                      static_cast<unsigned int>(std::max(format_.indent, 0)));
    } catch (const CappedOutput::Full&) {
      out.resize(start);
      return make_error(ErrorCode::kTooLarge,
                        std::string(format_.op) + ": output would exceed " +
                            std::to_string(max_output) + " bytes (" +
                            std::to_string(kMaxOutputRatio) +
                            " times the input): the document nests too deeply for this indent");
    } catch (const std::exception& e) {
      return make_error(ErrorCode::kInternal,
                        std::string(format_.op) + ": cannot write JSON: " + e.what());
    }
    if (format_.final_newline) out.push_back('\n');
    return ok();
  }

 private:
  const JsonFormat format_;
  InputLimit limit_;
  std::string text_;
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
