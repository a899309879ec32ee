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

const ParamSchema& test_schema() {
  static const ParamSchema s = ParamSchema()
                                   .integer("level", 1, 9, 6, "how hard")
                                   .integer("limit", 1, ParamSchema::kNoMax, 100, "how much")
                                   .string("name", "none", "what to call it")
                                   .string_array("kinds", {"a"}, {"a", "b"}, "which kinds")
                                   .string_array("free", {}, {}, "anything");
  return s;
}

}  // namespace

TEST_CASE("param_reader: absent parameters take the schema defaults") {
  FieldErrors errors;
  json params = json::object();
  ParamReader reader(test_schema(), params, errors);
  CHECK(reader.integer("level") == 6);
  CHECK(reader.integer("limit") == 100);
  CHECK(reader.string("name") == "none");
  CHECK(reader.string_array("kinds") == std::vector<std::string>{"a"});
  CHECK(reader.string_array("free").empty());
  CHECK(reader.ok());
  CHECK(errors.empty());
}

TEST_CASE("param_reader: null parameters are the same as none") {
  FieldErrors errors;
  json params;
  ParamReader reader(test_schema(), params, errors);
  CHECK(reader.integer("level") == 6);
  CHECK(reader.ok());
}

TEST_CASE("param_reader: valid values are returned as given") {
  FieldErrors errors;
  json params = {
      {"level", 9}, {"limit", 1}, {"name", "x"}, {"kinds", {"b", "a"}}, {"free", {"anything", ""}}};
  ParamReader reader(test_schema(), params, errors);
  CHECK(reader.integer("level") == 9);
  CHECK(reader.integer("limit") == 1);
  CHECK(reader.string("name") == "x");
  CHECK(reader.string_array("kinds") == std::vector<std::string>{"b", "a"});
  CHECK(reader.string_array("free") == std::vector<std::string>{"anything", ""});
  CHECK(reader.ok());
}

TEST_CASE("param_reader: wrong types and ranges name the parameter and what was expected") {
  FieldErrors errors;
  json params = {
      {"level", "x"}, {"limit", 0}, {"name", 5}, {"kinds", {"a", "c", 3}}, {"free", "one"}};
  ParamReader reader(test_schema(), params, errors);
  CHECK(reader.integer("level") == 6);
  CHECK(reader.integer("limit") == 100);
  CHECK(reader.string("name") == "none");
  CHECK(reader.string_array("kinds") == std::vector<std::string>{"a"});
  CHECK(reader.string_array("free").empty());
  CHECK_FALSE(reader.ok());
  CHECK(errors_text(errors) ==
        "level: expected integer 1..9, got \"x\"\n"
        "limit: expected integer >= 1, got 0\n"
        "name: expected string, got 5\n"
        "kinds[1]: expected one of \"a\", \"b\", got \"c\"\n"
        "kinds[2]: expected string, got 3\n"
        "free: expected array of strings, got \"one\"\n");
}

TEST_CASE("param_reader: fractions, booleans and huge numbers are not integers") {
  FieldErrors errors;
  json params = json::parse(R"({"level": 6.0, "limit": 18446744073709551615})");
  ParamReader reader(test_schema(), params, errors);
  reader.integer("level");
  reader.integer("limit");
  CHECK(errors_text(errors) ==
        "level: expected integer 1..9, got 6.0\n"
        "limit: expected integer >= 1, got 18446744073709551615\n");
  FieldErrors errors2;
  json params2 = {{"level", true}};
  ParamReader reader2(test_schema(), params2, errors2);
  reader2.integer("level");
  CHECK(errors_text(errors2) == "level: expected integer 1..9, got true\n");
}

TEST_CASE("param_reader: every undeclared parameter is reported as unknown") {
  FieldErrors errors;
  json params = {{"lvl", 3}, {"level", 2}, {"zzz", nullptr}};
  ParamReader reader(test_schema(), params, errors);
  CHECK(reader.integer("level") == 2);
  CHECK_FALSE(reader.ok());
  CHECK(errors_text(errors) == "lvl: unknown parameter\nzzz: unknown parameter\n");
}

TEST_CASE("param_reader: parameters that are not an object are refused") {
  FieldErrors errors;
  json params = json::array({1, 2});
  ParamReader reader(test_schema(), params, errors);
  CHECK(reader.integer("level") == 6);
  CHECK(errors_text(errors) == ": expected object, got array\n");
}

TEST_CASE("param_reader: errors from the transform count against ok()") {
  FieldErrors errors{{"other", "already there"}};
  json params = json::object();
  ParamReader reader(test_schema(), params, errors);
  CHECK(reader.ok());  // errors from before the reader do not count
  reader.error("name", "is taken");
  CHECK_FALSE(reader.ok());
  CHECK(errors.size() == 2);
}

TEST_CASE("param_reader: long strings are shortened in messages") {
  FieldErrors errors;
  json params = {{"level", std::string(200, 'x')}};
  ParamReader reader(test_schema(), params, errors);
  reader.integer("level");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].reason == "expected integer 1..9, got \"" + std::string(59, 'x') + "...\"");
}

TEST_CASE("param_reader: the schema lists each parameter with type, default and range") {
  const auto& specs = test_schema().specs();
  REQUIRE(specs.size() == 5);
  CHECK(specs[0].name == "level");
  CHECK(specs[0].type == "integer");
  CHECK(specs[0].default_value == "6");
  CHECK(specs[0].description == "how hard (1..9)");
  CHECK(specs[1].description == "how much (>= 1)");
  CHECK(specs[2].type == "string");
  CHECK(specs[2].default_value == "\"none\"");
  CHECK(specs[3].type == "array<string>");
  CHECK(specs[3].default_value == "[\"a\"]");
  CHECK(specs[3].description == "which kinds (any of \"a\", \"b\")");
  CHECK(specs[4].default_value == "[]");
}
