#pragma once
// Helpers for the transform tests: configure a registered transform from JSON and run a document
// through it in chunks of a chosen size.

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/transform.h"

namespace docpipe::test {

inline const TransformInfo& transform_info(std::string_view op) {
  const TransformInfo* info = TransformRegistry::instance().find(op);
  REQUIRE_MESSAGE(info != nullptr, "transform not registered: " << op);
  return *info;
}

// A step configured from `params`; fails the test if the parameters are rejected.
inline std::shared_ptr<const TransformStep> make_step(std::string_view op,
                                                      const nlohmann::json& params) {
  FieldErrors errors;
  std::shared_ptr<const TransformStep> step =
      transform_info(op).configure(params, TransformEnv{}, errors);
  std::string problems;
  for (const FieldError& e : errors) problems += format_field_error(e) + "; ";
  REQUIRE_MESSAGE(errors.empty(), problems);
  REQUIRE(step != nullptr);
  return step;
}

// The errors for `params`; the step must be refused.
inline FieldErrors config_errors(std::string_view op, const nlohmann::json& params) {
  FieldErrors errors;
  std::shared_ptr<const TransformStep> step =
      transform_info(op).configure(params, TransformEnv{}, errors);
  CHECK(step == nullptr);
  return errors;
}

// "path: reason" lines, for exact comparisons with readable failures.
inline std::string errors_text(const FieldErrors& errors) {
  std::string out;
  for (const FieldError& e : errors) out += e.path + ": " + e.reason + "\n";
  return out;
}

// Calls again while the transform has more (see DocumentTransform::has_more).
inline Status drain(DocumentTransform& t, Status st, std::string& out, bool finishing) {
  while (st && t.has_more()) st = finishing ? t.finish(out) : t.update({}, out);
  return st;
}

// Feeds `input` in chunks of `chunk` bytes (0: all at once), with an empty update before each
// chunk, then finishes, draining after every call. Returns the output or the first error.
inline Result<std::string> run_chunked(const TransformStep& step, std::string_view input,
                                       size_t chunk) {
  std::unique_ptr<DocumentTransform> t = step.begin(DocumentContext{"dir/doc.txt", "doc.txt"});
  std::string out;
  if (chunk == 0) chunk = std::max<size_t>(input.size(), 1);
  for (size_t at = 0; at < input.size(); at += chunk) {
    Status st = drain(*t, t->update({}, out), out, false);
    if (!st) return st.error();
    st = drain(*t, t->update(input.substr(at, chunk), out), out, false);
    if (!st) return st.error();
  }
  Status st = drain(*t, t->finish(out), out, true);
  if (!st) return st.error();
  return out;
}

// The message of a result that must be an error.
inline std::string error_message(const Result<std::string>& r) {
  REQUIRE_FALSE(r.has_value());
  return r.error().message;
}

inline std::string run_ok(const TransformStep& step, std::string_view input, size_t chunk = 0) {
  Result<std::string> r = run_chunked(step, input, chunk);
  if (!r) FAIL("transform failed: " << r.error().message);
  return std::move(r).value();
}

}  // namespace docpipe::test
