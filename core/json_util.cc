#include "core/json_util.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

namespace docpipe {
namespace {

using nlohmann::json;

// Follows the parser's events to know the JSON path of each key, so that a duplicate key (which
// nlohmann::json silently resolves to the last value) can be reported where it is.
class KeyTracker {
 public:
  bool on_event(int depth, json::parse_event_t event, const json& parsed) {
    if (depth > kMaxJsonDepth) too_deep_ = true;
    if (too_deep_) return true;
    switch (event) {
      case json::parse_event_t::object_start:
        stack_.push_back(Frame{true, {}, {}, 0});
        break;
      case json::parse_event_t::array_start:
        stack_.push_back(Frame{false, {}, {}, 0});
        break;
      case json::parse_event_t::key: {
        Frame& top = stack_.back();
        top.key = parsed.get<std::string>();
        if (!top.keys.insert(top.key).second) duplicates_.push_back({path(), "duplicate key"});
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        stack_.pop_back();
        element_done();
        break;
      case json::parse_event_t::value:
        element_done();
        break;
    }
    return true;
  }

  bool too_deep() const { return too_deep_; }
  FieldErrors& duplicates() { return duplicates_; }

 private:
  struct Frame {
    bool object;
    std::set<std::string> keys;
    std::string key;
    size_t index;
  };

  void element_done() {
    if (!stack_.empty() && !stack_.back().object) ++stack_.back().index;
  }

  std::string path() const {
    std::string p;
    for (const Frame& f : stack_) {
      p = f.object ? json_child_path(p, f.key) : json_index_path(p, f.index);
    }
    return p;
  }

  std::vector<Frame> stack_;
  FieldErrors duplicates_;
  bool too_deep_ = false;
};

// nlohmann reports the 1-based offset of the byte it stopped at; line and column follow from the
// text itself. Its own message repeats the position after "column N: ", so only the cause is kept.
std::string describe_parse_error(std::string_view text, const json::parse_error& e) {
  size_t offset = std::min<size_t>(e.byte > 0 ? e.byte - 1 : 0, text.size());
  std::string_view before = text.substr(0, offset);
  size_t line = 1 + std::count(before.begin(), before.end(), '\n');
  size_t last_newline = before.rfind('\n');
  size_t column = last_newline == std::string_view::npos ? offset + 1 : offset - last_newline;

  std::string what = e.what();
  size_t col = what.find("column ");
  size_t colon = col == std::string::npos ? what.find("] ") : what.find(": ", col);
  std::string cause = colon == std::string::npos ? what : what.substr(colon + 2);
  // The cause may quote the offending bytes ("last read: ..."), which need not be valid UTF-8 or
  // printable; error files and logs must stay clean JSON text.
  for (char& c : cause) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) c = '?';
  }
  return "malformed JSON at line " + std::to_string(line) + ", column " + std::to_string(column) +
         ": " + cause;
}

}  // namespace

size_t json_max_depth(std::string_view text, size_t limit) {
  return scan_json_depth(text, limit).deepest;
}

JsonDepthScan scan_json_depth(std::string_view text, size_t limit) {
  size_t depth = 0;
  size_t deepest = 0;
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
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > deepest) {
          deepest = depth;
          if (deepest > limit) return {limit + 1, i + 1};
        }
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return {deepest, std::string_view::npos};
}

std::string json_too_deep_message() {
  return "malformed JSON: nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
}

bool parse_json_text(std::string_view text, json& out, FieldErrors& errors) {
  // Checked before parsing: the parser itself would build (and the callback see) every level.
  if (json_max_depth(text, kMaxJsonDepth) > static_cast<size_t>(kMaxJsonDepth)) {
    out = nullptr;
    errors.push_back({"", json_too_deep_message()});
    return false;
  }
  KeyTracker tracker;
  json::parser_callback_t callback = [&tracker](int depth, json::parse_event_t event,
                                                json& parsed) {
    return tracker.on_event(depth, event, parsed);
  };
  try {
    out = json::parse(text.begin(), text.end(), callback);
  } catch (const json::parse_error& e) {
    out = nullptr;
    errors.push_back({"", describe_parse_error(text, e)});
    return false;
  } catch (const json::exception& e) {
    out = nullptr;
    errors.push_back({"", std::string("malformed JSON: ") + e.what()});
    return false;
  }
  if (tracker.too_deep()) {
    out = nullptr;
    errors.push_back({"", json_too_deep_message()});
    return false;
  }
  for (FieldError& e : tracker.duplicates()) errors.push_back(std::move(e));
  return true;
}

std::string json_child_path(std::string_view parent, std::string_view key) {
  std::string p(parent);
  if (!p.empty()) p += '.';
  p += key;
  return p;
}

std::string json_index_path(std::string_view parent, size_t index) {
  return std::string(parent) + "[" + std::to_string(index) + "]";
}

std::string describe_json(const json& value) {
  constexpr size_t kMaxShown = 64;
  switch (value.type()) {
    case json::value_t::object:
      return "object";
    case json::value_t::array:
      return "array";
    case json::value_t::string: {
      // ensure_ascii keeps the text printable and lets it be cut anywhere.
      std::string s = value.dump(-1, ' ', true);
      if (s.size() > kMaxShown) s = s.substr(0, kMaxShown - 4) + "...\"";
      return s;
    }
    default:
      return value.dump();
  }
}

std::string describe_integer_range(int64_t min, int64_t max) {
  if (min == JsonObjectReader::kMin && max == JsonObjectReader::kMax) return "integer";
  if (max == JsonObjectReader::kMax) return "integer >= " + std::to_string(min);
  if (min == JsonObjectReader::kMin) return "integer <= " + std::to_string(max);
  return "integer " + std::to_string(min) + ".." + std::to_string(max);
}

std::optional<int64_t> read_integer(const json& value, const std::string& path, int64_t min,
                                    int64_t max, FieldErrors& errors) {
  bool in_range = false;
  int64_t v = 0;
  if (value.is_number_unsigned()) {
    uint64_t u = value.get<uint64_t>();
    if (u <= static_cast<uint64_t>(JsonObjectReader::kMax)) {
      v = static_cast<int64_t>(u);
      in_range = v >= min && v <= max;
    }
  } else if (value.is_number_integer()) {
    v = value.get<int64_t>();
    in_range = v >= min && v <= max;
  }
  if (!in_range) {
    errors.push_back(
        {path, "expected " + describe_integer_range(min, max) + ", got " + describe_json(value)});
    return std::nullopt;
  }
  return v;
}

std::optional<std::string> read_string(const json& value, const std::string& path, bool allow_empty,
                                       FieldErrors& errors) {
  if (!value.is_string()) {
    errors.push_back({path, "expected string, got " + describe_json(value)});
    return std::nullopt;
  }
  std::string s = value.get<std::string>();
  if (s.empty() && !allow_empty) {
    errors.push_back({path, "expected a non-empty string"});
    return std::nullopt;
  }
  return s;
}

std::optional<std::string> read_choice(const json& value, const std::string& path,
                                       std::initializer_list<std::string_view> choices,
                                       FieldErrors& errors) {
  if (value.is_string()) {
    const std::string& s = value.get_ref<const std::string&>();
    for (std::string_view c : choices) {
      if (s == c) return s;
    }
  }
  std::string expected;
  for (std::string_view c : choices) {
    expected += expected.empty() ? "expected one of \"" : ", \"";
    expected += c;
    expected += '"';
  }
  errors.push_back({path, expected + ", got " + describe_json(value)});
  return std::nullopt;
}

std::optional<std::vector<std::string>> read_string_array(const json& value,
                                                          const std::string& path, bool allow_empty,
                                                          FieldErrors& errors) {
  if (!value.is_array()) {
    errors.push_back({path, "expected array of strings, got " + describe_json(value)});
    return std::nullopt;
  }
  if (value.empty() && !allow_empty) {
    errors.push_back({path, "expected a non-empty array of strings"});
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (size_t i = 0; i < value.size(); ++i) {
    const json& item = value[i];
    if (!item.is_string()) {
      errors.push_back({json_index_path(path, i), "expected string, got " + describe_json(item)});
      ok = false;
      continue;
    }
    out.push_back(item.get<std::string>());
  }
  if (!ok) return std::nullopt;
  return out;
}

JsonObjectReader::JsonObjectReader(const json& value, std::string path, FieldErrors& errors)
    : path_(std::move(path)), errors_(errors) {
  if (value.is_object()) {
    object_ = &value;
  } else {
    errors_.push_back({path_, "expected object, got " + describe_json(value)});
  }
}

void JsonObjectReader::error(std::string_view key, std::string reason) {
  errors_.push_back({path_of(key), std::move(reason)});
}

const json* JsonObjectReader::get(std::string_view key) {
  if (object_ == nullptr) return nullptr;
  known_.emplace_back(key);
  auto it = object_->find(key);
  return it == object_->end() ? nullptr : &*it;
}

const json* JsonObjectReader::require(std::string_view key) {
  if (object_ == nullptr) return nullptr;
  const json* v = get(key);
  if (v == nullptr) error(key, "required key is missing");
  return v;
}

std::optional<int64_t> JsonObjectReader::integer(std::string_view key, int64_t min, int64_t max) {
  const json* v = get(key);
  if (v == nullptr) return std::nullopt;
  return read_integer(*v, path_of(key), min, max, errors_);
}

std::optional<std::string> JsonObjectReader::string(std::string_view key, bool allow_empty) {
  const json* v = get(key);
  if (v == nullptr) return std::nullopt;
  return read_string(*v, path_of(key), allow_empty, errors_);
}

std::optional<std::string> JsonObjectReader::choice(
    std::string_view key, std::initializer_list<std::string_view> choices) {
  const json* v = get(key);
  if (v == nullptr) return std::nullopt;
  return read_choice(*v, path_of(key), choices, errors_);
}

std::optional<std::vector<std::string>> JsonObjectReader::string_array(std::string_view key,
                                                                       bool allow_empty) {
  const json* v = get(key);
  if (v == nullptr) return std::nullopt;
  return read_string_array(*v, path_of(key), allow_empty, errors_);
}

void JsonObjectReader::reject_unknown_keys() {
  if (object_ == nullptr) return;
  for (auto it = object_->begin(); it != object_->end(); ++it) {
    if (std::find(known_.begin(), known_.end(), it.key()) == known_.end()) {
      error(it.key(), "unknown key");
    }
  }
}

}  // namespace docpipe
