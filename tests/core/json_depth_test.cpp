// Nesting depth is measured before a JSON text is parsed (core/json_util.h json_max_depth), so
// that a hostile job file or request costs one pass over its bytes, not memory per level.

#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <string>

#include "core/job_spec.h"
#include "core/json_util.h"
#include "core/transforms/worker_sandbox.h"

namespace docpipe {
namespace {

std::string nested(size_t depth, std::string_view inner = "") {
  return std::string(depth, '[') + std::string(inner) + std::string(depth, ']');
}

TEST_CASE("json depth: counts arrays and objects, not brackets inside strings") {
  CHECK(json_max_depth("1", 64) == 0);
  CHECK(json_max_depth("[]", 64) == 1);
  CHECK(json_max_depth("{\"a\":[{}]}", 64) == 3);
  CHECK(json_max_depth("[[1],[[2]],3]", 64) == 3);
  CHECK(json_max_depth("\"[[[[{{{{\"", 64) == 0);
  CHECK(json_max_depth(R"(["\"[[[", "\\", [1]])", 64) == 2);  // escaped quote, escaped backslash
  CHECK(json_max_depth(R"({"k\\":"[[["})", 64) == 1);
}

TEST_CASE("json depth: stops as soon as the limit is passed") {
  CHECK(json_max_depth(nested(64), 64) == 64);
  CHECK(json_max_depth(nested(65), 64) == 65);
  CHECK(json_max_depth(nested(1000000), 64) == 65);
}

TEST_CASE("json depth: the scan says where the nesting passed the limit") {
  CHECK(scan_json_depth(nested(3), 3).past_limit_at == std::string_view::npos);
  // Brackets inside a string do not count: the fourth real one is at offset 12.
  const JsonDepthScan scan = scan_json_depth(R"({"k":"[[",[[[1]]]})", 3);
  CHECK(scan.deepest == 4);
  CHECK(scan.past_limit_at == 13);
}

TEST_CASE("json depth: 64 levels parse, 65 are refused with one clear error") {
  nlohmann::json out;
  FieldErrors errors;
  CHECK(parse_json_text(nested(64, "1"), out, errors));
  CHECK(errors.empty());
  CHECK_FALSE(parse_json_text(nested(65, "1"), out, errors));
  REQUIRE(errors.size() == 1);
  CHECK(format_field_error(errors[0]) == "malformed JSON: nested deeper than 64 levels");
}

TEST_CASE("json depth: a job nested 2,000,000 deep is refused within a small address space") {
  // Forked under RLIMIT_AS, 64 MiB above what the test binary maps: building the document level
  // by level (~64 bytes each) does not fit.
  const rlim_t limit = static_cast<rlim_t>(docpipe::mapped_bytes()) + (rlim_t{64} << 20);
  REQUIRE(limit > (rlim_t{64} << 20));
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    rlimit cap{limit, limit};
    ::setrlimit(RLIMIT_AS, &cap);
    bool ok = false;
    try {  // the child must never return into doctest
      std::string text = "{\"input\":{\"dir\":" + nested(2000000) + "}}";
      FieldErrors errors;
      std::optional<JobSpec> spec =
          parse_job(text, JobParseOptions{"deep", "/tmp", nullptr}, errors);
      ok = !spec && errors.size() == 1 &&
           format_field_error(errors[0]) == "malformed JSON: nested deeper than 64 levels";
    } catch (...) {
    }
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

}  // namespace
}  // namespace docpipe
