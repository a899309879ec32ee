// Through the pipeline: fairness between jobs, cancel_job (in flight, queued, streamed) and stop.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "pipeline/pipeline.h"
#include "tests/pipeline/pipeline_test_names.h"

namespace docpipe {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

TEST_CASE("pipeline: a one-document job is not stuck behind a 10,000-document job") {
  TempDir dir;
  auto input = make_inputs(dir / "in", {{"x.txt", "x"}, {"one.txt", "one"}});
  PipelineOptions options = test_options();
  options.max_in_flight_documents = 4;
  options.queue_capacity = 4;
  options.walk_ahead = 1;  // one document per walk: the counts of picks below are exact
  // The big job's documents wait at a gate in the transform, so the pipeline fills up (4 slots)
  // and stands still while the small job is added: the picks that follow are deterministic.
  auto gate = std::make_shared<Gate>();
  auto gated = gated_copy(gate);
  auto big =
      std::make_shared<FakeJob>(make_spec("big", dir / "out-big", chain_of({gated})),
                                [&](size_t i) -> std::optional<DocumentRef> {
                                  if (i >= 10000) return std::nullopt;
                                  return DocumentRef{input[1].input_path, "d/" + std::to_string(i)};
                                });
  // The small job's generator runs under the scheduler's lock: it sees how many documents the
  // big job had been asked for when the small one's turn came.
  std::atomic<size_t> big_taken_at_pick{0};
  auto small = std::make_shared<FakeJob>(make_spec("small", dir / "out-small", nullptr),
                                         [&](size_t i) -> std::optional<DocumentRef> {
                                           if (i > 0) return std::nullopt;
                                           big_taken_at_pick = big->taken();
                                           return input[0];
                                         });
  std::atomic<size_t> big_done_when_small_done{10001};
  small->on_document = [&](const DocumentOutcome&) {
    big_done_when_small_done = big->outcome_count();
  };
  Pipeline pipeline(options, nullptr);
  OpenAtExit open_at_exit{*gate};
  pipeline.add_job(big);
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (pipeline.documents_in_flight() < options.max_in_flight_documents) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::yield();
  }
  REQUIRE(big->taken() == options.max_in_flight_documents);
  pipeline.add_job(small);
  // Two more slots while the gate stays shut: the scheduler hands out exactly two documents.
  pipeline.reconfigure(options.workers, options.max_in_flight_documents + 2,
                       options.memory_budget_bytes);
  // (Its job finishes only once the scheduler, asked for more, finds it exhausted: below.)
  REQUIRE(small->wait_outcomes(1));
  // Round-robin: exactly one more document of the big job before the small one's turn.
  CHECK(big_taken_at_pick == options.max_in_flight_documents + 1);
  // The small document (a copy: no transformer needed) finished while every big document was
  // still held at the gate; first-come-first-served would have made it wait for all 10,000.
  CHECK(big_done_when_small_done == 0);
  CHECK(small->outcomes().at(0).state == DocumentState::kSucceeded);
  CHECK(pipeline.cancel_job("big"));
  gate->release();
  REQUIRE(small->wait_finished());
  CHECK_FALSE(small->cancelled());
  REQUIRE(big->wait_finished());
  CHECK(big->cancelled());
  CHECK(big->outcome_count() == big->taken());
  // Cancelled before the gate opened: none of them was written.
  for (const auto& o : big->outcomes()) CHECK(o.state == DocumentState::kCancelled);
}

TEST_CASE("pipeline: cancel_job cancels every document still in flight") {
  TempDir dir;
  auto input = make_inputs(dir / "in", {{"doc.txt", "some text"}});
  PipelineOptions options = test_options();
  options.max_in_flight_documents = 16;
  // The first 50 transform calls pass; later ones wait at the gate, so when the test cancels,
  // 50 documents are done and every other document taken is still in the pipeline.
  constexpr int kPassed = 50;
  auto gate = std::make_shared<Gate>();
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto gated = std::make_shared<FunctionStep>(
      [gate, calls](const DocumentContext&, std::string_view in, std::string& out) {
        if (++*calls > kPassed) gate->pass();
        out.append(upper(std::string(in)));
        return ok();
      });
  Pipeline pipeline(options, nullptr);
  OpenAtExit open_at_exit{*gate};
  auto job = endless_job("endless", input[0].input_path, dir / "out", chain_of({gated}));
  pipeline.add_job(job);
  REQUIRE(job->wait_outcomes(kPassed));
  REQUIRE(gate->wait_reached());
  REQUIRE(job->outcome_count() == kPassed);  // the rest are held at (or before) the gate
  const auto start = std::chrono::steady_clock::now();
  CHECK(pipeline.cancel_job("endless"));
  gate->release();
  REQUIRE(job->wait_finished(10s));
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  CHECK(job->cancelled());
  CHECK(job->finished_calls() == 1);
  CHECK(job->outcome_count() == job->taken());  // every document taken got its outcome
  // Taken: those admitted, plus at most one walk ahead of admission.
  CHECK(job->taken() <= kPassed + options.max_in_flight_documents + options.walk_ahead);
  // Only the transformers held at the gate ran past the cancel; nothing was started after it.
  CHECK(*calls <= kPassed + options.workers);
  CHECK_FALSE(pipeline.cancel_job("endless"));
  CHECK(pipeline.documents_in_flight() == 0);
  CHECK(pipeline.buffer_bytes_in_use() == 0);
  size_t succeeded = 0, cancelled = 0;
  for (const auto& o : job->outcomes()) {
    CAPTURE(o.doc.relative_path);
    if (o.state == DocumentState::kSucceeded) ++succeeded;
    if (o.state == DocumentState::kCancelled) ++cancelled;
  }
  CHECK(succeeded == kPassed);
  CHECK(cancelled == job->taken() - kPassed);
  pipeline.stop();
  CHECK(job->finished_calls() == 1);
  CHECK(temp_files_under(dir / "out").empty());
  size_t written = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir / "out")) {
    if (entry.is_regular_file()) ++written;
  }
  CHECK(written == kPassed);
}

TEST_CASE(
    "pipeline: a transient failure seen after a cancel is cancelled unless it was the last "
    "attempt") {
  TempDir dir;
  auto input = make_inputs(dir / "in", {{"doc.txt", "text"}});
  // Every document fails transiently, after the cancel: the gate holds it until then.
  auto gate = std::make_shared<Gate>();
  auto failing = std::make_shared<FunctionStep>(
      [gate](const DocumentContext&, std::string_view, std::string&) -> Status {
        gate->pass();
        return make_error(ErrorCode::kCommandFailed, "conv: exited with status 1");
      });
  // The job with `max_attempts`, its one document failing after the cancel: its one outcome.
  auto cancelled_then_failed = [&](int max_attempts) {
    JobSpec spec = make_spec("j", dir / "out", chain_of({failing}));
    spec.limits.max_attempts = max_attempts;
    auto job = std::make_shared<FakeJob>(spec, input);
    Pipeline pipeline(test_options(), nullptr);
    OpenAtExit open_at_exit{*gate};
    pipeline.add_job(job);
    REQUIRE(gate->wait_reached());
    REQUIRE(pipeline.cancel_job("j"));
    gate->release();
    REQUIRE(job->wait_finished());
    REQUIRE(job->outcome_count() == 1);
    return job->outcomes().at(0);
  };
  SUBCASE("attempts left: the document was not done, so it is cancelled") {
    const auto outcome = cancelled_then_failed(3);
    CHECK(outcome.state == DocumentState::kCancelled);
    CHECK(outcome.attempts == 1);
  }
  SUBCASE("its last attempt: the failure stands") {
    const auto outcome = cancelled_then_failed(1);
    CHECK(outcome.state == DocumentState::kFailed);
    CHECK(outcome.error.find("exited with status 1") != std::string::npos);
  }
}

TEST_CASE("pipeline: no transform starts after cancel_job returns") {
  // One transformer, which cancels the job from inside its fifth call: with cancel reaching the
  // pipeline's documents, that call is the last, whatever was admitted or queued meanwhile.
  TempDir dir;
  auto input = make_inputs(dir / "in", {{"doc.txt", "text"}});
  PipelineOptions options = test_options();
  options.workers = 1;
  options.max_in_flight_documents = 64;
  constexpr size_t kTotal = 10000;
  constexpr int kCancelAt = 5;
  Pipeline* running = nullptr;
  std::atomic<int> calls{0};
  std::atomic<bool> cancel_found_job{false};
  auto counting = std::make_shared<FunctionStep>(
      [&](const DocumentContext&, std::string_view in, std::string& out) {
        if (++calls == kCancelAt) cancel_found_job = running->cancel_job("many");
        out.append(in);
        return ok();
      });
  auto job =
      std::make_shared<FakeJob>(make_spec("many", dir / "out", chain_of({counting})),
                                [&](size_t i) -> std::optional<DocumentRef> {
                                  if (i >= kTotal) return std::nullopt;
                                  return DocumentRef{input[0].input_path, "d/" + std::to_string(i)};
                                });
  Pipeline pipeline(options, nullptr);
  running = &pipeline;
  pipeline.add_job(job);
  REQUIRE(job->wait_finished());
  CHECK(cancel_found_job);
  CHECK(job->cancelled());
  CHECK(calls == kCancelAt);
  CHECK(job->taken() <= kCancelAt + options.max_in_flight_documents + options.walk_ahead);
  CHECK(job->outcome_count() == job->taken());
  size_t succeeded = 0, cancelled = 0;
  for (const auto& o : job->outcomes()) {
    if (o.state == DocumentState::kSucceeded) ++succeeded;
    if (o.state == DocumentState::kCancelled) ++cancelled;
  }
  CHECK(succeeded + cancelled == job->outcome_count());
  // The fifth document itself is cancelled at the writer; the four before it may be written.
  CHECK(succeeded < static_cast<size_t>(kCancelAt));
  if (fs::exists(dir / "out")) CHECK(temp_files_under(dir / "out").empty());
}

TEST_CASE("pipeline: cancelling a job stops a streamed document between chunks") {
  TempDir dir;
  auto docs = make_inputs(dir / "in", {{"big.txt", make_content(12u << 20, 3)}});
  auto gate = std::make_shared<Gate>();
  auto gated = gated_copy(gate);
  PipelineOptions options = test_options();
  options.chunk_bytes = 64u << 10;
  Pipeline pipeline(options, nullptr);
  auto job = std::make_shared<FakeJob>(make_spec("stream", dir / "out", chain_of({gated})), docs);
  pipeline.add_job(job);
  REQUIRE(gate->wait_reached());  // the first chunk is in the transform
  CHECK(anonymous_files_under(dir / "out") == 1);  // its output is being written
  CHECK(temp_files_under(dir / "out").empty());
  CHECK(pipeline.cancel_job("stream"));
  gate->release();
  REQUIRE(job->wait_finished());
  CHECK(job->cancelled());
  auto outcomes = job->outcomes();
  REQUIRE(outcomes.size() == 1);
  CHECK(outcomes[0].state == DocumentState::kCancelled);
  CHECK(outcomes[0].bytes_in < (12u << 20));  // it did not run to the end
  CHECK_FALSE(fs::exists(dir / "out/big.txt"));
  CHECK(temp_files_under(dir / "out").empty());
  CHECK(anonymous_files_under(dir / "out") == 0);  // dropped, not left open
}

TEST_CASE("pipeline: stop joins cleanly while a job is running") {
  TempDir dir;
  auto input = make_inputs(dir / "in", {{"doc.txt", "text"}});
  auto job = endless_job("running", input[0].input_path, dir / "out");
  auto late = endless_job("late", input[0].input_path, dir / "out-late");
  {
    Pipeline pipeline(test_options(), nullptr);
    pipeline.add_job(job);
    REQUIRE(job->wait_outcomes(50));
    pipeline.stop();
    CHECK(pipeline.documents_in_flight() == 0);
    CHECK(pipeline.buffer_bytes_in_use() == 0);
    pipeline.stop();  // idempotent
    pipeline.add_job(late);
    CHECK_FALSE(pipeline.cancel_job("running"));
  }
  CHECK(job->finished_calls() == 0);  // dropped, not finished
  CHECK(job->outcome_count() == job->taken());
  CHECK(late->taken() == 0);
  CHECK(temp_files_under(dir / "out").empty());

  // The destructor stops a running pipeline too.
  auto again = endless_job("again", input[0].input_path, dir / "out-again");
  {
    Pipeline pipeline(test_options(), nullptr);
    pipeline.add_job(again);
    REQUIRE(again->wait_outcomes(10));
  }
  CHECK(again->outcome_count() == again->taken());
}

}  // namespace
}  // namespace docpipe
