// The parameter kinds added for the second set of transforms: booleans, strings from a fixed
// list, required strings and optional strings.

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "core/transforms/param_reader.h"
#include "tests/core/transform_test_util.h"

using docpipe::FieldErrors;
using docpipe::ParamReader;
using docpipe::ParamSchema;
using docpipe::test::errors_text;
using json = nlohmann::json;

namespace {

const ParamSchema& kinds_schema() {
  static const ParamSchema s = ParamSchema()
                                   .boolean("strict", true, "be strict")
                                   .boolean("loud", false, "be loud")
                                   .string_choice("mode", {"fail", "replace"}, "fail", "on error")
                                   .required_string("command", "what to run")
                                   .optional_string("file", "where to read");
  return s;
}

}  // namespace

TEST_CASE("param kinds: absent booleans, choices and optional strings take their defaults") {
  FieldErrors errors;
  json params = {{"command", "tr"}};
  ParamReader reader(kinds_schema(), params, errors);
  CHECK(reader.boolean("strict") == true);
  CHECK(reader.boolean("loud") == false);
  CHECK(reader.string("mode") == "fail");
  CHECK(reader.string("command") == "tr");
  CHECK_FALSE(reader.optional_string("file").has_value());
  CHECK_FALSE(reader.has("file"));
  CHECK(reader.has("command"));
  CHECK(reader.ok());
  CHECK(errors.empty());
}

TEST_CASE("param kinds: given values are returned as given") {
  FieldErrors errors;
  json params = {
      {"strict", false}, {"loud", true}, {"mode", "replace"}, {"command", ""}, {"file", "/t"}};
  ParamReader reader(kinds_schema(), params, errors);
  CHECK(reader.boolean("strict") == false);
  CHECK(reader.boolean("loud") == true);
  CHECK(reader.string("mode") == "replace");
  CHECK(reader.string("command") == "");
  CHECK(reader.optional_string("file") == std::optional<std::string>("/t"));
  CHECK(reader.ok());
}

TEST_CASE("param kinds: null for an optional string is its listed default, not given") {
  FieldErrors errors;
  json params = {{"command", "tr"}, {"file", nullptr}};
  ParamReader reader(kinds_schema(), params, errors);
  CHECK_FALSE(reader.optional_string("file").has_value());
  CHECK_FALSE(reader.has("file"));
  CHECK(reader.ok());
  // A required string must be a string.
  FieldErrors required_errors;
  json null_command = {{"command", nullptr}};
  ParamReader required(kinds_schema(), null_command, required_errors);
  CHECK(required.string("command") == "");
  CHECK(errors_text(required_errors) == "command: expected string, got null\n");
}

TEST_CASE("param kinds: wrong values name the parameter and what was expected") {
  FieldErrors errors;
  json params = {{"strict", 1}, {"loud", "yes"}, {"mode", "ignore"}, {"file", 7}};
  ParamReader reader(kinds_schema(), params, errors);
  CHECK(reader.boolean("strict") == true);
  CHECK(reader.boolean("loud") == false);
  CHECK(reader.string("mode") == "fail");
  CHECK(reader.string("command") == "");
  CHECK_FALSE(reader.optional_string("file").has_value());
  CHECK_FALSE(reader.ok());
  CHECK(errors_text(errors) ==
        "strict: expected boolean, got 1\n"
        "loud: expected boolean, got \"yes\"\n"
        "mode: expected one of \"fail\", \"replace\", got \"ignore\"\n"
        "command: required parameter is missing\n"
        "file: expected string, got 7\n");
}

TEST_CASE("param kinds: the schema lists booleans, choices, required and optional strings") {
  const auto& specs = kinds_schema().specs();
  REQUIRE(specs.size() == 5);
  CHECK(specs[0].type == "boolean");
  CHECK(specs[0].default_value == "true");
  CHECK(specs[1].default_value == "false");
  CHECK(specs[2].type == "string");
  CHECK(specs[2].default_value == "\"fail\"");
  CHECK(specs[2].description == "on error (one of \"fail\", \"replace\")");
  CHECK(specs[3].type == "string");
  CHECK(specs[3].default_value == "");  // required
  CHECK(specs[4].type == "string");
  CHECK(specs[4].default_value == "null");
  // Every default is JSON text that `docpipe transforms --json` can embed.
  for (const auto& spec : specs) {
    if (!spec.default_value.empty()) CHECK(json::accept(spec.default_value));
  }
}
