// The built-in transforms as a set: what the registry lists, identity, and a chain of them.

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/transform_chain.h"
#include "tests/core/job_spec_support.h"
#include "tests/core/transform_test_util.h"

using docpipe::DocumentContext;
using docpipe::ParamSpec;
using docpipe::TransformChain;
using docpipe::TransformInfo;
using docpipe::TransformRegistry;
using docpipe::test::config_errors;
using docpipe::test::errors_text;
using docpipe::test::make_step;
using docpipe::test::run_ok;
using json = nlohmann::json;
using namespace std::string_literals;

namespace {

// "name:type=default" for each parameter, in declaration order.
std::vector<std::string> param_summary(const TransformInfo& info) {
  std::vector<std::string> out;
  for (const ParamSpec& p : info.params)
    out.push_back(p.name + ":" + p.type + "=" + p.default_value);
  return out;
}

std::string run_chain(const TransformChain& chain, const std::string& input, size_t chunk) {
  TransformChain::Run run = chain.begin(DocumentContext{"in/doc.txt", "doc.txt"});
  std::string out;
  for (size_t at = 0; at < input.size(); at += chunk) {
    docpipe::Status st = run.update(std::string_view(input).substr(at, chunk), out);
    REQUIRE_MESSAGE(st.has_value(), st.error().message);
  }
  docpipe::Status st = run.finish(out);
  REQUIRE_MESSAGE(st.has_value(), st.error().message);
  return out;
}

}  // namespace

TEST_CASE("builtin transforms: the registry lists identity, gzip, gunzip and redact with params") {
  std::vector<std::string> ops;
  for (const TransformInfo* info : TransformRegistry::instance().all()) ops.push_back(info->op);
  for (const char* op : {"gunzip", "gzip", "identity", "redact"}) {
    CAPTURE(op);
    CHECK(std::find(ops.begin(), ops.end(), op) != ops.end());
    const TransformInfo& info = docpipe::test::transform_info(op);
    CHECK(info.streaming);
    CHECK_FALSE(info.description.empty());
    CHECK(static_cast<bool>(info.configure));
    for (const ParamSpec& p : info.params) CHECK_FALSE(p.description.empty());
  }
  CHECK(param_summary(docpipe::test::transform_info("identity")).empty());
  CHECK(param_summary(docpipe::test::transform_info("gzip")) ==
        std::vector<std::string>{"level:integer=6"});
  CHECK(param_summary(docpipe::test::transform_info("gunzip")) ==
        std::vector<std::string>{"max_output_bytes:integer=4294967296", "max_ratio:integer=1000"});
  CHECK(param_summary(docpipe::test::transform_info("redact")) ==
        std::vector<std::string>{"patterns:array<string>=[\"email\",\"card\"]",
                                 "custom:array<string>=[]", "replacement:string=\"[REDACTED]\"",
                                 "max_match_bytes:integer=1024"});
  CHECK(docpipe::test::transform_info("gzip").params[0].description ==
        "compression level, 1 fastest to 9 smallest (1..9)");
}

TEST_CASE("builtin transforms: identity copies any chunking, empty documents included") {
  auto identity = make_step("identity", json::object());
  std::string text = "line one\nline two\n\0binary\xff"s;
  CHECK(run_ok(*identity, text, 1) == text);
  CHECK(run_ok(*identity, text) == text);
  CHECK(run_ok(*identity, "") == "");
  CHECK(errors_text(config_errors("identity", json{{"level", 1}})) == "level: unknown parameter\n");
}

TEST_CASE("builtin transforms: identity steps are listed in the job but left out of its chain") {
  nlohmann::json job = docpipe::test::minimal_job();
  job["transforms"] = json::array({json{{"op", "identity"}}, json{{"op", "identity"}}});
  docpipe::JobSpec copy = docpipe::test::parse_ok(job.dump());
  CHECK(copy.transform_ops == std::vector<std::string>{"identity", "identity"});
  REQUIRE(copy.chain != nullptr);
  CHECK(copy.chain->empty());  // the pipeline copies it without a transform stage

  job["transforms"] =
      json::array({json{{"op", "identity"}}, json{{"op", "redact"}, {"patterns", {"email"}}},
                   json{{"op", "identity"}}});
  docpipe::JobSpec redacting = docpipe::test::parse_ok(job.dump());
  CHECK(redacting.transform_ops == std::vector<std::string>{"identity", "redact", "identity"});
  REQUIRE(redacting.chain != nullptr);
  CHECK(redacting.chain->size() == 1);
  std::string out;
  docpipe::TransformChain::Run run = redacting.chain->begin(docpipe::DocumentContext{});
  REQUIRE(run.update("mail a@example.com now", out));
  REQUIRE(run.finish(out));
  CHECK(out == "mail [REDACTED] now");
}

TEST_CASE("builtin transforms: redact then gzip then gunzip in one chain gives the redacted text") {
  std::vector<std::shared_ptr<const docpipe::TransformStep>> steps = {
      make_step("redact", json{{"patterns", {"email", "ipv4"}}}),
      make_step("gzip", json{{"level", 9}}),
      make_step("gunzip", json::object()),
  };
  TransformChain chain(steps);
  std::string text;
  std::string expected;
  for (int i = 0; i < 2000; ++i) {
    text += "row " + std::to_string(i) + ": mail u" + std::to_string(i) +
            "@example.com from 10.0." + std::to_string(i % 256) + ".1\n";
    expected += "row " + std::to_string(i) + ": mail [REDACTED] from [REDACTED]\n";
  }
  for (size_t chunk : {size_t{1}, size_t{777}, size_t{65536}, text.size()}) {
    CAPTURE(chunk);
    CHECK(run_chain(chain, text, chunk) == expected);
  }
  // Without the gunzip step the chain's output is gzip data of the redacted text.
  TransformChain packed({steps[0], steps[1]});
  std::string gz = run_chain(packed, text, 4096);
  CHECK(gz.substr(0, 2) == "\x1f\x8b");
  CHECK(run_ok(*steps[2], gz, 100) == expected);
}
