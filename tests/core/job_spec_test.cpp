// Job file parsing (core/job_spec.h): every error class with its exact message. Uses its own test
// transforms so that it does not depend on core/transforms. The file-system checks are in
// job_inputs_test.cpp.

#include "core/job_spec.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/core/job_spec_support.h"

namespace fs = std::filesystem;
using docpipe::FieldError;
using docpipe::FieldErrors;
using docpipe::JobParseOptions;
using docpipe::JobSpec;
using docpipe::test::doc_errors;
using docpipe::test::known_transforms;
using docpipe::test::minimal_job;
using docpipe::test::parse_errors;
using docpipe::test::parse_ok;
using nlohmann::json;

namespace {

// ---- Test transforms ---------------------------------------------------------------------------

class UpperTransform : public docpipe::DocumentTransform {
 public:
  explicit UpperTransform(int times) : times_(times) {}
  docpipe::Status update(std::string_view in, std::string& out) override {
    for (int t = 0; t < times_; ++t) {
      for (char c : in) out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return docpipe::ok();
  }
  docpipe::Status finish(std::string&) override { return docpipe::ok(); }

 private:
  int times_;
};

class UpperStep : public docpipe::TransformStep {
 public:
  explicit UpperStep(int times) : times_(times) {}
  std::unique_ptr<docpipe::DocumentTransform> begin(
      const docpipe::DocumentContext&) const override {
    return std::make_unique<UpperTransform>(times_);
  }

 private:
  int times_;
};

// No parameters: anything given is an unknown parameter.
const docpipe::TransformRegistration kUpper({
    .op = "jobspec.test.upper",
    .description = "test only: uppercases",
    .streaming = true,
    .params = {},
    .configure = [](const json& params, const docpipe::TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const docpipe::TransformStep> {
      for (auto it = params.begin(); it != params.end(); ++it) {
        errors.push_back({it.key(), "unknown parameter"});
      }
      if (!errors.empty()) return nullptr;
      return std::make_shared<UpperStep>(1);
    },
});

// One parameter `times`, integer 1..10.
const docpipe::TransformRegistration kRepeat({
    .op = "jobspec.test.repeat",
    .description = "test only: uppercases `times` times over",
    .streaming = true,
    .params = {{"times", "integer", "1", "1..10"}},
    .configure = [](const json& params, const docpipe::TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const docpipe::TransformStep> {
      int times = 1;
      for (auto it = params.begin(); it != params.end(); ++it) {
        if (it.key() != "times") {
          errors.push_back({it.key(), "unknown parameter"});
        } else if (!it->is_number_integer() || *it < 1 || *it > 10) {
          errors.push_back({"times", "expected integer 1..10, got " + it->dump()});
        } else {
          times = it->get<int>();
        }
      }
      if (!errors.empty()) return nullptr;
      return std::make_shared<UpperStep>(times);
    },
});

// ---- Helpers -----------------------------------------------------------------------------------

std::string run_chain(const JobSpec& spec, std::string_view input) {
  docpipe::TransformChain::Run run = spec.chain->begin({"a.md", "a.md"});
  std::string out;
  REQUIRE(run.update(input, out));
  REQUIRE(run.finish(out));
  return out;
}

}  // namespace

TEST_CASE("job spec: a full job parses into every field") {
  JobSpec spec = parse_ok(R"({
    "id": "invoices-2026-11",
    "input":  { "dir": "/srv/docs/in", "include": ["**/*.md"], "exclude": ["drafts/**"] },
    "output": { "dir": "/srv/docs/out", "suffix": ".html", "if_exists": "skip" },
    "transforms": [ { "op": "jobspec.test.upper" }, { "op": "jobspec.test.repeat", "times": 2 } ],
    "limits": { "document_timeout_ms": 1500, "max_attempts": 5, "max_failed_documents": 7 },
    "priority": -3
  })");
  CHECK(spec.id == "invoices-2026-11");
  CHECK(spec.input.dir == "/srv/docs/in");
  CHECK(spec.input.include == std::vector<std::string>{"**/*.md"});
  CHECK(spec.input.exclude == std::vector<std::string>{"drafts/**"});
  CHECK(spec.input.files.empty());
  CHECK(spec.output.dir == "/srv/docs/out");
  CHECK(spec.output.suffix == ".html");
  CHECK(spec.output.if_exists == docpipe::IfExists::kSkip);
  CHECK(spec.transform_ops ==
        std::vector<std::string>{"jobspec.test.upper", "jobspec.test.repeat"});
  REQUIRE(spec.chain != nullptr);
  CHECK(spec.chain->size() == 2);
  CHECK(run_chain(spec, "ab") == "ABAB");
  CHECK(spec.limits.document_timeout_ms == 1500);
  CHECK(spec.limits.max_attempts == 5);
  CHECK(spec.limits.max_failed_documents == 7);
  CHECK(spec.priority == -3);
}

TEST_CASE("job spec: defaults fill what the job leaves out") {
  JobSpec spec = parse_ok(minimal_job().dump());
  CHECK(spec.id == "from-file");
  CHECK(spec.input.include == std::vector<std::string>{"**"});
  CHECK(spec.input.exclude.empty());
  CHECK(spec.output.suffix.empty());
  CHECK(spec.output.if_exists == docpipe::IfExists::kReplace);
  CHECK(spec.transform_ops.empty());
  REQUIRE(spec.chain != nullptr);
  CHECK(spec.chain->empty());
  CHECK(run_chain(spec, "copied as is") == "copied as is");
  CHECK(spec.limits.document_timeout_ms == 30000);
  CHECK(spec.limits.max_attempts == 3);
  CHECK(spec.limits.max_failed_documents == 0);
  CHECK(spec.priority == 0);
}

TEST_CASE("job spec: relative paths resolve against the base folder and are normalised") {
  json doc = {{"input", {{"files", {"a.md", "sub/../b.md", "/abs//./c.md", "../../../../d.md"}}}},
              {"output", {{"dir", "out/./x/../y/"}}}};
  JobSpec spec = parse_ok(doc.dump(), {"j", "/srv/jobs"});
  CHECK(spec.input.dir.empty());
  CHECK(spec.input.files ==
        std::vector<std::string>{"/srv/jobs/a.md", "/srv/jobs/b.md", "/abs/c.md", "/d.md"});
  CHECK(spec.output.dir == "/srv/jobs/out/y");

  doc = {{"input", {{"dir", "../in/../../../.."}}}, {"output", {{"dir", "/out"}}}};
  CHECK(parse_ok(doc.dump(), {"j", "/srv/jobs"}).input.dir == "/");
}

TEST_CASE("job spec: ids are checked, and the file name is the default") {
  const std::string rule =
      "expected 1 to 128 characters from A-Z a-z 0-9 . _ - (and not \".\" or \"..\")";
  for (const char* bad : {"a/b", ".", "..", "", "with space", "caf\xc3\xa9"}) {
    json doc = minimal_job();
    doc["id"] = bad;
    CHECK(doc_errors(doc) == std::vector<std::string>{"id: invalid job id " +
                                                      json(bad).dump(-1, ' ', true) + ": " + rule});
  }
  json doc = minimal_job();
  doc["id"] = std::string(129, 'a');
  CHECK(doc_errors(doc).size() == 1);
  doc["id"] = 7;
  CHECK(doc_errors(doc) == std::vector<std::string>{"id: expected string, got 7"});

  doc["id"] = std::string(128, 'a');
  CHECK(parse_ok(doc.dump()).id == std::string(128, 'a'));
  doc["id"] = "A.b_c-9";
  CHECK(parse_ok(doc.dump()).id == "A.b_c-9");

  CHECK(parse_errors(minimal_job().dump(), {"my job", "/base"}) ==
        std::vector<std::string>{"id: no id given and the file name gives \"my job\", which is "
                                 "not a valid job id: " +
                                 rule});

  CHECK(docpipe::is_valid_job_id("x"));
  CHECK(docpipe::is_valid_job_id("..."));
  CHECK_FALSE(docpipe::is_valid_job_id(".."));
  CHECK_FALSE(docpipe::is_valid_job_id("a\n"));
}

TEST_CASE("job spec: input needs exactly one of dir or files, each used properly") {
  json doc = minimal_job();
  doc["input"] = json::object();
  CHECK(doc_errors(doc) ==
        std::vector<std::string>{"input: expected one of \"dir\" or \"files\", got neither"});

  doc["input"] = {{"dir", "/in"}, {"files", {"/a"}}};
  CHECK(doc_errors(doc) ==
        std::vector<std::string>{"input: expected one of \"dir\" or \"files\", got both"});

  doc["input"] = {{"files", {"/a.md"}}, {"include", {"*.md"}}, {"exclude", json::array()}};
  CHECK(doc_errors(doc) == std::vector<std::string>{"input.include: only allowed with input.dir",
                                                    "input.exclude: only allowed with input.dir"});

  doc["input"] = {{"files", json::array()}};
  CHECK(doc_errors(doc) ==
        std::vector<std::string>{"input.files: expected a non-empty array of file paths, got []"});

  doc["input"] = {{"files", {"/x/a.md", "/y/b.md", "/y/a.md", 4, ""}}};
  CHECK(doc_errors(doc) == std::vector<std::string>{
                               "input.files[2]: file name \"a.md\" is also used by "
                               "input.files[0] (their outputs would collide)",
                               "input.files[3]: expected string, got 4",
                               "input.files[4]: expected a non-empty string",
                           });

  doc["input"] = {
      {"dir", "/in"}, {"include", json::array()}, {"exclude", {"", "/abs/*.md", "drafts/"}}};
  CHECK(doc_errors(doc) == std::vector<std::string>{
                               "input.include: expected a non-empty array of strings",
                               "input.exclude[0]: empty glob pattern",
                               "input.exclude[1]: glob pattern must be relative to input.dir",
                               "input.exclude[2]: glob pattern ends with '/' and can match no "
                               "file (for a whole folder use \"drafts/**\")",
                           });
}

TEST_CASE("job spec: output needs a dir, and a suffix cannot leave the folder") {
  json doc = minimal_job();
  doc["output"] = {{"suffix", "/../x"}};
  CHECK(doc_errors(doc) == std::vector<std::string>{
                               "output.dir: required key is missing",
                               "output.suffix: must not contain '/' or a NUL byte",
                           });
  doc.erase("output");
  CHECK(doc_errors(doc) == std::vector<std::string>{"output: required key is missing"});
}

TEST_CASE("job spec: output.extension replaces the last extension of each output's name") {
  docpipe::OutputSpec out;
  out.extension = ".txt";
  CHECK(docpipe::output_name_for(out, "x.pdf") == "x.txt");
  CHECK(docpipe::output_name_for(out, "archive.tar.gz") == "archive.tar.txt");
  CHECK(docpipe::output_name_for(out, "README") == "README.txt");
  CHECK(docpipe::output_name_for(out, ".bashrc") == ".bashrc.txt");
  CHECK(docpipe::output_name_for(out, "a.") == "a.txt");
  // What is left must not name a folder.
  CHECK(docpipe::output_name_for(out, "..gz") == "..gz.txt");
  CHECK(docpipe::output_name_for(out, "...gz") == "...gz.txt");
  CHECK(docpipe::output_name_for(out, "....gz") == "....txt");
  out.extension = "";
  CHECK(docpipe::output_name_for(out, "notes.txt.gz") == "notes.txt");
  CHECK(docpipe::output_name_for(out, "notes") == "notes");
  CHECK(docpipe::output_name_for(out, "..gz") == "..gz");
  // Then the suffix.
  out.extension = ".txt";
  out.suffix = ".gz";
  CHECK(docpipe::output_name_for(out, "x.pdf") == "x.txt.gz");

  JobSpec spec;
  spec.output.dir = "/out";
  spec.output.extension = ".html";
  CHECK(docpipe::output_path_for(spec, "a.b/c.md") == "/out/a.b/c.html");
  CHECK(docpipe::output_path_for(spec, "c.md") == "/out/c.html");
  CHECK(docpipe::output_relative_path(spec.output, "a.b/c") == "a.b/c.html");
}

TEST_CASE("job spec: output.extension must be an extension, and input files may not share one") {
  json doc = minimal_job();
  doc["output"]["extension"] = ".txt";
  JobSpec spec = parse_ok(doc.dump());
  REQUIRE(spec.output.extension.has_value());
  CHECK(*spec.output.extension == ".txt");
  doc["output"]["extension"] = "";
  CHECK(parse_ok(doc.dump()).output.extension == std::optional<std::string>(""));
  doc["output"].erase("extension");
  CHECK_FALSE(parse_ok(doc.dump()).output.extension.has_value());

  for (const char* bad : {"txt", ".", "..", "./x", ".a/b"}) {
    doc["output"]["extension"] = bad;
    std::vector<std::string> errors = doc_errors(doc);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].starts_with("output.extension: must "));
  }
  doc["output"]["extension"] = 3;
  CHECK(doc_errors(doc) == std::vector<std::string>{"output.extension: expected string, got 3"});
  doc["output"]["extension"] = ".x.docpipe-tmp.y";
  doc["output"]["suffix"] = ".docpipe-tmp.z";
  CHECK(doc_errors(doc) ==
        std::vector<std::string>{
            "output.suffix: must not contain \"docpipe-tmp\": outputs would look like docpipe's "
            "temp files, which are skipped and removed",
            "output.extension: must not contain \"docpipe-tmp\": outputs would look like "
            "docpipe's temp files, which are skipped and removed"});
  doc["output"].erase("suffix");

  doc["input"] = {{"files", {"/in/a.md", "/in/b.md", "/in/sub/a.txt", "/in/c"}}};
  doc["output"]["extension"] = ".txt";
  CHECK(doc_errors(doc) ==
        std::vector<std::string>{"input.files[2]: its output name \"a.txt\" (output.extension "
                                 "\".txt\") is also that of input.files[0] (their outputs would "
                                 "collide)"});
  doc["output"].erase("extension");
  CHECK(parse_ok(doc.dump()).input.files.size() == 4);
}

TEST_CASE("job spec: unknown transforms list the known ones") {
  json doc = minimal_job();
  doc["transforms"] = {{{"op", "jobspec.test.upper"}}, {{"op", "foo"}}};
  std::vector<std::string> errors = doc_errors(doc);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] ==
        "transforms[1].op: unknown transform \"foo\" (known: " + known_transforms() + ")");
  CHECK(errors[0].find("jobspec.test.repeat, jobspec.test.upper") != std::string::npos);
}

TEST_CASE("job spec: transform parameter errors are prefixed with the transform's path") {
  json doc = minimal_job();
  doc["transforms"] = {{{"op", "jobspec.test.upper"}, {"shout", true}},
                       {{"op", "jobspec.test.repeat"}, {"times", "x"}},
                       {{"op", "jobspec.test.repeat"}, {"times", 3}},
                       "upper",
                       {{"name", "upper"}},
                       {{"op", 5}}};
  CHECK(doc_errors(doc) == std::vector<std::string>{
                               "transforms[0].shout: unknown parameter",
                               "transforms[1].times: expected integer 1..10, got \"x\"",
                               "transforms[3]: expected object, got \"upper\"",
                               "transforms[4].op: required key is missing",
                               "transforms[5].op: expected string, got 5",
                           });
}

TEST_CASE("job spec: output_path_for mirrors the relative path under output.dir") {
  JobSpec spec;
  spec.output.dir = "/out";
  spec.output.suffix = ".html";
  CHECK(docpipe::output_path_for(spec, "a/b.md") == "/out/a/b.md.html");
  spec.output.dir = "/";
  spec.output.suffix = "";
  CHECK(docpipe::output_path_for(spec, "a.md") == "/a.md");
  CHECK(std::string(docpipe::if_exists_name(docpipe::IfExists::kFail)) == "fail");
  CHECK(std::string(docpipe::if_exists_name(docpipe::IfExists::kSkip)) == "skip");
  CHECK(std::string(docpipe::if_exists_name(docpipe::IfExists::kReplace)) == "replace");
}
