// How a job file's problems are reported (core/job_spec.h parse_job): malformed JSON with line
// and column, unknown and duplicate keys, types and ranges, each by JSON path, and every problem
// at once. The test transforms "jobspec.test.*" are registered in job_spec_test.cpp.

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/job_spec.h"
#include "tests/core/job_spec_support.h"

using docpipe::JobParseOptions;
using docpipe::test::doc_errors;
using docpipe::test::known_transforms;
using docpipe::test::minimal_job;
using docpipe::test::parse_errors;
using nlohmann::json;

TEST_CASE("job spec: malformed JSON gives one error with line and column") {
  CHECK(
      parse_errors("{\n  \"id\": \"a\",\n  \"input\": ,\n}") ==
      std::vector<std::string>{"malformed JSON at line 3, column 12: syntax error while "
                               "parsing value - unexpected ','; expected '[', '{', or a literal"});
  CHECK(
      parse_errors("") ==
      std::vector<std::string>{"malformed JSON at line 1, column 1: syntax error while parsing "
                               "value - unexpected end of input; expected '[', '{', or a literal"});
  CHECK(parse_errors("{\"id\": \"a\"}\n\n  x") ==
        std::vector<std::string>{"malformed JSON at line 3, column 3: syntax error while parsing "
                                 "value - invalid literal; last read: '\"a\"}<U+000A><U+000A>  "
                                 "x'; expected end of input"});
  // The offending bytes are quoted; they must not make the message itself invalid UTF-8.
  CHECK(parse_errors("{\"id\": \"\xff\"}") ==
        std::vector<std::string>{"malformed JSON at line 1, column 9: syntax error while parsing "
                                 "value - invalid string: ill-formed UTF-8 byte; last read: "
                                 "'\"?'"});
}

TEST_CASE("job spec: the top level must be an object") {
  CHECK(parse_errors("[1, 2]") == std::vector<std::string>{"expected object, got array"});
  CHECK(parse_errors("\"job\"") == std::vector<std::string>{"expected object, got \"job\""});
}

TEST_CASE("job spec: nesting deeper than the limit is refused") {
  std::string deep = R"({"input": {"dir": "/in"}, "output": {"dir": "/out"}, "x": )";
  deep += std::string(100000, '[') + std::string(100000, ']') + "}";
  CHECK(parse_errors(deep) ==
        std::vector<std::string>{"malformed JSON: nested deeper than 64 levels"});
}

TEST_CASE("job spec: unknown keys are named by their JSON path at any depth") {
  json doc = minimal_job();
  doc["input"]["inclde"] = {"*.md"};
  doc["output"]["sufix"] = ".html";
  doc["limits"] = {{"retries", 2}};
  doc["extra"] = true;
  CHECK(doc_errors(doc) == std::vector<std::string>{
                               "input.inclde: unknown key",
                               "output.sufix: unknown key",
                               "limits.retries: unknown key",
                               "extra: unknown key",
                           });
}

TEST_CASE("job spec: duplicate keys are errors, not silently the last one") {
  CHECK(parse_errors(R"({"id": "a", "input": {"dir": "/in", "dir": "/x"},
                         "output": {"dir": "/out"}, "id": "b"})") ==
        std::vector<std::string>{"input.dir: duplicate key", "id: duplicate key"});
  CHECK(parse_errors(R"({"input": {"dir": "/in"}, "output": {"dir": "/out"},
                         "transforms": [{"op": "jobspec.test.upper"},
                                        {"op": "jobspec.test.repeat", "op": "x"}]})") ==
        std::vector<std::string>{
            "transforms[1].op: duplicate key",
            "transforms[1].op: unknown transform \"x\" (known: " + known_transforms() + ")"});
}

TEST_CASE("job spec: wrong types and ranges name the path and what was expected") {
  json doc = minimal_job();
  doc["limits"] = {{"document_timeout_ms", 0}, {"max_attempts", "3"}, {"max_failed_documents", -1}};
  doc["priority"] = 101;
  doc["output"]["if_exists"] = "overwrite";
  doc["output"]["suffix"] = 5;
  doc["input"]["include"] = {"**/*.md", 3};
  doc["input"]["exclude"] = "drafts/**";
  CHECK(doc_errors(doc) == std::vector<std::string>{
                               "input.include[1]: expected string, got 3",
                               "input.exclude: expected array of strings, got \"drafts/**\"",
                               "output.suffix: expected string, got 5",
                               "output.if_exists: expected one of \"replace\", \"skip\", \"fail\", "
                               "\"unchanged\", got \"overwrite\"",
                               "limits.document_timeout_ms: expected integer >= 1, got 0",
                               "limits.max_attempts: expected integer 1..100, got \"3\"",
                               "limits.max_failed_documents: expected integer >= 0, got -1",
                               "priority: expected integer -100..100, got 101",
                           });

  doc = minimal_job();
  doc["limits"] = {{"max_attempts", 2.0}, {"document_timeout_ms", 18446744073709551615u}};
  doc["priority"] = true;
  doc["input"] = "/in";
  doc["transforms"] = {{"op", "jobspec.test.upper"}};
  CHECK(doc_errors(doc) == std::vector<std::string>{
                               "input: expected object, got \"/in\"",
                               "transforms: expected array of objects, got object",
                               "limits.document_timeout_ms: expected integer >= 1, got "
                               "18446744073709551615",
                               "limits.max_attempts: expected integer 1..100, got 2.0",
                               "priority: expected integer -100..100, got true",
                           });
}

TEST_CASE("job spec: relative paths without a base folder are errors") {
  json doc = {{"input", {{"dir", "in"}}}, {"output", {{"dir", "/out"}}}};
  CHECK(
      parse_errors(doc.dump(), {"j", ""}) ==
      std::vector<std::string>{
          "input.dir: relative path \"in\" but the job has no base folder to resolve it against"});
}

TEST_CASE("job spec: every problem is collected, not just the first") {
  json doc = {{"id", "bad id"},
              {"input", {{"dir", "/in"}, {"inclde", 1}}},
              {"transforms", {{{"op", "nope"}}}},
              {"priority", "high"}};
  std::vector<std::string> errors = doc_errors(doc);
  CHECK(errors.size() == 5);
  CHECK(errors[1] == "input.inclde: unknown key");
  CHECK(errors[2] == "output: required key is missing");
  CHECK(errors[4] == "priority: expected integer -100..100, got \"high\"");
}
