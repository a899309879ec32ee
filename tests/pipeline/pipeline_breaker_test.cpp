// Through the pipeline on a FakeClock with a command's circuit breaker: documents that wait on
// an open breaker are not charged attempts and hold no budget, the half-open probe decides, and
// cancel and stop end the wait. The "command" is a test step that asks the breakers as exec does
// (tests/core/transform_exec_test.cpp and the e2e tests run the real exec).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "core/command_breaker.h"
#include "pipeline/pipeline.h"
#include "tests/pipeline/pipeline_test_support.h"
#include "tests/support/fake_clock.h"

namespace docpipe {
namespace {

using namespace std::chrono_literals;
using testing::FakeJob;
using testing::TempDir;

struct CommandState {
  std::atomic<bool> down{true};
  std::atomic<int> runs{0};
  std::atomic<int> failures{0};
};

// Copies the document, "running the command conv" once per document as exec does: admitted by
// the breakers first, then failing while `down`.
class ConvStep : public TransformStep {
 public:
  explicit ConvStep(std::shared_ptr<CommandState> state) : state_(std::move(state)) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext& doc) const override {
    return std::make_unique<Run>(state_, doc.breakers);
  }
  std::vector<std::string> commands() const override { return {"conv"}; }

 private:
  class Run : public DocumentTransform {
   public:
    Run(std::shared_ptr<CommandState> state, CommandBreakers* breakers)
        : state_(std::move(state)), breakers_(breakers) {}
    Status update(std::string_view in, std::string& out) override {
      Status st = start();
      if (st) out.append(in);
      return st;
    }
    Status finish(std::string&) override {
      Status st = start();
      if (st) run_.succeeded();
      return st;
    }

   private:
    Status start() {
      if (started_) return ok();
      if (breakers_ == nullptr) return make_error(ErrorCode::kInternal, "conv: no breakers");
      CommandAdmission a = breakers_->admit("conv");
      if (!a.admitted) return make_error(ErrorCode::kUnavailable, "conv: " + a.reason);
      run_ = std::move(a.run);
      started_ = true;
      ++state_->runs;
      if (state_->down) {
        ++state_->failures;
        run_.failed(CommandFailure::kExited, "exited with status 1");
        return make_error(ErrorCode::kCommandFailed, "conv: exited with status 1");
      }
      return ok();
    }
    std::shared_ptr<CommandState> state_;
    CommandBreakers* breakers_;
    CommandRun run_;
    bool started_ = false;
  };
  std::shared_ptr<CommandState> state_;
};

// Polls `cond` every millisecond of real time for up to 30 s (the stage threads run for real).
template <typename F>
bool eventually(F cond) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

struct Fixture {
  TempDir dir;
  test::FakeClock clock;
  std::shared_ptr<CommandBreakers> breakers = std::make_shared<CommandBreakers>(clock);
  std::shared_ptr<CommandState> command = std::make_shared<CommandState>();
  std::shared_ptr<FakeJob> job;
  std::unique_ptr<Pipeline> pipeline;

  explicit Fixture(size_t documents) {
    breakers->configure({{"conv", {.failures = 2, .open_ms = 1000, .max_open_ms = 4000}}});
    std::map<std::string, std::string> files;
    for (size_t i = 0; i < documents; ++i) files["d" + std::to_string(i) + ".txt"] = "doc";
    auto docs = testing::make_inputs(dir / "in", files);
    JobSpec spec = testing::make_spec("brk", dir / "out",
                                      testing::chain_of({std::make_shared<ConvStep>(command)}));
    spec.limits.max_attempts = 3;
    job = std::make_shared<FakeJob>(spec, docs);
    PipelineOptions options = testing::test_options();
    options.clock = &clock;
    options.workers = 1;
    options.walk_ahead = 1;
    options.jitter_seed = 7;
    options.breakers = breakers;
    pipeline = std::make_unique<Pipeline>(options, nullptr);
    pipeline->add_job(job);
  }
  ~Fixture() { pipeline->stop(0ms); }

  BreakerState state() const { return breakers->snapshot("conv")->state; }

  // The breaker is open and the readers have settled into waiting: nothing holds budget.
  void await_open_and_idle() {
    REQUIRE(eventually([&] { return state() == BreakerState::kOpen; }));
    REQUIRE(
        eventually([&] { return pipeline->buffer_bytes_in_use() == 0 && clock.waiters() >= 2; }));
  }
};

TEST_CASE("pipeline: documents waiting on an open breaker are not charged attempts") {
  Fixture f(6);
  f.await_open_and_idle();
  const int failures = f.command->failures.load();
  CHECK(failures >= 2);
  CHECK(f.job->outcome_count() == 0);  // nothing failed: they wait

  // The failed documents' retries fall due (their backoff is at most 150 ms) but the breaker
  // holds them back too.
  const size_t blocked = f.clock.blocked_count();
  f.clock.advance(500ms);
  REQUIRE(f.clock.await_blocked(blocked + 1));
  REQUIRE(eventually([&] { return f.clock.waiters() >= 2; }));
  CHECK(f.command->runs.load() == failures);  // nothing ran the command while it was open
  CHECK(f.job->outcome_count() == 0);
  CHECK(f.pipeline->buffer_bytes_in_use() == 0);

  // The command is back: the probe succeeds, the breaker closes and every document goes.
  f.command->down = false;
  f.clock.advance(500ms);
  REQUIRE(f.job->wait_finished());
  CHECK(f.state() == BreakerState::kClosed);
  CHECK(f.job->outcome_count() == 6);
  int charged = 0;
  for (const DocumentOutcome& o : f.job->outcomes()) {
    CHECK(o.state == DocumentState::kSucceeded);
    charged += o.attempts - 1;
  }
  CHECK(charged == failures);  // one attempt per real failure, none for waiting
  CHECK(f.command->runs.load() == 6 + failures);
  CHECK(testing::read_file(f.dir / "out/d5.txt") == "doc");
}

TEST_CASE("pipeline: a failed probe charges its document and re-opens the breaker for longer") {
  Fixture f(4);
  f.await_open_and_idle();
  const int failures = f.command->failures.load();
  f.clock.advance(1000ms);  // the probe runs and fails
  REQUIRE(eventually([&] { return f.command->failures.load() == failures + 1; }));
  REQUIRE(eventually([&] {
    auto s = f.breakers->snapshot("conv");
    return s->state == BreakerState::kOpen && s->open_ms == 2000 && s->failed_probes == 1;
  }));
  CHECK(f.command->runs.load() == failures + 1);  // exactly one probe ran
  CHECK(f.job->outcome_count() == 0);
  // Cancel ends the wait: every document comes back cancelled, none failed.
  REQUIRE(f.pipeline->cancel_job("brk"));
  REQUIRE(f.job->wait_finished());
  CHECK(f.job->cancelled());
  // Every document taken comes back cancelled; those never taken (held back) get no outcome.
  CHECK(f.job->outcome_count() == f.job->taken());
  CHECK(f.job->outcome_count() >= 2);
  for (const DocumentOutcome& o : f.job->outcomes()) CHECK(o.state == DocumentState::kCancelled);
  CHECK(f.command->runs.load() == failures + 1);
}

TEST_CASE("pipeline: stop is prompt while documents wait on an open breaker") {
  Fixture f(4);
  f.await_open_and_idle();
  // A whole minute of grace by the (fake) clock, which never moves: stop returns because the
  // waiting documents are handed out as cancelled at once, not because the grace ran out.
  f.pipeline->stop(60000ms);
  CHECK(f.pipeline->documents_in_flight() == 0);
  CHECK(f.job->finished_calls() == 0);  // dropped, resumable
  for (const DocumentOutcome& o : f.job->outcomes()) CHECK(o.state == DocumentState::kCancelled);
}

}  // namespace
}  // namespace docpipe
