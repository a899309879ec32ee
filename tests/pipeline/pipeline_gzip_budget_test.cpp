// Through the pipeline: the gzip transform charges a document it holds whole to the byte budget
// (DocumentContext::try_reserve_bytes), goes on in blocks when the budget has no room, and every
// charge is gone once the document settles.
#include <doctest/doctest.h>
#include <zlib.h>

#include <nlohmann/json.hpp>

#include "core/transform.h"
#include "pipeline/pipeline.h"
#include "tests/pipeline/pipeline_test_names.h"

namespace docpipe {
namespace {

std::shared_ptr<const TransformStep> gzip_step(int level) {
  FieldErrors errors;
  auto step = TransformRegistry::instance().find("gzip")->configure(
      nlohmann::json{{"level", level}}, TransformEnv{}, errors);
  REQUIRE(step != nullptr);
  return step;
}

// zlib's inflate of exactly one gzip member.
std::string gunzip_one(const std::string& in) {
  z_stream zs{};
  REQUIRE(inflateInit2(&zs, 31) == Z_OK);
  std::string out(1 << 16, '\0');
  size_t used = 0;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    if (used == out.size()) out.resize(out.size() * 2);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + used);
    zs.avail_out = static_cast<uInt>(out.size() - used);
    rc = inflate(&zs, Z_NO_FLUSH);
    used = out.size() - zs.avail_out;
  }
  CHECK(rc == Z_STREAM_END);
  CHECK(zs.avail_in == 0);
  inflateEnd(&zs);
  out.resize(used);
  return out;
}

TEST_CASE("pipeline: gzip charges a document it holds whole and the charge ends with it") {
  TempDir dir;
  const std::string big = make_content(12u << 20, 3);   // streamed: over the 8 MiB threshold
  const std::string small = make_content(2u << 20, 4);  // held by the pipeline already
  auto docs = make_inputs(dir / "in", {{"big.txt", big}, {"small.txt", small}});
  PipelineOptions options = test_options();
  options.workers = 1;  // one document at a time: the peak is one document's charge
  auto job =
      std::make_shared<FakeJob>(make_spec("gz", dir / "out", chain_of({gzip_step(6)})), docs);
  Pipeline pipeline(options, nullptr);
  pipeline.add_job(job);
  REQUIRE(job->wait_finished());
  // 12 MiB held and libdeflate's bound for its output: charged, not hidden.
  CHECK(pipeline.buffer_bytes_peak() >= 2 * big.size());
  CHECK(pipeline.buffer_bytes_in_use() == 0);
  pipeline.stop();
  for (const auto& [name, content] : {std::pair{"big.txt", &big}, std::pair{"small.txt", &small}}) {
    CAPTURE(name);
    CHECK(job->outcomes_by_path().at(name).state == DocumentState::kSucceeded);
    CHECK(gunzip_one(read_file(dir / "out/" + name)) == *content);
  }
}

TEST_CASE("pipeline: gzip without room in the budget compresses in blocks and releases all") {
  TempDir dir;
  const std::string big = make_content(12u << 20, 5);
  auto docs = make_inputs(dir / "in", {{"big.txt", big}});
  PipelineOptions options = test_options();
  options.memory_budget_bytes = 4u << 20;  // room for a chunk and a little more, not 12 MiB
  options.chunk_bytes = 256u << 10;
  auto job =
      std::make_shared<FakeJob>(make_spec("gz", dir / "out", chain_of({gzip_step(1)})), docs);
  Pipeline pipeline(options, nullptr);
  pipeline.add_job(job);
  REQUIRE(job->wait_finished());
  CHECK(pipeline.buffer_bytes_peak() <= options.memory_budget_bytes + (1u << 20));
  CHECK(pipeline.buffer_bytes_in_use() == 0);
  pipeline.stop();
  CHECK(job->outcomes().at(0).state == DocumentState::kSucceeded);
  CHECK(gunzip_one(read_file(dir / "out/big.txt")) == big);
}

}  // namespace
}  // namespace docpipe
