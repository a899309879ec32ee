// End-to-end through the pipeline with real files: outputs, if_exists, errors, digests, metrics.
#include "pipeline/pipeline.h"

#include <doctest/doctest.h>
#include <linux/capability.h>
#include <prometheus/registry.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cctype>
#include <set>
#include <thread>

#include "tests/pipeline/pipeline_test_names.h"

namespace docpipe {
namespace {

namespace fs = std::filesystem;

// Runs one job to its end and returns its outcomes by relative path.
std::map<std::string, DocumentOutcome> run_job(std::shared_ptr<FakeJob> job,
                                               PipelineOptions options = test_options(),
                                               PipelineMetrics* metrics = nullptr) {
  Pipeline pipeline(options, metrics);
  pipeline.add_job(job);
  REQUIRE(job->wait_finished());
  CHECK(pipeline.documents_in_flight() == 0);
  CHECK(pipeline.buffer_bytes_in_use() == 0);
  pipeline.stop();
  CHECK(job->finished_calls() == 1);
  CHECK_FALSE(job->cancelled());
  CHECK(job->outcome_count() == job->taken());
  return job->outcomes_by_path();
}

TEST_CASE("pipeline: transforms every document into byte-exact outputs in nested folders") {
  TempDir dir;
  const std::map<std::string, std::string> files = {
      {"a.txt", "hello, world\n"},
      {"sub/b.txt", testing::make_content(100000, 1)},
      {"sub/deeper/c.md", "# title\n"},
      {"empty.txt", ""},
  };
  auto docs = make_inputs(dir / "in", files);
  JobSpec spec = make_spec("job", dir / "out", chain_of({upper_step()}));
  spec.output.suffix = ".up";
  auto job = std::make_shared<FakeJob>(spec, docs);
  PipelineOptions options = test_options();
  options.fsync = true;
  auto outcomes = run_job(job, options);

  REQUIRE(outcomes.size() == files.size());
  for (const auto& [rel, content] : files) {
    CAPTURE(rel);
    const DocumentOutcome& o = outcomes.at(rel);
    const std::string expected = upper(content);
    CHECK(o.state == DocumentState::kSucceeded);
    CHECK(o.error.empty());
    CHECK(o.output_path == dir / "out/" + rel + ".up");
    CHECK(o.doc.input_path == dir / "in/" + rel);
    CHECK(read_file(o.output_path) == expected);
    CHECK(o.bytes_in == content.size());
    CHECK(o.bytes_out == expected.size());
    CHECK(o.sha256 == sha256_hex(expected));
    CHECK(o.attempts == 1);
    CHECK(o.duration_seconds > 0);
  }
  CHECK(outcomes.at("empty.txt").sha256 ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(temp_files_under(dir / "out").empty());
}

TEST_CASE("pipeline: an empty transform chain copies documents exactly") {
  TempDir dir;
  std::string binary = testing::make_content(5000, 2);
  binary[10] = '\0';
  binary[4999] = '\xff';
  auto docs = make_inputs(dir / "in", {{"bin.dat", binary}, {"x/y.txt", "copy me"}});
  auto job = std::make_shared<FakeJob>(make_spec("copy", dir / "out", nullptr), docs);
  auto outcomes = run_job(job);
  CHECK(read_file(dir / "out/bin.dat") == binary);
  CHECK(read_file(dir / "out/x/y.txt") == "copy me");
  CHECK(outcomes.at("bin.dat").sha256 == sha256_hex(binary));
  CHECK(outcomes.at("x/y.txt").bytes_out == 7);
  CHECK(temp_files_under(dir / "out").empty());
}

TEST_CASE("pipeline: if_exists replace overwrites, skip leaves unread, fail reports the file") {
  TempDir dir;
  auto docs = make_inputs(dir / "in", {{"a.txt", "new a"}, {"b.txt", "new b"}});
  struct Case {
    IfExists mode;
    const char* name;
  };
  for (Case c : {Case{IfExists::kReplace, "replace"}, Case{IfExists::kSkip, "skip"},
                 Case{IfExists::kFail, "fail"}}) {
    CAPTURE(c.name);
    const std::string out = dir / std::string("out-") + c.name;
    write_file(out + "/a.txt", "old a");
    JobSpec spec = make_spec(c.name, out, nullptr);
    spec.output.if_exists = c.mode;
    auto outcomes = run_job(std::make_shared<FakeJob>(spec, docs));

    // b.txt did not exist: written in every mode.
    CHECK(outcomes.at("b.txt").state == DocumentState::kSucceeded);
    CHECK(read_file(out + "/b.txt") == "new b");
    const DocumentOutcome& a = outcomes.at("a.txt");
    switch (c.mode) {
      case IfExists::kReplace:
        CHECK(a.state == DocumentState::kSucceeded);
        CHECK(read_file(out + "/a.txt") == "new a");
        break;
      case IfExists::kSkip:
        CHECK(a.state == DocumentState::kSkipped);
        CHECK(a.bytes_in == 0);  // not even read
        CHECK(a.sha256.empty());
        CHECK(a.error.empty());
        CHECK(read_file(out + "/a.txt") == "old a");
        break;
      case IfExists::kFail:
        CHECK(a.state == DocumentState::kFailed);
        CHECK(a.error == "output exists: " + out + "/a.txt (if_exists: fail)");
        CHECK(read_file(out + "/a.txt") == "old a");
        break;
      case IfExists::kUnchanged:  // needs a lineage store: tests/e2e/lineage_test.cpp
        FAIL("not a case of this test");
        break;
    }
    CHECK(temp_files_under(out).empty());
  }
}

TEST_CASE("pipeline: a failing document is reported and the others are unaffected") {
  TempDir dir;
  auto docs =
      make_inputs(dir / "in", {{"good1.txt", "one"}, {"bad.txt", "two"}, {"good2.txt", "three"}});
  auto job = std::make_shared<FakeJob>(
      make_spec("picky", dir / "out", chain_of({testing::picky_step()})), docs);
  auto outcomes = run_job(job);
  const DocumentOutcome& bad = outcomes.at("bad.txt");
  CHECK(bad.state == DocumentState::kFailed);
  CHECK(bad.error == dir / "in/bad.txt: upper: refusing bad.txt");
  CHECK(bad.sha256.empty());
  CHECK_FALSE(fs::exists(dir / "out/bad.txt"));
  CHECK(outcomes.at("good1.txt").state == DocumentState::kSucceeded);
  CHECK(outcomes.at("good2.txt").state == DocumentState::kSucceeded);
  CHECK(read_file(dir / "out/good1.txt") == "ONE");
  CHECK(read_file(dir / "out/good2.txt") == "THREE");
  CHECK(temp_files_under(dir / "out").empty());
}

TEST_CASE("pipeline: a transform that throws fails its document, not the process") {
  TempDir dir;
  auto docs = make_inputs(dir / "in", {{"boom.txt", "x"}, {"calm.txt", "y"}});
  auto throwing = std::make_shared<testing::FunctionStep>(
      [](const DocumentContext& doc, std::string_view in, std::string& out) -> Status {
        if (doc.name == "boom.txt") throw std::runtime_error("boom");
        out.append(in);
        return ok();
      });
  auto outcomes = run_job(
      std::make_shared<FakeJob>(make_spec("throw", dir / "out", chain_of({throwing})), docs));
  CHECK(outcomes.at("boom.txt").state == DocumentState::kFailed);
  CHECK(outcomes.at("boom.txt").error == dir / "in/boom.txt: transform failed: boom");
  CHECK(read_file(dir / "out/calm.txt") == "y");
  CHECK(temp_files_under(dir / "out").empty());
}

TEST_CASE("pipeline: a small input that grows while read is read on up to the stream threshold") {
  // /proc files are regular and say they hold 0 bytes, but read back more: a file that grew
  // between its fstat and its read, every time.
  TempDir dir;
  JobSpec spec = make_spec("grows", dir / "out", nullptr);
  spec.limits.max_attempts = 1;
  std::vector<DocumentRef> docs{{"/proc/self/status", "status.txt"}};
  PipelineOptions options = test_options();
  SUBCASE("within the threshold: read whole, as before") {
    auto job = std::make_shared<FakeJob>(spec, docs);
    Pipeline pipeline(options, nullptr);
    pipeline.add_job(job);
    REQUIRE(job->wait_finished());
    CHECK(job->outcomes().at(0).state == DocumentState::kSucceeded);
    CHECK(job->outcomes().at(0).bytes_in > 0);
  }
  SUBCASE("past it: refused as changed, never buffered without end") {
    options.stream_threshold_bytes = 64;
    auto job = std::make_shared<FakeJob>(spec, docs);
    Pipeline pipeline(options, nullptr);
    pipeline.add_job(job);
    REQUIRE(job->wait_finished());
    CHECK(job->outcomes().at(0).state == DocumentState::kFailed);
    CHECK(job->outcomes().at(0).error ==
          "read /proc/self/status: it grew past 64 bytes while read (it had 0 when opened)");
    CHECK_FALSE(fs::exists(dir / "out/status.txt"));
  }
}

TEST_CASE("pipeline: missing and non-regular inputs fail with a clear error") {
  TempDir dir;
  auto docs = make_inputs(dir / "in", {{"ok.txt", "fine"}});
  fs::create_directories(dir / "in/folder");
  REQUIRE(::mkfifo((dir / "in/fifo").c_str(), 0644) == 0);
  docs.push_back({dir / "in/missing.txt", "missing.txt"});
  docs.push_back({dir / "in/folder", "folder"});
  docs.push_back({dir / "in/fifo", "fifo"});  // must not hang the reader
  auto outcomes =
      run_job(std::make_shared<FakeJob>(make_spec("bad-inputs", dir / "out", nullptr), docs));
  CHECK(outcomes.at("ok.txt").state == DocumentState::kSucceeded);
  CHECK(outcomes.at("missing.txt").state == DocumentState::kFailed);
  CHECK(outcomes.at("missing.txt").error ==
        "read " + dir / "in/missing.txt" + ": No such file or directory");
  CHECK(outcomes.at("folder").error == "read " + dir / "in/folder" + ": not a regular file");
  CHECK(outcomes.at("fifo").error == "read " + dir / "in/fifo" + ": not a regular file");
  CHECK_FALSE(fs::exists(dir / "out/missing.txt"));
  CHECK(temp_files_under(dir / "out").empty());
}

// Capabilities are per thread and inherited by threads it creates: dropping the DAC overrides
// here makes a root test process see permission errors in the pipeline's threads only.
bool drop_dac_override() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  for (int cap : {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH}) {
    data[0].effective &= ~(1u << cap);
  }
  return ::syscall(SYS_capset, &header, data) == 0;
}

TEST_CASE("pipeline: an unreadable input fails with the path and Permission denied") {
  TempDir dir;
  auto docs = make_inputs(dir / "in", {{"secret.txt", "no"}, {"open.txt", "yes"}});
  REQUIRE(::chmod((dir / "in/secret.txt").c_str(), 0) == 0);
  auto job = std::make_shared<FakeJob>(make_spec("perm", dir / "out", nullptr), docs);
  std::map<std::string, DocumentOutcome> outcomes;
  bool dropped = true;
  std::thread runner([&] {
    if (::geteuid() == 0) dropped = drop_dac_override();
    if (dropped) outcomes = run_job(job);
  });
  runner.join();
  REQUIRE(dropped);
  CHECK(outcomes.at("secret.txt").state == DocumentState::kFailed);
  CHECK(outcomes.at("secret.txt").error == "read " + dir / "in/secret.txt" + ": Permission denied");
  CHECK(outcomes.at("open.txt").state == DocumentState::kSucceeded);
  CHECK(read_file(dir / "out/open.txt") == "yes");
}

TEST_CASE("pipeline: an output folder that cannot be created fails that document only") {
  TempDir dir;
  auto docs = make_inputs(dir / "in", {{"blocked/a.txt", "a"}, {"free/b.txt", "b"}});
  write_file(dir / "out/blocked", "a file where a folder should be");
  auto outcomes =
      run_job(std::make_shared<FakeJob>(make_spec("mkdir", dir / "out", nullptr), docs));
  CHECK(outcomes.at("blocked/a.txt").state == DocumentState::kFailed);
  CHECK(outcomes.at("blocked/a.txt").error ==
        "write " + dir / "out/blocked/a.txt" + ": Not a directory");
  CHECK(read_file(dir / "out/free/b.txt") == "b");
  CHECK(temp_files_under(dir / "out").empty());
}

TEST_CASE("pipeline: stage metrics count every document and settle back to zero") {
  TempDir dir;
  std::map<std::string, std::string> files;
  for (int i = 0; i < 20; ++i) files["f" + std::to_string(i) + ".txt"] = "doc " + std::to_string(i);
  auto docs = make_inputs(dir / "in", files);
  prometheus::Registry registry;
  PipelineMetrics metrics(registry);
  PipelineOptions options = test_options();
  options.memory_budget_bytes = 12345678;
  run_job(std::make_shared<FakeJob>(make_spec("m", dir / "out", chain_of({upper_step()})), docs),
          options, &metrics);
  for (Stage s : {Stage::kRead, Stage::kTransform, Stage::kWrite}) {
    CAPTURE(stage_name(s));
    CHECK(metrics.stage_duration(s).Collect().histogram.sample_count == 20);
    CHECK(metrics.queue_depth(s).Value() == 0);
    CHECK(metrics.in_flight(s).Value() == 0);
  }
  CHECK(metrics.buffer_bytes_in_use().Value() == 0);
  CHECK(metrics.memory_budget_bytes().Value() == 12345678);

  std::map<std::string, size_t> series;
  for (const auto& family : registry.Collect()) series[family.name] = family.metric.size();
  CHECK(series.at("docpipe_stage_duration_seconds") == 3);
  CHECK(series.at("docpipe_stage_queue_depth") == 3);
  CHECK(series.at("docpipe_stage_in_flight") == 3);
  CHECK(series.at("docpipe_buffer_bytes_in_use") == 1);
  CHECK(series.at("docpipe_memory_budget_bytes") == 1);
  const auto buckets = metrics.stage_duration(Stage::kRead).Collect().histogram.bucket;
  REQUIRE(buckets.size() == 19);  // 18 bounds and +Inf
  CHECK(buckets.front().upper_bound == doctest::Approx(50e-6));
  CHECK(buckets[17].upper_bound == doctest::Approx(291).epsilon(0.01));
}

TEST_CASE("pipeline: a copy job skips the transform stage") {
  TempDir dir;
  auto docs = make_inputs(dir / "in", {{"a", "1"}, {"b", "2"}});
  prometheus::Registry registry;
  PipelineMetrics metrics(registry);
  run_job(std::make_shared<FakeJob>(make_spec("id", dir / "out", nullptr), docs), test_options(),
          &metrics);
  CHECK(metrics.stage_duration(Stage::kRead).Collect().histogram.sample_count == 2);
  CHECK(metrics.stage_duration(Stage::kTransform).Collect().histogram.sample_count == 0);
  CHECK(metrics.stage_duration(Stage::kWrite).Collect().histogram.sample_count == 2);
}

TEST_CASE("pipeline: document_state_name and stage_name give the metric label values") {
  CHECK(std::string(document_state_name(DocumentState::kSucceeded)) == "succeeded");
  CHECK(std::string(document_state_name(DocumentState::kFailed)) == "failed");
  CHECK(std::string(document_state_name(DocumentState::kSkipped)) == "skipped");
  CHECK(std::string(document_state_name(DocumentState::kCancelled)) == "cancelled");
  CHECK(std::string(stage_name(Stage::kRead)) == "read");
  CHECK(std::string(stage_name(Stage::kTransform)) == "transform");
  CHECK(std::string(stage_name(Stage::kWrite)) == "write");
}

}  // namespace
}  // namespace docpipe

namespace docpipe {
namespace {

// A job whose first document_committing() (on the writer, before the first rename) waits at a
// gate, and which remembers how many outcomes each report to it carried.
class BatchedJob : public testing::FakeJob {
 public:
  using FakeJob::FakeJob;
  Status document_committing(const PendingOutput&) override {
    if (!held_.exchange(true)) gate.pass();
    return ok();
  }
  void documents_finished(std::vector<DocumentOutcome> outcomes) override {
    {
      std::lock_guard lock(sizes_mu_);
      sizes_.push_back(outcomes.size());
    }
    FakeJob::documents_finished(std::move(outcomes));
  }
  std::vector<size_t> sizes() const {
    std::lock_guard lock(sizes_mu_);
    return sizes_;
  }
  testing::Gate gate;

 private:
  std::atomic<bool> held_{false};
  mutable std::mutex sizes_mu_;
  std::vector<size_t> sizes_;
};

TEST_CASE(
    "pipeline: a writer takes what is queued as one batch and reports it to the job at once") {
  TempDir dir;
  std::map<std::string, std::string> files;
  for (int i = 0; i < 10; ++i)
    files["d/f" + std::to_string(i) + ".txt"] = "doc " + std::to_string(i);
  auto docs = make_inputs(dir / "in", files);
  prometheus::Registry registry;
  PipelineMetrics metrics(registry);
  PipelineOptions options = test_options();
  options.readers = 1;
  options.writers = 1;
  // A transform (a copy is written by its reader, see the tests below).
  auto job =
      std::make_shared<BatchedJob>(make_spec("b", dir / "out", chain_of({upper_step()})), docs);
  Pipeline pipeline(options, &metrics);
  OpenAtExit open_at_exit{job->gate};
  pipeline.add_job(job);
  // The writer holds its first document until the other nine are queued (the depth counts a
  // document until the writer starts on it, also one it took in its batch already).
  REQUIRE(job->gate.wait_reached());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (metrics.queue_depth(Stage::kWrite).Value() < 9) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::yield();
  }
  job->gate.release();
  REQUIRE(job->wait_finished());
  CHECK(job->outcome_count() == 10);
  for (const auto& o : job->outcomes()) CHECK(o.state == DocumentState::kSucceeded);
  // Two batches at most: what was queued at the first pop, then everything else at once. One
  // report per document would be ten.
  std::string sizes;
  size_t total = 0;
  for (size_t n : job->sizes()) {
    sizes += std::to_string(n) + " ";
    total += n;
  }
  CAPTURE(sizes);
  CHECK(job->sizes().size() <= 2);
  CHECK(total == 10);
  for (const auto& [name, content] : files) {
    std::string upper = content;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK(read_file(dir / ("out/" + name)) == upper);
  }
  CHECK(temp_files_under(dir / "out").empty());
}

// A job that notes the name of each thread that renames one of its outputs into place.
class WriterNamesJob : public BatchedJob {
 public:
  using BatchedJob::BatchedJob;
  Status document_committing(const PendingOutput&) override {
    char name[16] = {};
    ::pthread_getname_np(::pthread_self(), name, sizeof name);
    std::string stage = name;  // "dp-read-0": the stage without the thread's number
    stage = stage.substr(0, stage.rfind('-'));
    std::lock_guard lock(names_mu_);
    names_.insert(stage);
    return ok();
  }
  std::set<std::string> names() const {
    std::lock_guard lock(names_mu_);
    return names_;
  }

 private:
  mutable std::mutex names_mu_;
  std::set<std::string> names_;
};

TEST_CASE("pipeline: a reader writes the copies it reads itself, in batches of up to 16") {
  TempDir dir;
  std::map<std::string, std::string> files;
  for (int i = 0; i < 100; ++i) files["d" + std::to_string(i % 3) + "/f" + std::to_string(i)] = "c";
  auto docs = make_inputs(dir / "in", files);
  prometheus::Registry registry;
  PipelineMetrics metrics(registry);
  PipelineOptions options = test_options();
  options.readers = 1;
  options.fsync = true;  // the batch's folders are fsynced once each, as a writer's are
  auto job = std::make_shared<WriterNamesJob>(make_spec("c", dir / "out", nullptr), docs);
  run_job(job, options, &metrics);
  CHECK(job->names() == std::set<std::string>{"dp-read"});
  size_t total = 0;
  for (size_t n : job->sizes()) {
    CHECK(n <= 16);
    total += n;
  }
  CHECK(total == 100);
  CHECK(job->sizes().size() < 100);  // batched: not one report per document
  // One sample per document written, and one per batch whose folders were fsynced together.
  CHECK(metrics.stage_duration(Stage::kWrite).Collect().histogram.sample_count >= 100);
  CHECK(metrics.stage_duration(Stage::kTransform).Collect().histogram.sample_count == 0);
  for (const auto& [name, content] : files) CHECK(read_file(dir / ("out/" + name)) == content);
  CHECK(temp_files_under(dir / "out").empty());

  // Transformed documents still go to the writers.
  TempDir dir2;
  auto docs2 = make_inputs(dir2 / "in", {{"a", "x"}, {"b", "y"}});
  auto upper = std::make_shared<WriterNamesJob>(
      make_spec("u", dir2 / "out", chain_of({upper_step()})), docs2);
  run_job(upper, options);
  CHECK(upper->names() == std::set<std::string>{"dp-write"});
}

TEST_CASE("pipeline: a reader holding copies writes them before it waits for a slot or bytes") {
  TempDir dir;
  std::map<std::string, std::string> files;
  for (int i = 0; i < 40; ++i) files["f" + std::to_string(i)] = "0123456789";
  auto docs = make_inputs(dir / "in", files);
  PipelineOptions options = test_options();
  options.readers = 1;
  SUBCASE("two documents in flight: the reader's third slot waits for its own batch") {
    options.max_in_flight_documents = 2;
  }
  SUBCASE("a budget of 15 bytes: the second document's bytes wait for the first's") {
    options.memory_budget_bytes = 15;
  }
  auto job = std::make_shared<FakeJob>(make_spec("w", dir / "out", nullptr), docs);
  CHECK(run_job(job, options).size() == 40);
  for (const auto& [name, content] : files) CHECK(read_file(dir / ("out/" + name)) == content);
}

}  // namespace
}  // namespace docpipe
