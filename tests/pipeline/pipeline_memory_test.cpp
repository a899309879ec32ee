// Through the pipeline: large documents streamed in bounded memory, outputs spilled, and the byte
// budget with its transform overdraft.
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

}  // namespace
}  // namespace docpipe
