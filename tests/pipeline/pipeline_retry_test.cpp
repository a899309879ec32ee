// Through the pipeline on a FakeClock: transient failures retried after their backoff,
// document_timeout_ms, stop()'s grace; and several jobs at once.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "pipeline/backoff.h"
#include "pipeline/pipeline.h"
#include "tests/pipeline/pipeline_test_names.h"
#include "tests/support/fake_clock.h"

namespace docpipe {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

TEST_CASE("pipeline: a transient failure is retried and the outcome counts the attempts") {
  TempDir dir;
  auto docs = make_inputs(dir / "in",
                          {{"flaky.txt", "flaky"}, {"broken.txt", "broken"}, {"fine.txt", "fine"}});
  auto attempts = std::make_shared<std::map<std::string, int>>();
  auto mu = std::make_shared<std::mutex>();
  auto flaky = std::make_shared<FunctionStep>(
      [attempts, mu](const DocumentContext& doc, std::string_view in, std::string& out) -> Status {
        std::lock_guard lock(*mu);
        int n = ++(*attempts)[std::string(doc.name)];
        if ((doc.name == "flaky.txt" && n == 1) || doc.name == "broken.txt") {
          return make_error(ErrorCode::kIo, "flaky: device busy");
        }
        out.append(in);
        return ok();
      });
  JobSpec spec = make_spec("retry", dir / "out", chain_of({flaky}));
  spec.limits.max_attempts = 3;
  auto job = std::make_shared<FakeJob>(spec, docs);
  test::FakeClock clock;
  clock.set_advance_on_wait(true);  // each backoff passes as soon as a reader waits for it
  PipelineOptions options = test_options();
  options.clock = &clock;
  Pipeline pipeline(options, nullptr);
  pipeline.add_job(job);
  REQUIRE(job->wait_finished());
  auto outcomes = job->outcomes_by_path();
  CHECK(outcomes.at("flaky.txt").state == DocumentState::kSucceeded);
  CHECK(outcomes.at("flaky.txt").attempts == 2);
  CHECK(read_file(dir / "out/flaky.txt") == "flaky");
  CHECK(outcomes.at("broken.txt").state == DocumentState::kFailed);
  CHECK(outcomes.at("broken.txt").attempts == 3);
  CHECK(outcomes.at("broken.txt").error == dir / "in/broken.txt: flaky: device busy");
  CHECK(outcomes.at("fine.txt").attempts == 1);
  CHECK(job->outcome_count() == 3);
  CHECK(temp_files_under(dir / "out").empty());
}

TEST_CASE("pipeline: a kIo failure is retried only once its backoff is up") {
  TempDir dir;
  auto docs = make_inputs(dir / "in", {{"flaky.txt", "flaky"}});
  test::FakeClock clock;
  std::atomic<int> calls{0};
  auto flaky = std::make_shared<FunctionStep>(
      [&calls](const DocumentContext&, std::string_view in, std::string& out) -> Status {
        if (++calls == 1) return make_error(ErrorCode::kIo, "flaky: device busy");
        out.append(in);
        return ok();
      });
  JobSpec spec = make_spec("backoff-due", dir / "out", chain_of({flaky}));
  spec.limits.max_attempts = 2;
  auto job = std::make_shared<FakeJob>(spec, docs);
  PipelineOptions options = test_options();
  options.clock = &clock;
  options.jitter_seed = 99;
  options.readers = 1;  // one reader: the pending retry is one wait on the clock
  const Clock::duration delay = RetryJitter(99).delay(1);  // the pipeline's first draw
  Pipeline pipeline(options, nullptr);
  pipeline.add_job(job);
  REQUIRE(clock.await_blocked(1));  // attempt 1 failed; the reader waits for the retry
  clock.advance(delay - 1ms);
  REQUIRE(clock.await_blocked(2));  // woken, found it not due, waiting again
  CHECK(calls.load() == 1);
  CHECK(job->outcome_count() == 0);
  clock.advance(1ms);
  REQUIRE(job->wait_finished());
  CHECK(calls.load() == 2);
  const DocumentOutcome o = job->outcomes().at(0);
  CHECK(o.state == DocumentState::kSucceeded);
  CHECK(o.attempts == 2);
  // Read start of the last attempt to its end: no clock time passed in it.
  CHECK(o.duration_seconds == 0.0);
  CHECK(read_file(dir / "out/flaky.txt") == "flaky");
}

// A transform whose work takes `work` of the FakeClock's time: it moves the clock itself.
std::shared_ptr<FunctionStep> working_for(test::FakeClock& clock, Clock::duration work) {
  return std::make_shared<FunctionStep>(
      [&clock, work](const DocumentContext&, std::string_view in, std::string& out) {
        clock.advance(work);
        out.append(upper(std::string(in)));
        return ok();
      });
}

// One document NAME with `text` through a pipeline on a FakeClock whose transform works `work` of
// fake time per call, under document_timeout_ms 10 and up to `attempts` attempts. A non-zero
// `chunk_bytes` streams it in pieces of that size (stream_threshold_bytes 16).
DocumentOutcome run_on_fake_clock(const TempDir& dir, const std::string& name,
                                  const std::string& text, Clock::duration work, int attempts,
                                  size_t chunk_bytes = 0) {
  auto docs = make_inputs(dir / "in", {{name, text}});
  test::FakeClock clock;
  JobSpec spec = make_spec("timed", dir / "out", chain_of({working_for(clock, work)}));
  spec.limits.document_timeout_ms = 10;
  spec.limits.max_attempts = attempts;
  auto job = std::make_shared<FakeJob>(spec, docs);
  PipelineOptions options = test_options();
  options.clock = &clock;
  if (chunk_bytes > 0) {
    options.stream_threshold_bytes = 16;
    options.chunk_bytes = chunk_bytes;
  }
  Pipeline pipeline(options, nullptr);
  pipeline.add_job(job);
  REQUIRE(job->wait_finished());
  return job->outcomes().at(0);
}

// One document, NAME with text "doc", held whole, up to 3 attempts.
DocumentOutcome run_timed(const TempDir& dir, const std::string& name, Clock::duration work) {
  return run_on_fake_clock(dir, name, "doc", work, 3);
}

TEST_CASE("pipeline: a document over document_timeout_ms fails without a retry") {
  TempDir dir;
  DocumentOutcome o = run_timed(dir, "slow.txt", 50ms);
  CHECK(o.state == DocumentState::kFailed);
  CHECK(o.error == dir / "in/slow.txt: timed out after 10 ms (document_timeout_ms)");
  CHECK(o.attempts == 1);
  CHECK_FALSE(fs::exists(dir / "out/slow.txt"));
}

TEST_CASE("pipeline: a document within document_timeout_ms succeeds - its duration is clock time") {
  TempDir dir;
  DocumentOutcome o = run_timed(dir, "quick.txt", 9ms);
  CHECK(o.state == DocumentState::kSucceeded);
  CHECK(o.attempts == 1);
  CHECK(o.duration_seconds == doctest::Approx(0.009));
  CHECK(read_file(dir / "out/quick.txt") == "DOC");
}

// A document streamed in 8 chunks of 8 bytes through a transform that works `per_chunk` of fake
// time on each, under document_timeout_ms 10.
DocumentOutcome run_streamed(const TempDir& dir, Clock::duration per_chunk) {
  return run_on_fake_clock(dir, "big.txt", std::string(64, 'x'), per_chunk, 1, 8);
}

TEST_CASE("pipeline: a streamed document that keeps making progress never times out") {
  TempDir dir;
  // 8 chunks x 6 ms = 48 ms, far past the 10 ms limit, but no chunk takes 10 ms.
  DocumentOutcome o = run_streamed(dir, 6ms);
  CHECK(o.state == DocumentState::kSucceeded);
  CHECK(o.duration_seconds == doctest::Approx(0.048));
  CHECK(read_file(dir / "out/big.txt") == std::string(64, 'X'));
}

TEST_CASE("pipeline: a streamed document stuck in one chunk times out") {
  TempDir dir;
  DocumentOutcome o = run_streamed(dir, 11ms);
  CHECK(o.state == DocumentState::kFailed);
  CHECK(o.error == dir / "in/big.txt: timed out after 10 ms (document_timeout_ms)");
  CHECK_FALSE(fs::exists(dir / "out/big.txt"));
}

// Works until the pipeline interrupts its document, checking as a long transform does between
// steps; the real-time bound only keeps a broken pipeline from hanging the test.
class UntilInterrupted : public TransformStep {
 public:
  std::unique_ptr<DocumentTransform> begin(const DocumentContext& doc) const override {
    return std::make_unique<Run>(doc.check_interrupted, started_);
  }
  // Blocks until a document's work has begun.
  bool wait_started() { return started_->wait_reached(); }

 private:
  class Run : public DocumentTransform {
   public:
    Run(std::function<Status()> check, std::shared_ptr<Gate> started)
        : check_(std::move(check)), started_(std::move(started)) {}
    Status update(std::string_view, std::string&) override {
      {
        std::lock_guard lock(started_->mu);
        started_->reached = true;
        started_->cv.notify_all();
      }
      const auto bound = std::chrono::steady_clock::now() + 60s;
      while (std::chrono::steady_clock::now() < bound) {
        Status st = check_();
        if (!st) return st;
        std::this_thread::yield();
      }
      return make_error(ErrorCode::kInternal, "never interrupted");
    }
    Status finish(std::string&) override { return ok(); }

   private:
    std::function<Status()> check_;
    std::shared_ptr<Gate> started_;
  };
  std::shared_ptr<Gate> started_ = std::make_shared<Gate>();  // only its "reached" is used
};

TEST_CASE("pipeline: stop waits out its grace by the clock, then cuts documents short") {
  TempDir dir;
  auto docs = make_inputs(dir / "in", {{"long.txt", "long"}});
  test::FakeClock clock;
  auto step = std::make_shared<UntilInterrupted>();
  auto job = std::make_shared<FakeJob>(make_spec("grace", dir / "out", chain_of({step})), docs);
  PipelineOptions options = test_options();
  options.clock = &clock;
  Pipeline pipeline(options, nullptr);
  pipeline.add_job(job);
  REQUIRE(step->wait_started());
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    pipeline.stop(1000ms);
    stopped = true;
  });
  struct Join {
    test::FakeClock& clock;
    std::thread& t;
    ~Join() {
      clock.advance(24h);  // a failed REQUIRE: end the grace, so stop() can return
      if (t.joinable()) t.join();
    }
  } join{clock, stopper};
  REQUIRE(clock.await_blocked(1));  // stop() waits for the document in flight
  clock.advance(999ms);
  REQUIRE(clock.await_blocked(2));  // woken, still in the grace, waiting again
  CHECK_FALSE(stopped.load());
  CHECK(pipeline.documents_in_flight() == 1);
  clock.advance(1ms);
  REQUIRE(job->wait_outcomes(1));
  const DocumentOutcome o = job->outcomes().at(0);
  CHECK(o.state == DocumentState::kCancelled);
  CHECK(o.error.empty());
  CHECK(job->finished_calls() == 0);  // interrupted, not finished: it stays resumable
  CHECK_FALSE(fs::exists(dir / "out/long.txt"));
}

TEST_CASE("pipeline: stop with a grace returns once the last document completes") {
  TempDir dir;
  auto docs = make_inputs(dir / "in", {{"doc.txt", "doc"}});
  test::FakeClock clock;
  auto gate = std::make_shared<Gate>();
  auto gated = gated_copy(gate);
  auto job = std::make_shared<FakeJob>(make_spec("drain", dir / "out", chain_of({gated})), docs);
  PipelineOptions options = test_options();
  options.clock = &clock;
  Pipeline pipeline(options, nullptr);
  OpenAtExit open_at_exit{*gate};
  pipeline.add_job(job);
  REQUIRE(gate->wait_reached());
  std::thread stopper([&] { pipeline.stop(1000ms); });
  struct Join {
    Gate& gate;
    std::thread& t;
    ~Join() {
      gate.release();  // a failed REQUIRE: let the document complete, so stop() can return
      if (t.joinable()) t.join();
    }
  } join{*gate, stopper};
  REQUIRE(clock.await_blocked(1));
  const Clock::time_point before = clock.now();
  gate->release();
  stopper.join();  // woken by the completion, not by the clock
  CHECK(clock.now() == before);
  CHECK(job->outcomes().at(0).state == DocumentState::kSucceeded);
  CHECK(read_file(dir / "out/doc.txt") == "doc");
}

TEST_CASE("pipeline: several jobs run at once and each finishes once") {
  TempDir dir;
  std::map<std::string, std::string> files;
  for (int i = 0; i < 50; ++i) files["f" + std::to_string(i)] = make_content(1000, i);
  auto docs = make_inputs(dir / "in", files);
  Pipeline pipeline(test_options(), nullptr);
  std::vector<std::shared_ptr<FakeJob>> jobs;
  for (int j = 0; j < 5; ++j) {
    jobs.push_back(std::make_shared<FakeJob>(
        make_spec("j" + std::to_string(j), dir / ("out" + std::to_string(j)),
                  j % 2 ? chain_of({upper_step()}) : nullptr, j),
        docs));
    pipeline.add_job(jobs.back());
  }
  auto empty = std::make_shared<FakeJob>(make_spec("none", dir / "none", nullptr),
                                         std::vector<DocumentRef>{});
  pipeline.add_job(empty);
  for (auto& job : jobs) {
    REQUIRE(job->wait_finished());
    CHECK(job->finished_calls() == 1);
    CHECK(job->outcome_count() == 50);
  }
  REQUIRE(empty->wait_finished());
  CHECK(empty->outcome_count() == 0);
  for (int j = 0; j < 5; ++j) {
    const std::string out = dir / ("out" + std::to_string(j));
    CHECK(read_file(out + "/f7") == (j % 2 ? upper(files["f7"]) : files["f7"]));
  }
}

}  // namespace
}  // namespace docpipe
