#pragma once
// Whole-document transforms (markdown.html, json.*) hold a document in memory before they can
// write anything, so each has a `max_input_bytes` parameter and refuses a larger document with a
// clear error instead of letting one huge input take the daemon's memory.

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"
#include "core/transforms/param_reader.h"

namespace docpipe {

inline constexpr int64_t kDefaultMaxInputBytes = int64_t{64} << 20;

// `schema` plus `max_input_bytes`, the parameter every whole-document transform has.
inline ParamSchema add_max_input_bytes(ParamSchema schema) {
  schema.integer("max_input_bytes", 1, ParamSchema::kNoMax, kDefaultMaxInputBytes,
                 "largest document accepted (default 64 MiB); the whole document is held in "
                 "memory, so a larger one fails instead");
  return schema;
}

// Counts the bytes a whole-document transform has taken in and refuses those past the limit.
class InputLimit {
 public:
  InputLimit(std::string_view op, uint64_t max_bytes) : op_(op), max_bytes_(max_bytes) {}

  Status add(size_t n) {
    seen_ += n;
    if (seen_ <= max_bytes_) return ok();
    return make_error(ErrorCode::kTooLarge,
                      std::string(op_) + ": document exceeds max_input_bytes (" +
                          std::to_string(max_bytes_) + " bytes); " + std::string(op_) +
                          " needs the whole document in memory, raise max_input_bytes to allow "
                          "larger ones");
  }

 private:
  std::string_view op_;  // a string literal: the op name
  uint64_t max_bytes_;
  uint64_t seen_ = 0;
};

// The input of a transform that needs the whole document (html.text, pdf.text): taken in chunk
// by chunk, refused past max_input_bytes, then held whole for finish().
class WholeInput {
 public:
  WholeInput(std::string_view op, uint64_t max_bytes) : limit_(op, max_bytes) {}

  Status add(std::string_view in) {
    Status st = limit_.add(in.size());
    if (!st) return st;
    data_.append(in);
    return ok();
  }
  std::string& data() { return data_; }
  // Frees the document once it has been parsed.
  void release() { std::string().swap(data_); }

 private:
  InputLimit limit_;
  std::string data_;
};

}  // namespace docpipe
