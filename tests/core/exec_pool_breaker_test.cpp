// exec pools and the command's circuit breaker (core/command_breaker.h), which watches pool
// commands too: crashed processes are failures that open it, a document the converter refused
// ("F") is the converter answering, a refusal during the pool's start backoff or a queue timeout
// says nothing, and while it is open a document waits without touching the pool. Also what a
// reload that changes only per-document settings keeps.

#include <doctest/doctest.h>

#include <string>
#include <thread>

#include "core/command_breaker.h"
#include "tests/core/exec_pool_test_util.h"
#include "tests/support/fake_clock.h"

using docpipe::DocumentContext;
using docpipe::ErrorCode;
using docpipe::Status;
using namespace exec_pool_test;

namespace {

// Runs one document through `step` with `breakers` watching.
Result<std::string> run_watched(const TransformStep& step, docpipe::CommandBreakers& breakers,
                                std::string_view input) {
  DocumentContext ctx{.relative_path = "doc.txt", .name = "doc.txt", .breakers = &breakers};
  std::unique_ptr<docpipe::DocumentTransform> t = step.begin(ctx);
  std::string out;
  Status st = docpipe::test::drain(*t, t->update(input, out), out, false);
  if (st) st = docpipe::test::drain(*t, t->finish(out), out, true);
  if (!st) return st.error();
  return out;
}

}  // namespace

TEST_CASE("exec pool: crashes open the command's breaker, refusals do not, and open means wait") {
  docpipe::test::FakeClock clock;
  docpipe::CommandBreakers breakers{clock};
  breakers.configure({{"pool-breaker", {.failures = 2, .open_ms = 1000, .max_open_ms = 60000}}});
  auto step = pool_step("pool-breaker", faulty_spec("crash-on", "CRASH"));
  auto run_with_breaker = [&](std::string_view input) {
    return run_watched(*step, breakers, input);
  };
  CHECK(run_with_breaker("fine").value() == "FINE");
  for (int i = 0; i < 2; ++i) {
    Result<std::string> r = run_with_breaker("about to CRASH here");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == ErrorCode::kCommandFailed);  // retried, waiting while open
    CHECK(docpipe::is_transient(r.error()));
  }
  CHECK(breakers.snapshot("pool-breaker")->state == docpipe::BreakerState::kOpen);
  const uint64_t starts = stats_of("pool-breaker").starts;
  Result<std::string> waiting = run_with_breaker("fine");
  REQUIRE_FALSE(waiting.has_value());
  CHECK(waiting.error().code == ErrorCode::kUnavailable);
  CHECK(stats_of("pool-breaker").starts == starts);  // no process was started for it
  // After the open period the next document is the probe; it succeeds and closes the breaker.
  clock.advance(milliseconds(1000));
  CHECK(run_with_breaker("probe").value() == "PROBE");
  CHECK(breakers.snapshot("pool-breaker")->state == docpipe::BreakerState::kClosed);
}

TEST_CASE("exec pool: a document the converter fails is a success for the breaker") {
  docpipe::test::FakeClock clock;
  docpipe::CommandBreakers breakers{clock};
  breakers.configure(
      {{"pool-refuse-breaker", {.failures = 1, .open_ms = 1000, .max_open_ms = 60000}}});
  auto step = pool_step("pool-refuse-breaker", upper_spec());
  for (int i = 0; i < 3; ++i) {
    // pool_upper.py refuses a document that holds a NUL byte with an "F" frame.
    Result<std::string> r = run_watched(*step, breakers, std::string_view("bad\0doc", 7));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == ErrorCode::kCorruptInput);
  }
  CHECK(breakers.snapshot("pool-refuse-breaker")->state == docpipe::BreakerState::kClosed);
  CHECK(breakers.snapshot("pool-refuse-breaker")->consecutive_failures == 0);
}

TEST_CASE("exec pool: one failed start is one failure, not one per document refused in backoff") {
  docpipe::test::FakeClock clock;
  docpipe::CommandBreakers breakers{clock};
  breakers.configure(
      {{"pool-start-breaker", {.failures = 10, .open_ms = 1000, .max_open_ms = 60000}}});
  auto step = pool_step("pool-start-breaker", faulty_spec("fail-start"));
  // The first document's start fails; the next ones are refused at once while the pool backs
  // off (100 ms and more), without a start of their own: they say nothing of the command.
  for (int i = 0; i < 4; ++i) {
    Result<std::string> r = run_watched(*step, breakers, "x");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.find("cannot load the model") != std::string::npos);
  }
  // Each start that failed is one failure, whatever the machine's speed made of the backoff.
  const uint64_t starts = stats_of("pool-start-breaker").start_failures;
  CHECK(starts >= 1);
  CHECK(starts < 4);  // some documents came while the pool backed off
  CHECK(breakers.snapshot("pool-start-breaker")->consecutive_failures == int(starts));
}

TEST_CASE("exec pool: a document finds every process busy until queue_timeout_ms: no verdict") {
  docpipe::test::FakeClock clock;
  docpipe::CommandBreakers breakers{clock};
  breakers.configure(
      {{"pool-queue-breaker", {.failures = 1, .open_ms = 1000, .max_open_ms = 60000}}});
  CommandSpec spec = faulty_spec("slow", "1500");
  spec.pool.queue_timeout_ms = 100;
  auto step = pool_step("pool-queue-breaker", spec);
  std::thread busy([&] { CHECK(run_watched(*step, breakers, "a").value() == "A"); });
  REQUIRE(eventually([] { return stats_of("pool-queue-breaker").processes.busy == 1; }));
  Result<std::string> r = run_watched(*step, breakers, "b");
  busy.join();
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("no pool process came free within 100 ms") != std::string::npos);
  CHECK(breakers.snapshot("pool-queue-breaker")->state == docpipe::BreakerState::kClosed);
  CHECK(breakers.snapshot("pool-queue-breaker")->consecutive_failures == 0);
}
