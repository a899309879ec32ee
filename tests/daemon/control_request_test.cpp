// One control request line into a ControlRequest (daemon/control_request.h): what each op
// needs, and refusals that are specific, bounded and cheap.

#include "daemon/control_request.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace docpipe {
namespace {

std::string error_of(std::string_view line) {
  Result<ControlRequest> r = parse_control_request(line);
  REQUIRE_FALSE(r.has_value());
  return r.error().message;
}

TEST_CASE("control request: each op with what it needs") {
  auto submit = parse_control_request(
      R"({"op":"submit","job":{"input":{"dir":"in"},"output":{"dir":"/o"}},"base_dir":"/b"})");
  REQUIRE(submit.has_value());
  CHECK(submit->op == ControlRequest::Op::kSubmit);
  CHECK(submit->base_dir == "/b");
  CHECK(nlohmann::json::parse(submit->job_text) ==
        nlohmann::json::parse(R"({"input":{"dir":"in"},"output":{"dir":"/o"}})"));
  CHECK(submit->job_text.find("\n ") == std::string::npos);  // compact: no indentation

  auto status = parse_control_request(R"({"op":"status"})");
  REQUIRE(status.has_value());
  CHECK(status->op == ControlRequest::Op::kStatus);
  CHECK(status->id.empty());
  auto one = parse_control_request(R"({"op":"status","id":"x"})");
  REQUIRE(one.has_value());
  CHECK(one->id == "x");
  CHECK(parse_control_request(R"({"op":"status","id":null})")->id.empty());
  auto cancel = parse_control_request(R"({"op":"cancel","id":"job-1"})");
  REQUIRE(cancel.has_value());
  CHECK(cancel->op == ControlRequest::Op::kCancel);
  CHECK(cancel->id == "job-1");
  CHECK(parse_control_request(R"({"op":"list"})")->op == ControlRequest::Op::kList);
  auto retry = parse_control_request(R"({"op":"retry","id":"nightly","new_id":"again"})");
  REQUIRE(retry);
  CHECK(retry->op == ControlRequest::Op::kRetry);
  CHECK(retry->id == "nightly");
  CHECK(retry->new_id == "again");
  CHECK(parse_control_request(R"({"op":"retry","id":"nightly"})")->new_id.empty());
}

TEST_CASE("control request: malformed requests are refused, each with its reason") {
  CHECK(error_of("not json") == "malformed request: expected one JSON object per line");
  CHECK(error_of("[1]") == "malformed request: expected one JSON object per line");
  CHECK(error_of(R"({"op":1})") ==
        "request needs a string \"op\": submit, status, cancel, retry, list, pause, resume, which "
        "or plan");
  CHECK(error_of(R"({"op":"submit"})") == "submit needs \"job\": the job as a JSON object");
  CHECK(error_of(R"({"op":"submit","job":[]})") ==
        "submit needs \"job\": the job as a JSON object");
  CHECK(error_of(R"({"op":"submit","job":{},"base_dir":"rel"})") ==
        "submit: \"base_dir\" must be an absolute path");
  CHECK(error_of(R"({"op":"status","id":7})") == "status: \"id\" must be a non-empty string");
  CHECK(error_of(R"({"op":"cancel"})") == "cancel needs \"id\": the job id");
  CHECK(error_of(R"({"op":"retry"})") == "retry needs \"id\": the finished job's id");
  CHECK(error_of(R"({"op":"retry","id":"a","new_id":3})") ==
        "retry: \"new_id\" must be a non-empty string");
  CHECK(error_of(R"({"op":"explode"})") ==
        "unknown op \"explode\": expected submit, status, cancel, retry, list, pause, resume, "
        "which or plan");
}

TEST_CASE("control request: an unknown op is quoted short and printable, never echoed whole") {
  std::string op(1 << 20, 'A');
  std::string message = error_of(R"({"op":")" + op + R"("})");
  CHECK(message.size() < 160);
  CHECK(message.rfind("unknown op \"AAAA", 0) == 0);
  CHECK(error_of(R"({"op":"a\u0001b\"c"})").find("a?b?c") != std::string::npos);
}

TEST_CASE("control request: nesting deeper than 64 is refused before parsing") {
  std::string deep = std::string(60000, '[') + std::string(60000, ']');
  Result<ControlRequest> r = parse_control_request(R"({"op":"submit","job":{"a":)" + deep + "}}");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message == "request refused: nested deeper than 64 levels");
  // 64 levels in all (the request object is one of them) are fine.
  std::string ok =
      R"({"op":"submit","job":{"a":)" + std::string(62, '[') + std::string(62, ']') + "}}";
  CHECK(parse_control_request(ok).has_value());
}

TEST_CASE("control request: a line over 4 MiB is refused as too large") {
  Result<ControlRequest> r = parse_control_request(std::string(kMaxControlRequestBytes + 1, ' '));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kTooLarge);
}

TEST_CASE("control request: a client's text is quoted short and printable in replies") {
  // A valid job id (up to 128 characters) comes back whole.
  const std::string id(128, 'a');
  CHECK(quote_client_text(id, 128) == "\"" + id + "\"");
  CHECK(quote_client_text("a\"b\\c\n", 128) == "\"a?b?c?\"");
  // A 4 MiB one does not: the reply stays small whatever was sent.
  const std::string huge(4u << 20, 'x');
  const std::string quoted = quote_client_text(huge, 128);
  CHECK(quoted == "\"" + std::string(128, 'x') + "...\"");
}

}  // namespace
}  // namespace docpipe
