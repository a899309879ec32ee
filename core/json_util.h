#pragma once
// Strict reading of JSON documents (job files, the daemon config): malformed text is reported
// with line and column, duplicate keys and unknown keys are errors, and every type or range
// problem names its JSON path and what was expected ("limits.max_attempts: expected integer
// 1..100, got \"3\""). Nothing here throws.

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/field_error.h"

namespace docpipe {

// Deeper documents are refused: copying or printing a JSON value recurses once per level.
inline constexpr int kMaxJsonDepth = 64;

// The deepest nesting of arrays and objects in `text` ("1" is 0, "[{}]" is 2), found by one scan
// that skips strings (escapes included) and builds nothing, so that hostile input can be refused
// before a parser spends memory on it. Stops early and returns `limit + 1` as soon as the
// nesting passes `limit`. Malformed text gives some number; the parser reports what is wrong.
size_t json_max_depth(std::string_view text, size_t limit);

// The same scan, also telling where the nesting passed `limit`: the offset just past the bracket
// that opened level `limit + 1` (npos if it never did). json.pretty and json.minify report that
// place as the error's line and column.
struct JsonDepthScan {
  size_t deepest = 0;  // at most limit + 1
  size_t past_limit_at = std::string_view::npos;
};
JsonDepthScan scan_json_depth(std::string_view text, size_t limit);

// "malformed JSON: nested deeper than 64 levels".
std::string json_too_deep_message();

// Parses `text` into `out`. Malformed text (or nesting deeper than kMaxJsonDepth, refused by
// json_max_depth() before anything is built) appends one error ("malformed JSON at line 3,
// column 14: ...") and returns false. A duplicate key appends
// "PATH: duplicate key" but still returns true (the last value wins), so that validation can go
// on and report everything else too.
bool parse_json_text(std::string_view text, nlohmann::json& out, FieldErrors& errors);

// "parent.key" (or "key" at the root) and "parent[index]".
std::string json_child_path(std::string_view parent, std::string_view key);
std::string json_index_path(std::string_view parent, size_t index);

// A value for "got ..." in messages: scalars as JSON text (long strings shortened), containers by
// their type only.
std::string describe_json(const nlohmann::json& value);

// "integer", "integer >= 1" or "integer 1..100", for messages.
std::string describe_integer_range(int64_t min, int64_t max);

// Typed checks of one value at `path`; on a problem they append an error and return nullopt.
std::optional<int64_t> read_integer(const nlohmann::json& value, const std::string& path,
                                    int64_t min, int64_t max, FieldErrors& errors);
std::optional<std::string> read_string(const nlohmann::json& value, const std::string& path,
                                       bool allow_empty, FieldErrors& errors);
std::optional<std::string> read_choice(const nlohmann::json& value, const std::string& path,
                                       std::initializer_list<std::string_view> choices,
                                       FieldErrors& errors);
// An array of strings; with !allow_empty an empty array is an error. Every bad element is
// reported ("include[2]: expected string, got 3").
std::optional<std::vector<std::string>> read_string_array(const nlohmann::json& value,
                                                          const std::string& path, bool allow_empty,
                                                          FieldErrors& errors);

// Reads the members of one JSON object. Each key read through get()/require() (or the typed
// helpers) becomes known; reject_unknown_keys() then reports every other key by its path. When the
// value is not an object, the constructor reports that and every read returns nothing.
class JsonObjectReader {
 public:
  static constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  static constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

  JsonObjectReader(const nlohmann::json& value, std::string path, FieldErrors& errors);

  bool is_object() const { return object_ != nullptr; }
  const std::string& path() const { return path_; }
  std::string path_of(std::string_view key) const { return json_child_path(path_, key); }
  void error(std::string_view key, std::string reason);

  // The member, or nullptr if absent (require(): also an error "required key is missing").
  const nlohmann::json* get(std::string_view key);
  const nlohmann::json* require(std::string_view key);

  // Absent keys give nullopt without an error, so callers keep their defaults.
  std::optional<int64_t> integer(std::string_view key, int64_t min, int64_t max);
  std::optional<std::string> string(std::string_view key, bool allow_empty);
  std::optional<std::string> choice(std::string_view key,
                                    std::initializer_list<std::string_view> choices);
  std::optional<std::vector<std::string>> string_array(std::string_view key, bool allow_empty);

  void reject_unknown_keys();

 private:
  const nlohmann::json* object_ = nullptr;
  std::string path_;
  FieldErrors& errors_;
  std::vector<std::string> known_;
};

}  // namespace docpipe
