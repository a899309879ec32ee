#include "core/transforms/param_reader.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/json_util.h"

namespace docpipe {

using json = nlohmann::json;

namespace {

std::string integer_range(int64_t min, int64_t max) {
  if (max == ParamSchema::kNoMax) return "integer >= " + std::to_string(min);
  return "integer " + std::to_string(min) + ".." + std::to_string(max);
}

std::string quoted_list(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += ", ";
    out += json(item).dump();
  }
  return out;
}

}  // namespace

ParamSchema& ParamSchema::integer(std::string name, int64_t min, int64_t max, int64_t default_value,
                                  std::string description) {
  Rule rule;
  rule.kind = Kind::kInteger;
  rule.min = min;
  rule.max = max;
  rule.integer_default = default_value;
  std::string range = max == kNoMax ? ">= " + std::to_string(min)
                                    : std::to_string(min) + ".." + std::to_string(max);
  add(ParamSpec{std::move(name), "integer", std::to_string(default_value),
                std::move(description) + " (" + range + ")"},
      std::move(rule));
  return *this;
}

ParamSchema& ParamSchema::string(std::string name, std::string default_value,
                                 std::string description) {
  Rule rule;
  rule.kind = Kind::kString;
  std::string default_text = json(default_value).dump();
  rule.string_default = std::move(default_value);
  add(ParamSpec{std::move(name), "string", std::move(default_text), std::move(description)},
      std::move(rule));
  return *this;
}

ParamSchema& ParamSchema::string_choice(std::string name, std::vector<std::string> choices,
                                        std::string default_value, std::string description) {
  Rule rule;
  rule.kind = Kind::kString;
  std::string default_text = json(default_value).dump();
  description += " (one of " + quoted_list(choices) + ")";
  rule.string_default = std::move(default_value);
  rule.choices = std::move(choices);
  add(ParamSpec{std::move(name), "string", std::move(default_text), std::move(description)},
      std::move(rule));
  return *this;
}

ParamSchema& ParamSchema::required_string(std::string name, std::string description) {
  Rule rule;
  rule.kind = Kind::kString;
  rule.required = true;
  // An empty default_value is how ParamSpec says "required".
  add(ParamSpec{std::move(name), "string", "", std::move(description)}, std::move(rule));
  return *this;
}

ParamSchema& ParamSchema::optional_string(std::string name, std::string description) {
  Rule rule;
  rule.kind = Kind::kString;
  add(ParamSpec{std::move(name), "string", "null", std::move(description)}, std::move(rule));
  return *this;
}

ParamSchema& ParamSchema::boolean(std::string name, bool default_value, std::string description) {
  Rule rule;
  rule.kind = Kind::kBoolean;
  rule.boolean_default = default_value;
  add(ParamSpec{std::move(name), "boolean", default_value ? "true" : "false",
                std::move(description)},
      std::move(rule));
  return *this;
}

ParamSchema& ParamSchema::string_array(std::string name, std::vector<std::string> default_value,
                                       std::vector<std::string> choices, std::string description) {
  Rule rule;
  rule.kind = Kind::kStringArray;
  std::string default_text = json(default_value).dump();
  if (!choices.empty()) description += " (any of " + quoted_list(choices) + ")";
  rule.array_default = std::move(default_value);
  rule.choices = std::move(choices);
  add(ParamSpec{std::move(name), "array<string>", std::move(default_text), std::move(description)},
      std::move(rule));
  return *this;
}

void ParamSchema::add(ParamSpec spec, Rule rule) {
  for (const ParamSpec& existing : specs_) {
    if (existing.name == spec.name)
      throw std::logic_error("parameter declared twice: " + spec.name);
  }
  specs_.push_back(std::move(spec));
  rules_.push_back(std::move(rule));
}

const ParamSchema::Rule& ParamSchema::rule(std::string_view name, Kind kind) const {
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (specs_[i].name == name && rules_[i].kind == kind) return rules_[i];
  }
  // A transform reading a parameter it did not declare is a programming error, not bad input.
  throw std::logic_error("parameter not declared with this type: " + std::string(name));
}

ParamReader::ParamReader(const ParamSchema& schema, const json& params, FieldErrors& errors)
    : schema_(schema), params_(params), errors_(errors), errors_at_start_(errors.size()) {
  if (params.is_null()) return;  // no parameters at all: every default applies
  if (!params.is_object()) {
    error("", "expected object, got " + describe_json(params));
    return;
  }
  is_object_ = true;
  for (const auto& [key, value] : params.items()) {
    bool declared = false;
    for (const ParamSpec& spec : schema.specs()) declared = declared || spec.name == key;
    if (!declared) error(key, "unknown parameter");
  }
}

const json* ParamReader::find(std::string_view name) const {
  if (!is_object_) return nullptr;
  auto it = params_.find(name);
  return it == params_.end() ? nullptr : &*it;
}

bool ParamReader::has(std::string_view name) const {
  const json* value = find(name);
  return value != nullptr && !value->is_null();
}

int64_t ParamReader::integer(std::string_view name) {
  const ParamSchema::Rule& rule = schema_.rule(name, ParamSchema::Kind::kInteger);
  const json* value = find(name);
  if (value == nullptr) return rule.integer_default;
  bool in_range = false;
  int64_t v = 0;
  if (value->is_number_unsigned()) {
    uint64_t u = value->get<uint64_t>();
    if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      v = static_cast<int64_t>(u);
      in_range = v >= rule.min && v <= rule.max;
    }
  } else if (value->is_number_integer()) {
    v = value->get<int64_t>();
    in_range = v >= rule.min && v <= rule.max;
  }
  if (!in_range) {
    error(std::string(name),
          "expected " + integer_range(rule.min, rule.max) + ", got " + describe_json(*value));
    return rule.integer_default;
  }
  return v;
}

std::string ParamReader::string(std::string_view name) {
  std::optional<std::string> value = optional_string(name);
  if (value) return std::move(*value);
  return schema_.rule(name, ParamSchema::Kind::kString).string_default;
}

std::optional<std::string> ParamReader::optional_string(std::string_view name) {
  const ParamSchema::Rule& rule = schema_.rule(name, ParamSchema::Kind::kString);
  const json* value = find(name);
  // null, the default `docpipe transforms` lists for an optional string, means "not given".
  if (value == nullptr || (value->is_null() && !rule.required)) {
    if (rule.required) error(std::string(name), "required parameter is missing");
    return std::nullopt;
  }
  if (!value->is_string()) {
    error(std::string(name), "expected string, got " + describe_json(*value));
    return std::nullopt;
  }
  const std::string& s = value->get_ref<const std::string&>();
  if (!rule.choices.empty()) {
    bool allowed = false;
    for (const std::string& choice : rule.choices) allowed = allowed || s == choice;
    if (!allowed) {
      error(std::string(name),
            "expected one of " + quoted_list(rule.choices) + ", got " + describe_json(*value));
      return std::nullopt;
    }
  }
  return s;
}

bool ParamReader::boolean(std::string_view name) {
  const ParamSchema::Rule& rule = schema_.rule(name, ParamSchema::Kind::kBoolean);
  const json* value = find(name);
  if (value == nullptr) return rule.boolean_default;
  if (!value->is_boolean()) {
    error(std::string(name), "expected boolean, got " + describe_json(*value));
    return rule.boolean_default;
  }
  return value->get<bool>();
}

std::vector<std::string> ParamReader::string_array(std::string_view name) {
  const ParamSchema::Rule& rule = schema_.rule(name, ParamSchema::Kind::kStringArray);
  const json* value = find(name);
  if (value == nullptr) return rule.array_default;
  if (!value->is_array()) {
    error(std::string(name), "expected array of strings, got " + describe_json(*value));
    return rule.array_default;
  }
  std::vector<std::string> out;
  bool good = true;
  for (size_t i = 0; i < value->size(); ++i) {
    const json& item = (*value)[i];
    std::string path = std::string(name) + "[" + std::to_string(i) + "]";
    if (!item.is_string()) {
      error(std::move(path), "expected string, got " + describe_json(item));
      good = false;
      continue;
    }
    const std::string& s = item.get_ref<const std::string&>();
    bool allowed = rule.choices.empty();
    for (const std::string& choice : rule.choices) allowed = allowed || s == choice;
    if (!allowed) {
      error(std::move(path),
            "expected one of " + quoted_list(rule.choices) + ", got " + describe_json(item));
      good = false;
      continue;
    }
    out.push_back(s);
  }
  return good ? out : rule.array_default;
}

void ParamReader::error(std::string path, std::string reason) {
  errors_.push_back(FieldError{std::move(path), std::move(reason)});
}

}  // namespace docpipe
