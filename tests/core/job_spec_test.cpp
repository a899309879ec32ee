// Job file parsing and validation (core/job_spec.h): every error class with its exact message,
// and the file-system checks on real temp folders. Uses its own test transforms so that it does
// not depend on core/transforms.

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

namespace fs = std::filesystem;
using docpipe::FieldError;
using docpipe::FieldErrors;
using docpipe::JobParseOptions;
using docpipe::JobSpec;
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
    "jobspec.test.upper",
    "test only: uppercases",
    true,
    {},
    [](const json& params, const docpipe::TransformEnv&,
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
    "jobspec.test.repeat",
    "test only: uppercases `times` times over",
    true,
    {{"times", "integer", "1", "1..10"}},
    [](const json& params, const docpipe::TransformEnv&,
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

const JobParseOptions kOptions{"from-file", "/base"};

std::vector<std::string> lines(const FieldErrors& errors) {
  std::vector<std::string> out;
  for (const FieldError& e : errors) out.push_back(docpipe::format_field_error(e));
  return out;
}

// Parses `job`, expecting failure; returns the errors as "path: reason" lines.
std::vector<std::string> parse_errors(const std::string& text,
                                      const JobParseOptions& options = kOptions) {
  FieldErrors errors;
  std::optional<JobSpec> spec = docpipe::parse_job(text, options, errors);
  CHECK_FALSE(spec.has_value());
  return lines(errors);
}

std::vector<std::string> doc_errors(const json& doc) { return parse_errors(doc.dump()); }

JobSpec parse_ok(const std::string& text, const JobParseOptions& options = kOptions) {
  FieldErrors errors;
  std::optional<JobSpec> spec = docpipe::parse_job(text, options, errors);
  CHECK(lines(errors) == std::vector<std::string>{});
  REQUIRE(spec.has_value());
  return std::move(*spec);
}

json minimal_job() { return {{"input", {{"dir", "/in"}}}, {"output", {{"dir", "/out"}}}}; }

std::string run_chain(const JobSpec& spec, std::string_view input) {
  docpipe::TransformChain::Run run = spec.chain->begin({"a.md", "a.md"});
  std::string out;
  REQUIRE(run.update(input, out));
  REQUIRE(run.finish(out));
  return out;
}

std::string known_transforms() {
  std::string names;
  for (const docpipe::TransformInfo* info : docpipe::TransformRegistry::instance().all()) {
    names += (names.empty() ? "" : ", ") + info->op;
  }
  return names;
}

}  // namespace

// ---- Parsing
// -------------------------------------------------------------------------------------

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
  CHECK(doc_errors(doc) ==
        std::vector<std::string>{
            "input.include[1]: expected string, got 3",
            "input.exclude: expected array of strings, got \"drafts/**\"",
            "output.suffix: expected string, got 5",
            "output.if_exists: expected one of \"replace\", \"skip\", \"fail\", got \"overwrite\"",
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

TEST_CASE("job spec: relative paths without a base folder are errors") {
  json doc = {{"input", {{"dir", "in"}}}, {"output", {{"dir", "/out"}}}};
  CHECK(
      parse_errors(doc.dump(), {"j", ""}) ==
      std::vector<std::string>{
          "input.dir: relative path \"in\" but the job has no base folder to resolve it against"});
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

// ---- File-system checks ------------------------------------------------------------------------

namespace {

struct CheckFixture {
  CheckFixture() {
    char tmpl[] = "/tmp/docpipe-jobcheck-XXXXXX";
    root = ::mkdtemp(tmpl);
    fs::create_directories(root + "/in");
    fs::create_directories(root + "/out");
  }
  ~CheckFixture() { fs::remove_all(root); }

  void put(const std::string& rel, const std::string& content = "x") {
    fs::path p = fs::path(root) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
  }

  JobSpec job(json input, json output = nullptr) const {
    json doc = {{"input", std::move(input)},
                {"output", output.is_null() ? json{{"dir", "out"}} : std::move(output)}};
    return parse_ok(doc.dump(), {"j", root});
  }

  // Runs check_job_inputs; returns the count and the errors as lines.
  std::pair<size_t, std::vector<std::string>> check(JobSpec spec,
                                                    std::vector<std::string> in_roots = {"/"},
                                                    std::vector<std::string> out_roots = {"/"}) {
    FieldErrors errors;
    size_t n = docpipe::check_job_inputs(spec, in_roots, out_roots, errors);
    return {n, lines(errors)};
  }

  std::string root;
};

using Checked = std::pair<size_t, std::vector<std::string>>;

}  // namespace

TEST_CASE("job spec check: counts the matching documents of a valid job") {
  CheckFixture f;
  f.put("in/a.md");
  f.put("in/sub/b.md");
  f.put("in/sub/c.txt");
  f.put("in/drafts/d.md");
  CHECK(f.check(f.job({{"dir", "in"}, {"include", {"**/*.md"}}, {"exclude", {"drafts/**"}}})) ==
        Checked{2, {}});
  CHECK(f.check(f.job({{"files", {"in/a.md", "in/sub/c.txt"}}})) == Checked{2, {}});
}

TEST_CASE("job spec check: a missing input folder or file is named") {
  CheckFixture f;
  f.put("in/a.md");
  f.put("plain");
  CHECK(f.check(f.job({{"dir", "nope"}})) ==
        Checked{0, {"input.dir: no such directory: " + f.root + "/nope"}});
  CHECK(f.check(f.job({{"dir", "plain"}})) ==
        Checked{0, {"input.dir: not a directory: " + f.root + "/plain"}});
  CHECK(f.check(f.job({{"files", {"in/a.md", "in/gone.md", "in"}}})) ==
        Checked{1,
                {"input.files[1]: no such file: " + f.root + "/in/gone.md",
                 "input.files[2]: not a regular file: " + f.root + "/in"}});
}

TEST_CASE("job spec check: no matching document is an error naming the globs") {
  CheckFixture f;
  f.put("in/a.txt");
  f.put("in/drafts/b.md");
  CHECK(f.check(f.job({{"dir", "in"}, {"include", {"**/*.md"}}})) == Checked{1, {}});
  CHECK(f.check(f.job({{"dir", "in"}, {"include", {"**/*.md"}}, {"exclude", {"drafts/**"}}})) ==
        Checked{0,
                {"input: no documents match include [\"**/*.md\"] exclude [\"drafts/**\"] in " +
                 f.root + "/in"}});
  CHECK(f.check(f.job({{"dir", "in"}, {"include", {"*.pdf"}}})) ==
        Checked{0, {"input: no documents match include [\"*.pdf\"] in " + f.root + "/in"}});
}

TEST_CASE("job spec check: input and output must stay within the allowed roots") {
  CheckFixture f;
  f.put("in/a.md");
  f.put("elsewhere/b.md");
  const std::string in_root = f.root + "/in";
  const std::string out_root = f.root + "/out";

  CHECK(f.check(f.job({{"dir", "in"}}), {in_root}, {out_root}) == Checked{1, {}});
  // ".." is resolved before the check, lexically.
  CHECK(f.check(f.job({{"dir", "in/../elsewhere"}}), {in_root}, {out_root}) ==
        Checked{0,
                {"input.dir: " + f.root + "/elsewhere is outside the allowed input roots (" +
                 in_root + ")"}});
  CHECK(f.check(f.job({{"files", {"elsewhere/b.md"}}}), {in_root, "/nonexistent"}, {out_root}) ==
        Checked{
            0,
            {"input.files[0]: " + f.root + "/elsewhere/b.md is outside the allowed input roots (" +
             in_root + ", /nonexistent)"}});
  CHECK(f.check(f.job({{"dir", "in"}}, {{"dir", "/etc"}}), {in_root}, {out_root}) ==
        Checked{1, {"output.dir: /etc is outside the allowed output roots (" + out_root + ")"}});
  // An output folder still to be created is judged by its nearest existing ancestor.
  CHECK(f.check(f.job({{"dir", "in"}}, {{"dir", "out/new/deeper"}}), {in_root}, {out_root}) ==
        Checked{1, {}});
}

TEST_CASE("job spec check: symlinks cannot escape the allowed roots") {
  CheckFixture f;
  f.put("in/a.md");
  f.put("secret/s.md");
  const std::string in_root = f.root + "/in";
  const std::string out_root = f.root + "/out";
  fs::create_symlink(f.root + "/secret", in_root + "/dir_link");
  fs::create_symlink(f.root + "/secret", out_root + "/escape");
  fs::create_symlink(f.root + "/secret/s.md", in_root + "/file_link.md");

  CHECK(f.check(f.job({{"dir", "in/dir_link"}}), {in_root}, {out_root}) ==
        Checked{0,
                {"input.dir: " + in_root + "/dir_link (resolves to " + f.root +
                 "/secret) is outside the allowed input roots (" + in_root + ")"}});
  CHECK(f.check(f.job({{"dir", "in"}}, {{"dir", "out/escape/new"}}), {in_root}, {out_root}) ==
        Checked{1,
                {"input.dir: " + in_root +
                     "/file_link.md: symlink points outside the input "
                     "folder (to " +
                     f.root + "/secret/s.md), skipped",
                 "output.dir: " + out_root + "/escape/new (resolves to " + f.root +
                     "/secret/new) is outside the allowed output roots (" + out_root + ")"}});
}

TEST_CASE("job spec check: an output folder must be a folder") {
  CheckFixture f;
  f.put("in/a.md");
  f.put("out/file");
  CHECK(f.check(f.job({{"dir", "in"}}, {{"dir", "out/file"}})) ==
        Checked{1, {"output.dir: not a directory: " + f.root + "/out/file"}});
  CHECK(f.check(f.job({{"dir", "in"}}, {{"dir", "out/file/x/y"}})) ==
        Checked{1,
                {"output.dir: cannot create " + f.root + "/out/file/x/y: " + f.root +
                 "/out/file is not a directory"}});
}

TEST_CASE("job spec check: outputs inside the input folder must be kept out of the walk") {
  CheckFixture f;
  f.put("in/a.md");
  CHECK(f.check(f.job({{"dir", "in"}}, {{"dir", "in/out"}})) ==
        Checked{1,
                {"output.dir: " + f.root + "/in/out is inside the input folder " + f.root +
                 "/in and the include patterns reach it; add an exclude such as \"out/**\" or "
                 "choose another folder"}});
  CHECK(f.check(f.job({{"dir", "in"}, {"exclude", {"out/**"}}}, {{"dir", "in/out"}})) ==
        Checked{1, {}});
  CHECK(f.check(f.job({{"dir", "in"}, {"include", {"*.md"}}}, {{"dir", "in/out"}})) ==
        Checked{1, {}});
  CHECK(f.check(f.job({{"dir", "in"}}, {{"dir", "in"}})) ==
        Checked{1,
                {"output.dir: is the input folder " + f.root +
                 "/in; outputs would be read back as inputs"}});
}

TEST_CASE("job spec check: the submitter must be able to read the input and write the output") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root (folders the submitter may not use)");
    return;
  }
  CheckFixture f;
  f.put("in/a.md");
  f.put("private/in/b.md");
  f.put("files/c.md");
  f.put("files/d.md");
  ::chmod(f.root.c_str(), 0755);
  ::chmod((f.root + "/in").c_str(), 0755);
  ::chmod((f.root + "/in/a.md").c_str(), 0644);
  ::chmod((f.root + "/private").c_str(), 0700);
  ::chmod((f.root + "/out").c_str(), 0755);  // root's: the submitter may not create in it
  fs::create_directories(f.root + "/mine");
  ::chown((f.root + "/mine").c_str(), 4001, 4001);
  ::chmod((f.root + "/files").c_str(), 0755);
  ::chmod((f.root + "/files/c.md").c_str(), 0644);
  ::chmod((f.root + "/files/d.md").c_str(), 0600);
  auto submitted = [&](JobSpec spec) {
    spec.submitter = docpipe::Credentials{4001, 4001, {}};
    return spec;
  };

  CHECK(f.check(submitted(f.job({{"dir", "private/in"}}, {{"dir", "mine/new"}}))) ==
        Checked{0,
                {"input.dir: " + f.root +
                 "/private: the submitter (uid 4001) may not search "
                 "this folder"}});
  CHECK(f.check(submitted(f.job({{"dir", "in"}}, {{"dir", "out/new"}}))) ==
        Checked{1,
                {"output.dir: " + f.root +
                 "/out: the submitter (uid 4001) may not create files "
                 "in and search this folder"}});
  CHECK(f.check(submitted(f.job({{"files", {"files/c.md", "files/d.md"}}}, {{"dir", "mine"}}))) ==
        Checked{1,
                {"input.files[1]: " + f.root +
                 "/files/d.md: the submitter (uid 4001) may not read this file"}});
  CHECK(f.check(submitted(f.job({{"dir", "in"}}, {{"dir", "mine/new"}}))) == Checked{1, {}});
  // Without a submitter the daemon's own rights decide, as before.
  CHECK(f.check(f.job({{"dir", "private/in"}}, {{"dir", "out/new"}})) == Checked{1, {}});
}

TEST_CASE("job spec check: the roots holding input and output are recorded for the job's start") {
  CheckFixture f;
  f.put("in/sub/a.md");
  JobSpec spec = f.job({{"dir", "in/sub"}}, {{"dir", "out/new"}});
  docpipe::FieldErrors errors;
  CHECK(docpipe::check_job_inputs(spec, {"/", f.root + "/in"}, {f.root}, errors) == 1);
  CHECK(errors.empty());
  CHECK(spec.input.root == f.root + "/in");  // the most specific root
  CHECK(spec.input.real_dir == f.root + "/in/sub");
  CHECK(spec.output.root == f.root);
  CHECK(spec.output.real_dir == f.root + "/out/new");
}
