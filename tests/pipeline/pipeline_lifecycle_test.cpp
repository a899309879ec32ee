// End-to-end through the pipeline: large documents, the memory bound, fairness, retries,
// timeouts, cancel and stop.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "pipeline/pipeline.h"
#include "tests/pipeline/pipeline_test_support.h"

namespace docpipe {
namespace {

using namespace std::chrono_literals;
using testing::chain_of;
using testing::FakeJob;
using testing::FunctionStep;
using testing::make_content;
using testing::make_inputs;
using testing::make_spec;
using testing::read_file;
using testing::sha256_hex;
using testing::temp_files_under;
using testing::TempDir;
using testing::upper;
using testing::upper_step;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

using testing::test_options;

// A job that never runs out: document i is the same small input under the name "d/i.txt".
std::shared_ptr<FakeJob> endless_job(const std::string& id, const std::string& input,
                                     const std::string& out_dir,
                                     std::shared_ptr<const TransformChain> chain = nullptr) {
  return std::make_shared<FakeJob>(make_spec(id, out_dir, std::move(chain)),
                                   [input](size_t i) -> std::optional<DocumentRef> {
                                     std::string rel = "d/" + std::to_string(i) + ".txt";
                                     return DocumentRef{input, rel};
                                   });
}

// Blocks a transform until the test opens it, and tells the test when it is reached.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool reached = false;
  bool open = false;

  void pass() {
    std::unique_lock lock(mu);
    reached = true;
    cv.notify_all();
    cv.wait(lock, [&] { return open; });
  }
  bool wait_reached() {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 60s, [&] { return reached; });
  }
  void release() {
    std::lock_guard lock(mu);
    open = true;
    cv.notify_all();
  }
};

// Opens a gate when the test leaves its scope, also by a failed REQUIRE: declared after the
// Pipeline, it runs first, so the pipeline's threads can finish and be joined.
struct OpenAtExit {
  Gate& gate;
  ~OpenAtExit() { gate.release(); }
};

TEST_CASE("pipeline: a document larger than the threshold is streamed in bounded memory") {
  TempDir dir;
  const std::string big = make_content(20u << 20, 7);
  auto docs = make_inputs(dir / "in", {{"big.txt", big}, {"small.txt", "small"}});
  PipelineOptions options = test_options();
  options.memory_budget_bytes = 4u << 20;
  options.chunk_bytes = 256u << 10;
  REQUIRE(big.size() > options.stream_threshold_bytes);
  for (bool transform : {true, false}) {
    CAPTURE(transform);
    const std::string out = dir / (transform ? "out-upper" : "out-copy");
    auto job = std::make_shared<FakeJob>(
        make_spec("big", out, transform ? chain_of({upper_step()}) : nullptr), docs);
    Pipeline pipeline(options, nullptr);
    pipeline.add_job(job);
    REQUIRE(job->wait_finished());
    // One chunk and that chunk's output at a time (beside the small document), never 20 MiB.
    CHECK(pipeline.buffer_bytes_peak() <= 2 * options.chunk_bytes + 5);
    CHECK(pipeline.buffer_bytes_in_use() == 0);
    pipeline.stop();
    const std::string expected = transform ? upper(big) : big;
    auto outcomes = job->outcomes_by_path();
    const DocumentOutcome& o = outcomes.at("big.txt");
    CHECK(o.state == DocumentState::kSucceeded);
    CHECK(o.bytes_in == big.size());
    CHECK(o.bytes_out == expected.size());
    CHECK(o.sha256 == sha256_hex(expected));
    CHECK((read_file(out + "/big.txt") == expected));
    CHECK(read_file(out + "/small.txt") == (transform ? "SMALL" : "small"));
    CHECK(temp_files_under(out).empty());
  }
}

TEST_CASE("pipeline: a small document a transform blows up past the threshold is spilled") {
  // 512 KiB in, 64 x out (32 MiB): held whole it would be 32 MiB; spilled to the temp file as it
  // grows, the pipeline holds the input plus about one piece's output at a time.
  TempDir dir;
  const std::string input = make_content(512u << 10, 11);
  auto docs = make_inputs(dir / "in", {{"bomb.txt", input}});
  auto times64 = std::make_shared<testing::FunctionStep>(
      [](const DocumentContext&, std::string_view in, std::string& out) {
        for (char c : in) out.append(64, c);
        return ok();
      });
  PipelineOptions options = test_options();
  options.stream_threshold_bytes = 1u << 20;
  auto job = std::make_shared<FakeJob>(make_spec("spill", dir / "out", chain_of({times64})), docs);
  Pipeline pipeline(options, nullptr);
  pipeline.add_job(job);
  REQUIRE(job->wait_finished());
  CHECK(pipeline.buffer_bytes_peak() < (8u << 20));
  pipeline.stop();
  std::string expected;
  expected.reserve(input.size() * 64);
  for (char c : input) expected.append(64, c);
  const DocumentOutcome o = job->outcomes_by_path().at("bomb.txt");
  CHECK(o.state == DocumentState::kSucceeded);
  CHECK(o.bytes_out == expected.size());
  CHECK(o.sha256 == sha256_hex(expected));
  CHECK((read_file(dir / "out/bomb.txt") == expected));
  CHECK(temp_files_under(dir / "out").empty());
}

TEST_CASE("pipeline: a streamed document a whole-document step gathers is charged in full") {
  TempDir dir;
  const std::string big = make_content(12u << 20, 9);
  auto docs = make_inputs(dir / "in", {{"big.txt", big}});
  PipelineOptions options = test_options();
  options.memory_budget_bytes = 32u << 20;
  options.chunk_bytes = 256u << 10;
  REQUIRE(big.size() > options.stream_threshold_bytes);
  for (bool whole : {false, true}) {
    CAPTURE(whole);
    JobSpec spec =
        make_spec("big", dir / (whole ? "out-whole" : "out-chunked"), chain_of({upper_step()}));
    spec.holds_whole_documents = whole;
    auto job = std::make_shared<FakeJob>(std::move(spec), docs);
    Pipeline pipeline(options, nullptr);
    pipeline.add_job(job);
    REQUIRE(job->wait_finished());
    if (whole) {
      CHECK(pipeline.buffer_bytes_peak() >= big.size());  // what the step really holds
    } else {
      CHECK(pipeline.buffer_bytes_peak() <= 2 * options.chunk_bytes);
    }
    CHECK(pipeline.buffer_bytes_in_use() == 0);
    CHECK(job->outcomes().at(0).state == DocumentState::kSucceeded);
    pipeline.stop();
  }
}

TEST_CASE("pipeline: buffer bytes stay within the budget plus transform overdraft") {
  TempDir dir;
  constexpr size_t kDocs = 300;
  constexpr size_t kDocSize = 4096;
  std::map<std::string, std::string> files;
  for (size_t i = 0; i < kDocs; ++i) files["f" + std::to_string(i)] = make_content(kDocSize, i);
  auto docs = make_inputs(dir / "in", files);
  PipelineOptions options = test_options();
  options.memory_budget_bytes = 4 * kDocSize;
  options.queue_capacity = 64;

  SUBCASE("an output no larger than its input never overdraws") {
    auto job =
        std::make_shared<FakeJob>(make_spec("u", dir / "out", chain_of({upper_step()})), docs);
    Pipeline pipeline(options, nullptr);
    pipeline.add_job(job);
    REQUIRE(job->wait_finished());
    CHECK(pipeline.buffer_bytes_peak() <= options.memory_budget_bytes);
    CHECK(pipeline.buffer_bytes_peak() >= kDocSize);
    CHECK(pipeline.buffer_bytes_in_use() == 0);
    CHECK(job->outcome_count() == kDocs);
  }
  SUBCASE("a doubling transform overdraws at most its growth per admitted document") {
    auto job = std::make_shared<FakeJob>(
        make_spec("d", dir / "out", chain_of({testing::double_step()})), docs);
    Pipeline pipeline(options, nullptr);
    pipeline.add_job(job);
    REQUIRE(job->wait_finished());
    // At most budget / kDocSize documents are admitted at once, each grown by kDocSize.
    CHECK(pipeline.buffer_bytes_peak() <= 2 * options.memory_budget_bytes);
    CHECK(pipeline.buffer_bytes_in_use() == 0);
    auto outcomes = job->outcomes();
    REQUIRE(outcomes.size() == kDocs);
    for (const auto& o : outcomes) CHECK(o.bytes_out == 2 * kDocSize);
  }
  CHECK(temp_files_under(dir / "out").empty());
}

TEST_CASE("pipeline: a one-document job is not stuck behind a 10,000-document job") {
  TempDir dir;
  auto input = make_inputs(dir / "in", {{"x.txt", "x"}, {"one.txt", "one"}});
  PipelineOptions options = test_options();
  options.max_in_flight_documents = 4;
  options.queue_capacity = 4;
  // The big job's documents wait at a gate in the transform, so the pipeline fills up (4 slots)
  // and stands still while the small job is added: the picks that follow are deterministic.
  auto gate = std::make_shared<Gate>();
  auto gated = std::make_shared<FunctionStep>(
      [gate](const DocumentContext&, std::string_view in, std::string& out) {
        gate->pass();
        out.append(in);
        return ok();
      });
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
  const auto deadline = Clock::now() + 60s;
  while (pipeline.documents_in_flight() < options.max_in_flight_documents) {
    REQUIRE(Clock::now() < deadline);
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
  const auto start = Clock::now();
  CHECK(pipeline.cancel_job("endless"));
  gate->release();
  REQUIRE(job->wait_finished(10s));
  CHECK(Clock::now() - start < 2s);
  CHECK(job->cancelled());
  CHECK(job->finished_calls() == 1);
  CHECK(job->outcome_count() == job->taken());  // every document taken got its outcome
  CHECK(job->taken() <= kPassed + options.max_in_flight_documents);
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
  CHECK(job->taken() <= kCancelAt + options.max_in_flight_documents);
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
  auto gated = std::make_shared<FunctionStep>(
      [gate](const DocumentContext&, std::string_view in, std::string& out) {
        gate->pass();
        out.append(in);
        return ok();
      });
  PipelineOptions options = test_options();
  options.chunk_bytes = 64u << 10;
  Pipeline pipeline(options, nullptr);
  auto job = std::make_shared<FakeJob>(make_spec("stream", dir / "out", chain_of({gated})), docs);
  pipeline.add_job(job);
  REQUIRE(gate->wait_reached());  // the first chunk is in the transform
  CHECK(temp_files_under(dir / "out").size() == 1);
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
  Pipeline pipeline(test_options(), nullptr);
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

TEST_CASE("pipeline: a document over document_timeout_ms fails without a retry") {
  TempDir dir;
  auto docs = make_inputs(dir / "in", {{"slow.txt", "slow"}});
  // A transform that takes at least 50 ms of work.
  auto slow = std::make_shared<FunctionStep>(
      [](const DocumentContext&, std::string_view in, std::string& out) {
        const auto until = Clock::now() + 50ms;
        std::string work(in);
        while (Clock::now() < until) work = upper(work);
        out.append(work);
        return ok();
      });
  JobSpec spec = make_spec("timeout", dir / "out", chain_of({slow}));
  spec.limits.document_timeout_ms = 10;
  spec.limits.max_attempts = 3;
  auto job = std::make_shared<FakeJob>(spec, docs);
  Pipeline pipeline(test_options(), nullptr);
  pipeline.add_job(job);
  REQUIRE(job->wait_finished());
  auto o = job->outcomes().at(0);
  CHECK(o.state == DocumentState::kFailed);
  CHECK(o.error == dir / "in/slow.txt: timed out after 10 ms (document_timeout_ms)");
  CHECK(o.attempts == 1);
  CHECK_FALSE(fs::exists(dir / "out/slow.txt"));
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
