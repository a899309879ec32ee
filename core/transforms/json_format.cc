#include "core/transforms/json_format.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/json_util.h"
#include "core/transforms/json_duplicates.h"
#include "core/transforms/json_scan.h"
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

using json_scan::member_value;
using json_scan::scalar_end;
using json_scan::skip_ws;
using json_scan::string_end;
using json_scan::value_end;
using json_scan::write_string;
using nlohmann::json;

// Stops at the first error and at kMaxJsonFormatDepth; keeps no value.
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
    if (++depth_ <= kMaxJsonFormatDepth) return true;
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

// nlohmann's message without its "[json.exception...] parse error at line L, column C: " head.
std::string error_reason(const std::string& what) {
  size_t at = what.find(", column ");
  if (at != std::string::npos) at = what.find(": ", at);
  if (at != std::string::npos) return what.substr(at + 2);
  at = what.find("] ");
  return at == std::string::npos ? what : what.substr(at + 2);
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
      return make_error(ErrorCode::kCorruptInput,
                        std::string(format_.op) + ": invalid JSON at " + location + ": a NUL byte");
    }
    Validator validator;
    const bool valid = json::sax_parse(text_.data(), text_.data() + text_.size(), &validator,
                                       json::input_format_t::json, /*strict=*/true);
    if (!valid) {
      // Everything before the bracket that went too deep is valid JSON, so the depth scan
      // finds that bracket.
      uint64_t position =
          validator.too_deep()
              ? std::min(scan_json_depth(text_, kMaxJsonFormatDepth).past_limit_at, text_.size())
              : validator.error_position();
      std::string reason =
          validator.too_deep()
              ? "nesting deeper than " + std::to_string(kMaxJsonFormatDepth) + " levels"
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
