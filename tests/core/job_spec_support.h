#pragma once
// Helpers shared by the job file tests (job_spec_test.cpp, job_spec_errors_test.cpp,
// job_inputs_test.cpp).

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/job_spec.h"

namespace docpipe::test {

inline const JobParseOptions kOptions{"from-file", "/base"};

// The errors as "path: reason" lines.
inline std::vector<std::string> lines(const FieldErrors& errors) {
  std::vector<std::string> out;
  for (const FieldError& e : errors) out.push_back(format_field_error(e));
  return out;
}

// Parses `text`, expecting success with no error.
inline JobSpec parse_ok(const std::string& text, const JobParseOptions& options = kOptions) {
  FieldErrors errors;
  std::optional<JobSpec> spec = parse_job(text, options, errors);
  CHECK(lines(errors) == std::vector<std::string>{});
  REQUIRE(spec.has_value());
  return std::move(*spec);
}

// Parses `text`, expecting failure; returns the errors as "path: reason" lines.
inline std::vector<std::string> parse_errors(const std::string& text,
                                             const JobParseOptions& options = kOptions) {
  FieldErrors errors;
  std::optional<JobSpec> spec = parse_job(text, options, errors);
  CHECK_FALSE(spec.has_value());
  return lines(errors);
}

inline std::vector<std::string> doc_errors(const nlohmann::json& doc) {
  return parse_errors(doc.dump());
}

inline nlohmann::json minimal_job() {
  return {{"input", {{"dir", "/in"}}}, {"output", {{"dir", "/out"}}}};
}

// "a, b, c": every registered op, as "unknown transform" errors list them.
inline std::string known_transforms() {
  std::string names;
  for (const TransformInfo* info : TransformRegistry::instance().all()) {
    names += (names.empty() ? "" : ", ") + info->op;
  }
  return names;
}

}  // namespace docpipe::test
