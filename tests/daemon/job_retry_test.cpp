// docpipe retry's blocking half (daemon/job_retry.h) against a real spool in a temp folder:
// which documents a retry takes (failed and never finished, not succeeded or skipped, not gone),
// the job file it writes (input.only for a folder, input.files for a list), ids, and the link
// into the original's report, which a notification's rewrite keeps.

#include "daemon/job_retry.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "core/job_spec.h"
#include "core/spool.h"
#include "daemon/intake.h"
#include "tests/support/temp_folder.h"

namespace docpipe {
namespace {

namespace fs = std::filesystem;
using test::TempFolder;

struct RetryFixture {
  TempFolder tmp{"/tmp", "retry"};
  std::string in = tmp.root() + "/in";
  std::string out = tmp.root() + "/out";
  Spool spool{tmp.root() + "/spool", false};
  DaemonConfig config;

  RetryFixture() {
    REQUIRE(spool.create_layout());
    fs::create_directories(in + "/sub");
    fs::create_directories(out);
  }

  void input(const std::string& rel) { TempFolder::write(in + "/" + rel, "x"); }

  // A finished job in done/ with the given job, manifest lines ({input, state}) and report.
  void finish(const std::string& id, const nlohmann::json& job,
              const std::vector<std::pair<std::string, std::string>>& records,
              nlohmann::json report = {{"id", "x"}, {"state", "failed"}}) {
    const std::string base = spool.done() + "/" + id;
    TempFolder::write(base + ".json", job.dump(2));
    std::string manifest;
    for (const auto& [input, state] : records) {
      manifest += nlohmann::json{{"input", input}, {"output", "o"}, {"state", state}}.dump() + "\n";
    }
    TempFolder::write(base + ".manifest.jsonl", manifest);
    TempFolder::write(base + ".report.json", report.dump(2));
  }

  nlohmann::json dir_job(const std::string& id) const {
    return {{"id", id},
            {"input", {{"dir", in}, {"exclude", {"*.skip"}}}},
            {"output", {{"dir", out}}},
            {"transforms", {{{"op", "gzip"}}}}};
  }
};

TEST_CASE(
    "retry: a folder job's failed and never-finished documents but not its done or gone ones") {
  RetryFixture f;
  for (const char* rel : {"ok.txt", "skipped.txt", "bad.txt", "sub/bad.txt", "sub/never.txt",
                          "never.txt", "left.skip"}) {
    f.input(rel);
  }
  f.finish("nightly", f.dir_job("nightly"),
           {{f.in + "/ok.txt", "succeeded"},
            {f.in + "/skipped.txt", "skipped"},
            {f.in + "/bad.txt", "failed"},
            {f.in + "/sub/bad.txt", "failed"},
            {f.in + "/gone.txt", "failed"}});  // its input was moved away since
  Result<FinishedJob> job = load_finished_job(f.spool, "nightly");
  REQUIRE(job);
  Result<RetryDraft> draft = draft_retry(*job, "nightly-retry-1", f.config, std::nullopt);
  REQUIRE_MESSAGE(draft, draft.error().message);
  CHECK(draft->documents == 4);
  CHECK(draft->failed == 2);
  CHECK(draft->cancelled == 2);
  CHECK(draft->gone == 1);
  nlohmann::json text = nlohmann::json::parse(draft->text);
  CHECK(text["id"] == "nightly-retry-1");
  CHECK(text["retry_of"] == "nightly");
  CHECK(text["transforms"] == f.dir_job("x")["transforms"]);
  CHECK(text["input"]["exclude"] == nlohmann::json{"*.skip"});
  const auto only = text["input"]["only"].get<std::set<std::string>>();
  CHECK(only == std::set<std::string>{"bad.txt", "sub/bad.txt", "sub/never.txt", "never.txt"});

  // The daemon's own text validates, counts exactly those, and a producer cannot send it.
  FieldErrors errors;
  auto validated = validate_job_text(draft->text, "x", "/", f.config, errors, std::nullopt, true,
                                     nullptr, nullptr, /*daemon_written=*/true);
  REQUIRE_MESSAGE(validated, join_field_errors(errors));
  CHECK(validated->documents == 4);
  CHECK(validated->spec.retry_of == "nightly");
  errors.clear();
  CHECK_FALSE(validate_job_text(draft->text, "x", "/", f.config, errors));
  CHECK(join_field_errors(errors).find("retry_of: is written by `docpipe retry` only") !=
        std::string::npos);
  CHECK(join_field_errors(errors).find("input.only: is written by `docpipe retry` only") !=
        std::string::npos);
}

TEST_CASE("retry: a files job keeps the files left to do and a retry of a retry counts on") {
  RetryFixture f;
  f.input("a.txt");
  f.input("b.txt");
  f.input("sub/c.txt");
  nlohmann::json job{
      {"id", "list-retry-4"},
      {"retry_of", "list-retry-3"},
      {"input", {{"files", {f.in + "/a.txt", f.in + "/b.txt", f.in + "/sub/c.txt"}}}},
      {"output", {{"dir", f.out}}}};
  f.finish("list-retry-4", job, {{f.in + "/a.txt", "succeeded"}, {f.in + "/b.txt", "failed"}});
  // after_success "delete" (or a hand) removed what succeeded: not a reason to refuse the rest.
  fs::remove(f.in + "/a.txt");
  Result<FinishedJob> finished = load_finished_job(f.spool, "list-retry-4");
  REQUIRE(finished);
  const std::string id = next_retry_id("list-retry-4", [](const std::string&) { return false; });
  CHECK(id == "list-retry-5");
  Result<RetryDraft> draft = draft_retry(*finished, id, f.config, std::nullopt);
  REQUIRE_MESSAGE(draft, draft.error().message);
  nlohmann::json text = nlohmann::json::parse(draft->text);
  CHECK(text["input"]["files"] == nlohmann::json{f.in + "/b.txt", f.in + "/sub/c.txt"});
  CHECK_FALSE(text["input"].contains("only"));
  CHECK(text["retry_of"] == "list-retry-4");
  CHECK(draft->failed == 1);
  CHECK(draft->cancelled == 1);
  CHECK(draft->gone == 0);

  // The failed file gone too, and c done: nothing is left, and the gone file is counted.
  fs::remove(f.in + "/b.txt");
  f.finish("list-retry-4", job,
           {{f.in + "/a.txt", "succeeded"}, {f.in + "/b.txt", "failed"},
            {f.in + "/sub/c.txt", "skipped"}});
  Result<RetryDraft> none = draft_retry(*load_finished_job(f.spool, "list-retry-4"), id,
                                        f.config, std::nullopt);
  REQUIRE_FALSE(none);
  CHECK(none.error().code == ErrorCode::kNotFound);
  CHECK(none.error().message.find("its 1 failed document(s) are no longer in its input") !=
        std::string::npos);
}

TEST_CASE(
    "retry: refused with nothing left or a job that no longer validates or a damaged manifest") {
  RetryFixture f;
  f.input("ok.txt");
  SUBCASE("every document succeeded: kNotFound, saying so") {
    f.finish("all", f.dir_job("all"), {{f.in + "/ok.txt", "succeeded"}});
    Result<RetryDraft> d = draft_retry(*load_finished_job(f.spool, "all"), "n", f.config, {});
    REQUIRE_FALSE(d);
    CHECK(d.error().code == ErrorCode::kNotFound);
    CHECK(d.error().message.find("nothing to retry") != std::string::npos);
  }
  SUBCASE("its only failure is gone: nothing left, and it says why") {
    f.finish("gone", f.dir_job("gone"),
             {{f.in + "/ok.txt", "succeeded"}, {f.in + "/moved.txt", "failed"}});
    Result<RetryDraft> d = draft_retry(*load_finished_job(f.spool, "gone"), "n", f.config, {});
    REQUIRE_FALSE(d);
    CHECK(d.error().message.find("1 failed document(s) are no longer in its input") !=
          std::string::npos);
  }
  SUBCASE("its input folder is now outside the allowed roots") {
    f.finish("moved", f.dir_job("moved"), {});
    f.config.allowed_input_roots = {f.out};
    Result<RetryDraft> d = draft_retry(*load_finished_job(f.spool, "moved"), "n", f.config, {});
    REQUIRE_FALSE(d);
    CHECK(d.error().message.find("cannot retry job \"moved\": its job is not valid now") == 0);
  }
  SUBCASE("a manifest line that is not a record") {
    f.finish("bad", f.dir_job("bad"), {});
    TempFolder::write(f.spool.done() + "/bad.manifest.jsonl", "{\"input\":\"/x\"}\nnot json\n");
    Result<RetryDraft> d = draft_retry(*load_finished_job(f.spool, "bad"), "n", f.config, {});
    REQUIRE_FALSE(d);
    CHECK(d.error().message.find("line 2 is not a document record") != std::string::npos);
  }
  CHECK(load_finished_job(f.spool, "never").error().code == ErrorCode::kNotFound);
}

TEST_CASE("retry: ids count on past the ones taken and give up when too long") {
  std::set<std::string> taken{"n-retry-1", "n-retry-2"};
  auto is_taken = [&](const std::string& id) { return taken.contains(id); };
  CHECK(next_retry_id("n", is_taken) == "n-retry-3");
  CHECK(next_retry_id("n-retry-1", is_taken) == "n-retry-3");
  CHECK(next_retry_id("n-retry-09", is_taken) == "n-retry-09-retry-1");
  CHECK(next_retry_id("-retry-5", is_taken) == "-retry-5-retry-1");
  CHECK(next_retry_id(std::string(125, 'a'), is_taken).empty());
}

TEST_CASE("retry: the link goes into the original's report once and a notify rewrite keeps it") {
  RetryFixture f;
  f.finish("orig", f.dir_job("orig"), {}, {{"id", "orig"}, {"state", "failed"}});
  FinishedReports reports(f.spool.root(), false);
  REQUIRE(link_retry(reports, "orig", "orig-retry-1"));
  REQUIRE(link_retry(reports, "orig", "orig-retry-1"));  // again (the retry's finish): once
  REQUIRE(link_retry(reports, "orig", "orig-retry-2"));
  const std::string path = f.spool.done() + "/orig.report.json";
  nlohmann::json report = nlohmann::json::parse(TempFolder::read(path));
  CHECK(report["retried_by"] == nlohmann::json{"orig-retry-1", "orig-retry-2"});
  CHECK(latest_retry(report) == "orig-retry-2");
  CHECK(report["state"] == "failed");
  // Another change (as the notifier's) starts from the report on disk: the links stay.
  REQUIRE(reports.update("orig", [](nlohmann::ordered_json& r) { r["notify"] = {{"x", 1}}; }));
  report = nlohmann::json::parse(TempFolder::read(path));
  CHECK(report["retried_by"].size() == 2);
  CHECK(report["notify"]["x"] == 1);
  // Pruned (its job file gone): nothing is written back.
  fs::remove(f.spool.done() + "/orig.json");
  fs::remove(path);
  Status gone = link_retry(reports, "orig", "orig-retry-3");
  REQUIRE_FALSE(gone);
  CHECK(gone.error().code == ErrorCode::kNotFound);
  CHECK_FALSE(fs::exists(path));
}

}  // namespace
}  // namespace docpipe

namespace docpipe {
namespace {

TEST_CASE("retry: input.only is a list of plain relative paths under input.dir each once") {
  auto errors_of = [](const nlohmann::json& input) {
    FieldErrors errors;
    JobParseOptions options{"j", "/", nullptr, /*daemon_written=*/true};
    nlohmann::json job{{"input", input}, {"output", {{"dir", "/tmp/o"}}}};
    parse_job(job.dump(), options, errors);
    return join_field_errors(errors);
  };
  CHECK(errors_of({{"dir", "/in"}, {"only", {"a.txt", "sub/b.txt"}}}).empty());
  CHECK(errors_of({{"dir", "/in"}, {"only", {"a/../../etc/passwd"}}})
            .find("input.only[0]: expected a path relative to input.dir") != std::string::npos);
  CHECK(errors_of({{"dir", "/in"}, {"only", {"/etc/passwd"}}}).find("input.only[0]") !=
        std::string::npos);
  CHECK(errors_of({{"dir", "/in"}, {"only", {"a", "b", "a"}}})
            .find("input.only[2]: is listed twice (also input.only[0])") != std::string::npos);
  CHECK(errors_of({{"dir", "/in"}, {"only", nlohmann::json::array()}}).find("input.only") !=
        std::string::npos);
  CHECK(errors_of({{"files", {"/in/a"}}, {"only", {"a"}}})
            .find("input.only: only allowed with input.dir") != std::string::npos);
}

}  // namespace
}  // namespace docpipe
