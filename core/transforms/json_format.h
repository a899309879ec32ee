#pragma once
// The shared part of json.pretty and json.minify: both hold the whole document, validate it
// (nlohmann's strict parser, no DOM) and write its tokens out again with new whitespace, in pieces
// of about kMaxCallOutputBytes. Key order is kept; for a duplicate key the last value wins, at the
// place of the first; numbers and literals keep their text byte for byte; strings are re-escaped
// as nlohmann writes them. Memory beyond the document: 4 bytes per key of each open object, a
// bit per byte once a key repeats, and the output piece.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/transform.h"

namespace docpipe {

struct JsonFormat {
  std::string_view op;  // "json.pretty" or "json.minify": a string literal
  int indent = -1;      // spaces per level; -1: everything on one line
  bool final_newline = false;
  uint64_t max_input_bytes = 0;
};

// Documents nested deeper than this are refused: serialising is recursive, and no real document
// comes near it.
// (core/json_util.h's kMaxJsonDepth is the bound for job files and requests.)
inline constexpr int kMaxJsonFormatDepth = 512;

std::shared_ptr<const TransformStep> make_json_format_step(const JsonFormat& format);

// For tests: "line L, column C" of byte `position` as nlohmann counts them (position is the number
// of characters read when the error was found, 1-based; a newline ends its line).
std::string json_error_location(std::string_view text, uint64_t position);

}  // namespace docpipe
