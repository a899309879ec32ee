#pragma once
// Typed transform parameters, declared once per transform. A ParamSchema yields both the
// ParamSpec list that `docpipe transforms` prints and the rules ParamReader enforces when a job is
// validated, so what is listed and what is accepted cannot drift apart.

#include <cstdint>
#include <limits>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/field_error.h"
#include "core/transform.h"

namespace docpipe {

// The parameters one transform accepts: name, type, allowed values and default. Built at static
// initialisation time next to the transform's TransformRegistration.
class ParamSchema {
 public:
  static constexpr int64_t kNoMax = std::numeric_limits<int64_t>::max();

  // An integer in min..max (max == kNoMax means no upper bound).
  ParamSchema& integer(std::string name, int64_t min, int64_t max, int64_t default_value,
                       std::string description);
  ParamSchema& string(std::string name, std::string default_value, std::string description);
  // A string that must be one of `choices`.
  ParamSchema& string_choice(std::string name, std::vector<std::string> choices,
                             std::string default_value, std::string description);
  // A string the job must give; listed without a default (`docpipe transforms` says required).
  ParamSchema& required_string(std::string name, std::string description);
  // A string the job may leave out; listed with default null, read with optional_string().
  ParamSchema& optional_string(std::string name, std::string description);
  ParamSchema& boolean(std::string name, bool default_value, std::string description);
  // An array of strings; with `choices`, every element must be one of them.
  ParamSchema& string_array(std::string name, std::vector<std::string> default_value,
                            std::vector<std::string> choices, std::string description);

  // For TransformInfo::params; the description ends with the allowed range or values.
  const std::vector<ParamSpec>& specs() const { return specs_; }

 private:
  friend class ParamReader;
  enum class Kind { kInteger, kString, kStringArray, kBoolean };
  struct Rule {
    Kind kind = Kind::kInteger;
    bool required = false;
    int64_t min = 0;
    int64_t max = 0;
    int64_t integer_default = 0;
    bool boolean_default = false;
    std::string string_default;
    std::vector<std::string> array_default;
    std::vector<std::string> choices;
  };
  const Rule& rule(std::string_view name, Kind kind) const;
  void add(ParamSpec spec, Rule rule);

  std::vector<ParamSpec> specs_;
  std::vector<Rule> rules_;  // parallel to specs_
};

// Reads one transform's parameters (the transform object without "op") against its schema.
// Problems are appended to `errors` with paths relative to the transform object ("level",
// "patterns[1]"); a parameter the schema does not declare is reported as "unknown parameter".
// Readers return the default when the parameter is absent or invalid, so that validation goes on
// and reports every problem; check ok() before using the values. `schema` and `params` must
// outlive the reader (it is meant to live within one TransformInfo::configure call).
class ParamReader {
 public:
  ParamReader(const ParamSchema& schema, const nlohmann::json& params, FieldErrors& errors);
  ParamReader(const ParamSchema& schema, nlohmann::json&& params, FieldErrors& errors) = delete;

  // `name` must be declared in the schema with the matching type.
  int64_t integer(std::string_view name);
  // A required string that is missing is an error ("required parameter is missing").
  std::string string(std::string_view name);
  // nullopt when absent (or invalid); for parameters declared with optional_string().
  std::optional<std::string> optional_string(std::string_view name);
  std::vector<std::string> string_array(std::string_view name);
  bool boolean(std::string_view name);

  // True if the job gives the parameter a value (anything but null: an optional string's listed
  // default is null, so null is accepted as "not given").
  bool has(std::string_view name) const;

  // A problem found by the transform itself (e.g. a regex that does not compile).
  void error(std::string path, std::string reason);

  // True if nothing was wrong with the parameters so far.
  bool ok() const { return errors_.size() == errors_at_start_; }

 private:
  const nlohmann::json* find(std::string_view name) const;

  const ParamSchema& schema_;
  const nlohmann::json& params_;
  FieldErrors& errors_;
  size_t errors_at_start_;
  bool is_object_ = false;
};

}  // namespace docpipe
