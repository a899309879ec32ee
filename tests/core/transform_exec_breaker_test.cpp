// exec and its command's circuit breaker: which endings of a real command count as failures,
// what a watched failure and a refusal look like to the pipeline, and what is never counted
// (cancellation, the document's own timeout, a run dropped mid-way). Breaker time is a FakeClock;
// the commands are real processes.
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "core/command_breaker.h"
#include "tests/core/transform_test_util.h"
#include "tests/support/fake_clock.h"
#include "tests/support/temp_folder.h"

namespace docpipe {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// In a folder of this process's own (ctest runs tests in parallel), removed at exit.
std::string runs_file() {
  static const test::TempFolder folder("/tmp", "exec-breaker");
  return folder.root() + "/runs";
}

size_t runs_so_far() {
  std::ifstream in(runs_file());
  size_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

TransformEnv env() {
  TransformEnv e;
  // Each run of "count-fail" leaves a line behind, so a test sees whether it really ran.
  e.commands["count-fail"] =
      CommandSpec{{"sh", "-c", "echo run >> " + runs_file() + "; echo oops >&2; exit 3"}, 10000};
  e.commands["fail"] = CommandSpec{{"sh", "-c", "exit 3"}, 10000};
  e.commands["crash"] = CommandSpec{{"sh", "-c", "kill -9 $$"}, 10000};
  e.commands["hang"] = CommandSpec{{"sleep", "600.8181"}, 300};
  e.commands["ghost"] = CommandSpec{{"/nonexistent/docpipe-ghost"}, 10000};
  e.commands["upper"] = CommandSpec{{"tr", "a-z", "A-Z"}, 10000};
  e.commands["cat"] = CommandSpec{{"cat"}, 30000};
  return e;
}

std::shared_ptr<const TransformStep> step(const std::string& command) {
  FieldErrors errors;
  auto s = test::transform_info("exec").configure(json{{"command", command}}, env(), errors);
  REQUIRE_MESSAGE(errors.empty(), test::errors_text(errors));
  REQUIRE(s != nullptr);
  return s;
}

Result<std::string> run(const std::string& command, CommandBreakers* breakers,
                        std::function<Status()> interrupted = {}) {
  DocumentContext ctx{.relative_path = "doc.txt",
                      .name = "doc.txt",
                      .check_interrupted = std::move(interrupted),
                      .try_reserve_bytes = {},
                      .release_reserved_bytes = {},
                      .breakers = breakers};
  std::unique_ptr<DocumentTransform> t = step(command)->begin(ctx);
  std::string out;
  Status st = test::drain(*t, t->update("some text\n", out), out, false);
  if (st) st = test::drain(*t, t->finish(out), out, true);
  if (!st) return st.error();
  return out;
}

struct Fixture {
  test::FakeClock clock;
  CommandBreakers breakers{clock};
  explicit Fixture(int failures = 2) {
    std::map<std::string, BreakerConfig> configs;
    for (const auto& [name, spec] : env().commands) {
      configs[name] = {.failures = failures, .open_ms = 1000, .max_open_ms = 60000};
    }
    breakers.configure(configs);
    ::unlink(runs_file().c_str());
  }
  ~Fixture() { ::unlink(runs_file().c_str()); }
  BreakerSnapshot of(const std::string& command) { return *breakers.snapshot(command); }
};

TEST_CASE("exec breaker: watched failures are worth another attempt and open the breaker") {
  Fixture f;
  for (int i = 0; i < 2; ++i) {
    Result<std::string> r = run("count-fail", &f.breakers);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kCommandFailed);
    CHECK(is_transient(r.error()));
    CHECK(r.error().message == "exec: command \"count-fail\" exited with status 3; stderr: oops");
  }
  CHECK(f.of("count-fail").state == BreakerState::kOpen);
  CHECK(f.of("count-fail").last_failure ==
        "exited non-zero: exec: command \"count-fail\" exited with status 3; stderr: oops");
  CHECK(runs_so_far() == 2);

  // Open: the command is not started at all, and the document is told to wait.
  Result<std::string> refused = run("count-fail", &f.breakers);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == ErrorCode::kUnavailable);
  CHECK(refused.error().message ==
        "exec: command \"count-fail\": its circuit breaker is open after 2 consecutive failures "
        "(last: exited non-zero: exec: command \"count-fail\" exited with status 3; stderr: oops)");
  CHECK(runs_so_far() == 2);

  // Its open period over, one document probes; it fails, and the breaker opens for longer.
  f.clock.advance(1000ms);
  Result<std::string> probe = run("count-fail", &f.breakers);
  REQUIRE_FALSE(probe);
  CHECK(probe.error().code == ErrorCode::kCommandFailed);
  CHECK(runs_so_far() == 3);
  CHECK(f.of("count-fail").state == BreakerState::kOpen);
  CHECK(f.of("count-fail").open_ms == 2000);
  // Other commands are not affected.
  CHECK(run("upper", &f.breakers).value() == "SOME TEXT\n");
}

TEST_CASE("exec breaker: a crash, a timeout and a failed start count, and exit 0 resets") {
  Fixture f(10);
  Result<std::string> crash = run("crash", &f.breakers);
  REQUIRE_FALSE(crash);
  CHECK(crash.error().code == ErrorCode::kCommandFailed);
  CHECK(f.of("crash").consecutive_failures == 1);
  CHECK(
      f.of("crash").last_failure.starts_with("crashed: exec: command \"crash\" was killed by "
                                             "signal 9"));
  Result<std::string> hang = run("hang", &f.breakers);
  REQUIRE_FALSE(hang);
  CHECK(hang.error().code == ErrorCode::kCommandFailed);
  CHECK(f.of("hang").consecutive_failures == 1);
  CHECK(f.of("hang").last_failure.starts_with("timed out: "));
  Result<std::string> ghost = run("ghost", &f.breakers);
  REQUIRE_FALSE(ghost);
  CHECK(ghost.error().code == ErrorCode::kCommandFailed);
  CHECK(f.of("ghost").consecutive_failures == 1);
  CHECK(f.of("ghost").last_failure.starts_with("could not start: "));
  CHECK_FALSE(run("fail", &f.breakers));
  CHECK_FALSE(run("fail", &f.breakers));
  CHECK(f.of("fail").consecutive_failures == 2);
  f.breakers.configure({{"fail", {.failures = 10, .open_ms = 1000, .max_open_ms = 1000}},
                        {"upper", {.failures = 10, .open_ms = 1000, .max_open_ms = 1000}}});
  CHECK(f.of("fail").consecutive_failures == 2);  // a reload keeps the count
  CHECK(run("upper", &f.breakers).value() == "SOME TEXT\n");
  CHECK(f.of("upper").consecutive_failures == 0);
}

TEST_CASE("exec breaker: cancellation, the document's timeout and a dropped run count nothing") {
  Fixture f(1);
  Result<std::string> cancelled = run("cat", &f.breakers, [] {
    return Status(make_error(ErrorCode::kCancelled, "job cancelled"));
  });
  REQUIRE_FALSE(cancelled);
  CHECK(cancelled.error().code == ErrorCode::kCancelled);
  Result<std::string> timed_out = run("hang", &f.breakers, [] {
    return Status(make_error(ErrorCode::kTimeout, "doc.txt: timed out after 5 ms"));
  });
  REQUIRE_FALSE(timed_out);
  CHECK(timed_out.error().code == ErrorCode::kTimeout);
  CHECK(f.of("cat").state == BreakerState::kClosed);
  CHECK(f.of("hang").state == BreakerState::kClosed);
  CHECK(f.of("hang").consecutive_failures == 0);

  // A probe dropped mid-way (the output side failed; the chain stops calling): its place frees.
  CHECK_FALSE(run("fail", &f.breakers));
  REQUIRE(f.of("fail").state == BreakerState::kOpen);
  f.clock.advance(1000ms);
  {
    DocumentContext ctx{.relative_path = "doc.txt",
                        .name = "doc.txt",
                        .check_interrupted = {},
                        .try_reserve_bytes = {},
                        .release_reserved_bytes = {},
                        .breakers = &f.breakers};
    std::unique_ptr<DocumentTransform> t = step("fail")->begin(ctx);
    std::string out;
    CHECK(t->update("x", out));  // started: it is the probe
    CHECK(f.of("fail").probe_running);
    CHECK(f.breakers.blocked_until("fail") == Clock::time_point::max());
  }
  CHECK(f.of("fail").state == BreakerState::kHalfOpen);
  CHECK_FALSE(f.of("fail").probe_running);
  CHECK_FALSE(f.breakers.blocked_until("fail"));
}

TEST_CASE("exec breaker: unwatched failures keep their codes and fail for good") {
  Result<std::string> plain = run("fail", nullptr);
  REQUIRE_FALSE(plain);
  CHECK(plain.error().code == ErrorCode::kCorruptInput);
  CHECK_FALSE(is_transient(plain.error()));
  Fixture f(0);  // turned off
  for (int i = 0; i < 3; ++i) {
    Result<std::string> off = run("fail", &f.breakers);
    REQUIRE_FALSE(off);
    CHECK(off.error().code == ErrorCode::kCorruptInput);
  }
  CHECK(f.of("fail").state == BreakerState::kClosed);
  CHECK(f.of("fail").consecutive_failures == 0);
  // exec says which command a job's chain needs, for the scheduler.
  CHECK(step("upper")->commands() == std::vector<std::string>{"upper"});
}

}  // namespace
}  // namespace docpipe
