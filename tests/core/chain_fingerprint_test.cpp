// The chain fingerprint (core/chain_fingerprint.h), through parse_job as jobs get it: the order
// of parameters and defaults left out do not change it; a parameter, a step, the output naming,
// a transform's version or a template file's text do.

#include "core/chain_fingerprint.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "core/job_spec.h"
#include "core/transform.h"
#include "tests/support/temp_folder.h"

namespace docpipe {
namespace {

std::string fingerprint(const std::string& transforms, const std::string& output_extra = "") {
  const std::string text = R"({"id":"j","input":{"dir":"/in"},"output":{"dir":"/out")" +
                           output_extra + R"(},"transforms":)" + transforms + "}";
  FieldErrors errors;
  TransformEnv env;
  env.allowed_input_roots = {"/"};
  std::optional<JobSpec> spec =
      parse_job(text, {.default_id = "j", .base_dir = "/", .env = &env}, errors);
  REQUIRE_MESSAGE(spec, join_field_errors(errors));
  REQUIRE(spec->chain_fingerprint.size() == 64);
  return spec->chain_fingerprint;
}

TEST_CASE("chain fingerprint: the order of a step's parameters does not matter") {
  CHECK(fingerprint(R"([{"op":"redact","patterns":["email"],"replacement":"X"}])") ==
        fingerprint(R"([{"replacement":"X","op":"redact","patterns":["email"]}])"));
}

TEST_CASE("chain fingerprint: a default given or left out is the same chain") {
  CHECK(fingerprint(R"([{"op":"gzip"}])") == fingerprint(R"([{"op":"gzip","level":6}])"));
}

TEST_CASE("chain fingerprint: a parameter change changes it") {
  CHECK(fingerprint(R"([{"op":"gzip","level":6}])") != fingerprint(R"([{"op":"gzip","level":7}])"));
}

TEST_CASE("chain fingerprint: steps and their order change it; a pass-through step does not") {
  const std::string one = fingerprint(R"([{"op":"text.normalize"}])");
  CHECK(one != fingerprint(R"([{"op":"text.normalize"},{"op":"gzip"}])"));
  CHECK(fingerprint(R"([{"op":"text.normalize"},{"op":"gzip"}])") !=
        fingerprint(R"([{"op":"gzip"},{"op":"text.normalize"}])"));
  CHECK(one == fingerprint(R"([{"op":"identity"},{"op":"text.normalize"}])"));
  CHECK(fingerprint("[]") == fingerprint(R"([{"op":"identity"}])"));
}

TEST_CASE("chain fingerprint: output naming is part of it") {
  CHECK(fingerprint("[]") != fingerprint("[]", R"(,"suffix":".x")"));
  CHECK(fingerprint("[]") != fingerprint("[]", R"(,"extension":".txt")"));
}

TEST_CASE("chain fingerprint: a transform's version bump changes it") {
  TransformInfo& info =
      const_cast<TransformInfo&>(*TransformRegistry::instance().find("text.normalize"));
  const std::string before = fingerprint(R"([{"op":"text.normalize"}])");
  const std::string saved = info.version;
  info.version = saved + "-bumped";
  const std::string after = fingerprint(R"([{"op":"text.normalize"}])");
  info.version = saved;
  CHECK(before != after);
  CHECK(fingerprint(R"([{"op":"text.normalize"}])") == before);
}

TEST_CASE("chain fingerprint: a library's version is part of a compressor's step") {
  const TransformInfo* gzip = TransformRegistry::instance().find("gzip");
  REQUIRE(gzip->library_version);
  CHECK(gzip->library_version().find("zlib ") == 0);
  FieldErrors errors;
  auto step = gzip->configure(nlohmann::json::object(), TransformEnv{}, errors);
  REQUIRE(step);
  nlohmann::json d = describe_chain_step(*gzip, nlohmann::json::object(), *step);
  CHECK(d["version"].get<std::string>().find("zlib") != std::string::npos);
  CHECK(d["params"]["level"] == 6);
}

TEST_CASE("chain fingerprint: a template file's text is part of it") {
  test::TempFolder dir;
  const std::string file = dir.root() + "/t.html";
  test::TempFolder::write(file, "<p>{{content}}</p>");
  const std::string chain = R"([{"op":"template","template_file":")" + file + R"("}])";
  const std::string before = fingerprint(chain);
  test::TempFolder::write(file, "<div>{{content}}</div>");
  CHECK(fingerprint(chain) != before);
}

}  // namespace
}  // namespace docpipe
