#include "core/transforms/json_format.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/transforms/whole_document.h"

namespace docpipe {
namespace {

using ordered_json = nlohmann::ordered_json;

// nlohmann's DOM builder behind a SAX interface that records the first error instead of throwing
// (the data path does not throw) and stops at kMaxJsonDepth.
class DomBuilder {
 public:
  using number_integer_t = ordered_json::number_integer_t;
  using number_unsigned_t = ordered_json::number_unsigned_t;
  using number_float_t = ordered_json::number_float_t;
  using string_t = ordered_json::string_t;
  using binary_t = ordered_json::binary_t;

  explicit DomBuilder(ordered_json& root) : dom_(root, false) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(number_float_t v, const string_t& s) { return dom_.number_float(v, s); }
  bool string(string_t& v) { return dom_.string(v); }
  bool binary(binary_t& v) { return dom_.binary(v); }
  bool key(string_t& v) { return dom_.key(v); }
  bool start_object(std::size_t n) { return enter() && dom_.start_object(n); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return enter() && dom_.start_array(n); }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
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

  nlohmann::detail::json_sax_dom_parser<ordered_json> dom_;
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
    std::string().swap(text_);
    try {
      // Strings were validated as UTF-8 while parsing, so dump() has nothing left to refuse.
      out.append(doc.dump(format_.indent));
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
