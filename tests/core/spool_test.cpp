// Spool moves on a real temp folder: claim, reject with an error file, finish.

#include "core/spool.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/support/fail_folder_opens.h"

namespace fs = std::filesystem;
using docpipe::ErrorCode;
using docpipe::Spool;

namespace {

struct SpoolFixture {
  SpoolFixture() {
    char tmpl[] = "/tmp/docpipe-spool-XXXXXX";
    root = ::mkdtemp(tmpl);
    spool = std::make_unique<Spool>(root + "/spool", /*durable=*/true);
    REQUIRE(spool->create_layout());
  }
  ~SpoolFixture() { fs::remove_all(root); }

  void put(const std::string& path, const std::string& content) { std::ofstream(path) << content; }
  static std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::string root;
  std::unique_ptr<Spool> spool;
};

}  // namespace

TEST_CASE("spool: create_layout makes every folder") {
  SpoolFixture f;
  for (const char* d : {"incoming", "active", "done", "failed", "rejected"}) {
    CHECK(fs::is_directory(f.root + "/spool/" + d));
  }
}

TEST_CASE("spool: job file names are *.json not starting with a dot") {
  CHECK(Spool::is_job_file_name("a.json"));
  CHECK_FALSE(Spool::is_job_file_name(".a.json"));
  CHECK_FALSE(Spool::is_job_file_name("a.json.tmp"));
  CHECK_FALSE(Spool::is_job_file_name(".json"));
  CHECK_FALSE(Spool::is_job_file_name("a.txt"));
}

TEST_CASE("spool: claim moves the file to active/ID.json and refuses a second active job") {
  SpoolFixture f;
  f.put(f.spool->incoming() + "/x.json", "{\"id\":\"j1\"}");
  REQUIRE(f.spool->claim("x.json", "j1"));
  CHECK(f.slurp(f.spool->active() + "/j1.json") == "{\"id\":\"j1\"}");
  CHECK_FALSE(fs::exists(f.spool->incoming() + "/x.json"));

  f.put(f.spool->incoming() + "/y.json", "second");
  auto st = f.spool->claim("y.json", "j1");
  REQUIRE_FALSE(st);
  CHECK(st.error().code == ErrorCode::kExists);
  CHECK(st.error().message.find("already active") != std::string::npos);
  CHECK(f.slurp(f.spool->active() + "/j1.json") == "{\"id\":\"j1\"}");  // untouched
  CHECK(fs::exists(f.spool->incoming() + "/y.json"));
}

TEST_CASE("spool: claim refuses an id that already finished") {
  SpoolFixture f;
  f.put(f.spool->done() + "/old.json", "{}");
  f.put(f.spool->incoming() + "/old.json", "{}");
  auto st = f.spool->claim("old.json", "old");
  REQUIRE_FALSE(st);
  CHECK(st.error().code == ErrorCode::kExists);
  CHECK(st.error().message.find("already run") != std::string::npos);
}

TEST_CASE("spool: reject writes NAME.error.json with every problem and moves the file") {
  SpoolFixture f;
  f.put(f.spool->incoming() + "/bad.json", "{oops");
  REQUIRE(f.spool->reject("bad.json", {{"input.dir", "expected string"}, {"", "second problem"}}));
  CHECK(f.slurp(f.spool->rejected() + "/bad.json") == "{oops");
  auto doc = nlohmann::json::parse(f.slurp(f.spool->rejected() + "/bad.json.error.json"));
  CHECK(doc["file"] == "bad.json");
  REQUIRE(doc["errors"].size() == 2);
  CHECK(doc["errors"][0]["path"] == "input.dir");
  CHECK(doc["errors"][0]["reason"] == "expected string");
  CHECK(doc["errors"][0]["message"] == "input.dir: expected string");
  CHECK(doc["errors"][1]["message"] == "second problem");
}

TEST_CASE("spool: finish moves job, manifest and report to done/ or failed/") {
  SpoolFixture f;
  f.put(f.spool->active() + "/a.json", "job-a");
  f.put(f.spool->active() + "/a.manifest.jsonl", "{}\n");
  REQUIRE(f.spool->finish("a", true, "{\"state\":\"succeeded\"}\n"));
  CHECK(f.slurp(f.spool->done() + "/a.json") == "job-a");
  CHECK(f.slurp(f.spool->done() + "/a.manifest.jsonl") == "{}\n");
  CHECK(f.slurp(f.spool->done() + "/a.report.json") == "{\"state\":\"succeeded\"}\n");
  CHECK(fs::is_empty(f.spool->active()));

  f.put(f.spool->active() + "/b.json", "job-b");
  REQUIRE(f.spool->finish("b", false, "{}\n"));
  CHECK(fs::exists(f.spool->failed() + "/b.json"));
  CHECK(fs::exists(f.spool->failed() + "/b.report.json"));
}

TEST_CASE("spool: finish called again after a failure part-way completes the move") {
  SpoolFixture f;
  f.put(f.spool->active_job("c"), "{\"id\":\"c\"}");
  f.put(f.spool->active_journal("c"), "journal");
  // An earlier attempt moved the job file, then failed (e.g. its folder fsync): only the
  // report and the journal's removal are left.
  fs::rename(f.spool->active_job("c"), f.spool->done() + "/c.json");
  REQUIRE(f.spool->finish("c", true, "{\"state\":\"succeeded\"}\n"));
  CHECK(SpoolFixture::slurp(f.spool->done() + "/c.report.json") == "{\"state\":\"succeeded\"}\n");
  CHECK(fs::exists(f.spool->done() + "/c.json"));
  CHECK_FALSE(fs::exists(f.spool->active_journal("c")));
}

TEST_CASE("spool: start-up cleanup removes temp files and journals whose job has left active/") {
  SpoolFixture f;
  const std::string active = f.spool->active();
  f.put(active + "/live.json", "{}");
  f.put(active + "/live.journal", "journal");
  f.put(active + "/live.manifest.jsonl", "{}\n");
  f.put(active + "/gone.journal", "journal");  // its job reached done/ before the crash
  f.put(active + "/gone.manifest.jsonl", "{}\n");
  f.put(active + "/.x.json.docpipe-tmp.0123456789ab", "half");
  f.put(f.spool->done() + "/.r.report.json.docpipe-tmp.0123456789ab", "half");
  // A job whose id merely contains ".tmp." is a job, active or finished.
  f.put(active + "/nightly.tmp.2024.json", "{}");
  f.put(f.spool->done() + "/old.tmp.1.report.json", "{}");
  f.put(f.spool->incoming() + "/.producer.tmp.1", "being written");  // a producer's: left alone
  f.spool->remove_stale_temp_files();
  CHECK(fs::exists(active + "/live.json"));
  CHECK(fs::exists(active + "/live.journal"));
  CHECK(fs::exists(active + "/live.manifest.jsonl"));
  CHECK_FALSE(fs::exists(active + "/gone.journal"));
  CHECK_FALSE(fs::exists(active + "/gone.manifest.jsonl"));
  CHECK_FALSE(fs::exists(active + "/.x.json.docpipe-tmp.0123456789ab"));
  CHECK_FALSE(fs::exists(f.spool->done() + "/.r.report.json.docpipe-tmp.0123456789ab"));
  CHECK(fs::exists(active + "/nightly.tmp.2024.json"));
  CHECK(fs::exists(f.spool->done() + "/old.tmp.1.report.json"));
  CHECK(fs::exists(f.spool->incoming() + "/.producer.tmp.1"));
}

namespace {

// Runs `step` in a child whose folder opens fail (EMFILE); its exit code, or -1 if it died.
template <typename Step>
int run_with_folder_opens_failing(Step step) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (!docpipe::test::fail_folder_opens()) ::_exit(90);
    ::_exit(step());
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

}  // namespace

TEST_CASE_FIXTURE(SpoolFixture, "spool: a claim whose folder fsync fails says the job is active") {
  put(spool->incoming() + "/x.json", "{}");
  int rc = run_with_folder_opens_failing([&] {
    bool moved = false;
    docpipe::Status st = spool->claim("x.json", "x", &moved);
    if (st) return 1;  // the fsync of active/ had to fail
    if (st.error().message.find("open folder") == std::string::npos) return 2;
    return moved ? 0 : 3;
  });
  CHECK(rc == 0);
  // The job is active, not lost: whoever claimed it must run it.
  CHECK(fs::exists(spool->active_job("x")));
  CHECK_FALSE(fs::exists(spool->incoming() + "/x.json"));
}

TEST_CASE_FIXTURE(SpoolFixture, "spool: an admit whose folder fsync fails says the job is active") {
  int rc = run_with_folder_opens_failing([&] {
    bool moved = false;
    docpipe::Status st = spool->admit("y", "{\"id\":\"y\"}", &moved);
    if (st) return 1;
    return moved ? 0 : 3;
  });
  CHECK(rc == 0);
  CHECK(slurp(spool->active_job("y")) == "{\"id\":\"y\"}");
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(spool->active())) files += e.is_regular_file();
  CHECK(files == 1);  // and no temp file beside it
}

TEST_CASE_FIXTURE(SpoolFixture, "spool: a claim that cannot rename says the job is not active") {
  bool moved = true;
  docpipe::Status st = spool->claim("missing.json", "m", &moved);
  CHECK_FALSE(st);
  CHECK_FALSE(moved);
}
