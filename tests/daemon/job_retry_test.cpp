// docpipe retry's blocking half (daemon/job_retry.h) against a real spool in a temp folder:
// which documents a retry takes (failed and never finished, not succeeded or skipped, not gone),
// the job file it writes (input.only for a folder, input.files for a list), ids, and the link
// into the original's report, which a notification's rewrite keeps.

#include "daemon/job_retry.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

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

  // A finished job in done/ with the given job, manifest lines ({input, state}: the output is
  // the input's place beneath `out`) and report (by default: cancelled, so that documents the
  // manifest does not name were never finished).
  void finish(const std::string& id, const nlohmann::json& job,
              const std::vector<std::pair<std::string, std::string>>& records,
              nlohmann::json report = {{"id", "x"}, {"state", "cancelled"}}) {
    const std::string base = spool.done() + "/" + id;
    TempFolder::write(base + ".json", job.dump(2));
    std::string manifest;
    for (const auto& [input, state] : records) {
      const std::string output = out + input.substr(in.size());
      manifest += nlohmann::json{{"input", input}, {"output", output}, {"state", state}}.dump(
                      -1, ' ', false, nlohmann::json::error_handler_t::replace) +
                  "\n";
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
           {{f.in + "/a.txt", "succeeded"},
            {f.in + "/b.txt", "failed"},
            {f.in + "/sub/c.txt", "skipped"}});
  Result<RetryDraft> none =
      draft_retry(*load_finished_job(f.spool, "list-retry-4"), id, f.config, std::nullopt);
  REQUIRE_FALSE(none);
  CHECK(none.error().code == ErrorCode::kNotFound);
  CHECK(none.error().message.find("its 1 failed document(s) are not in its input now") !=
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
    CHECK(d.error().message.find("1 failed document(s) are not in its input now") !=
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
    TempFolder::write(f.spool.done() + "/bad.manifest.jsonl",
                      "{\"input\":\"/x\",\"output\":\"/y\"}\nnot json\n");
    Result<RetryDraft> d = draft_retry(*load_finished_job(f.spool, "bad"), "n", f.config, {});
    REQUIRE_FALSE(d);
    CHECK(d.error().message.find("line 2 is not a document record") != std::string::npos);
  }
  CHECK(load_finished_job(f.spool, "never").error().code == ErrorCode::kNotFound);
}

TEST_CASE("retry: a link is not written into a later job that reused the original's id") {
  RetryFixture f;
  f.finish("orig", f.dir_job("orig"), {},
           {{"id", "orig"}, {"state", "failed"}, {"finished_at", "2026-12-02T09:00:00.000Z"}});
  FinishedReports reports(f.spool.root(), false);
  // The retry was submitted before this job of the same id finished: not the one it retried.
  REQUIRE(link_retry(reports, "orig", "r", "2026-12-02T08:59:59.999Z"));
  CHECK_FALSE(nlohmann::json::parse(TempFolder::read(f.spool.done() + "/orig.report.json"))
                  .contains("retried_by"));
}

TEST_CASE("retry: a symlink and its target are two documents") {
  RetryFixture f;
  f.input("a.txt");
  REQUIRE(::symlink("a.txt", (f.in + "/l.txt").c_str()) == 0);
  // The walk names the link's document by its target's path, and its output by the link's.
  f.finish("links", f.dir_job("links"), {{f.in + "/a.txt", "succeeded"}});
  Result<RetryDraft> d = draft_retry(*load_finished_job(f.spool, "links"), "n", f.config, {});
  REQUIRE_MESSAGE(d, d.error().message);
  CHECK(nlohmann::json::parse(d->text)["input"]["only"] == nlohmann::json{"l.txt"});
  CHECK(d->cancelled == 1);
}

TEST_CASE("retry: a job that finished every document retries its failures not newer files") {
  RetryFixture f;
  f.input("a.txt");
  f.input("b.txt");
  f.input("new-since.txt");
  nlohmann::json report{
      {"state", "failed"},
      {"counts",
       {{"total", 2}, {"succeeded", 1}, {"failed", 1}, {"skipped", 0}, {"cancelled", 0}}}};
  f.finish("whole", f.dir_job("whole"),
           {{f.in + "/a.txt", "succeeded"}, {f.in + "/b.txt", "failed"}}, report);
  Result<RetryDraft> d = draft_retry(*load_finished_job(f.spool, "whole"), "n", f.config, {});
  REQUIRE_MESSAGE(d, d.error().message);
  CHECK(nlohmann::json::parse(d->text)["input"]["only"] == nlohmann::json{"b.txt"});
  CHECK(d->failed == 1);
  CHECK(d->cancelled == 0);
  CHECK(d->new_since == 1);
  // Its only failure fixed by hand and recorded: nothing left, and the newcomer is named.
  f.finish("whole", f.dir_job("whole"),
           {{f.in + "/a.txt", "succeeded"}, {f.in + "/b.txt", "succeeded"}}, report);
  Result<RetryDraft> none = draft_retry(*load_finished_job(f.spool, "whole"), "n", f.config, {});
  REQUIRE_FALSE(none);
  CHECK(none.error().message.find("1 document(s) came into its input after it ran") !=
        std::string::npos);
}

TEST_CASE("retry: a job whose walk was cut short retries what it never reached") {
  RetryFixture f;
  f.input("a.txt");
  f.input("b.txt");
  // As the daemon writes it when its input folder vanished before the walk: nothing counted as
  // done, and all_documents_seen false (the counts alone would look complete).
  f.finish("cut", f.dir_job("cut"), {},
           {{"state", "failed"},
            {"all_documents_seen", false},
            {"counts", {{"total", 0}, {"succeeded", 0}, {"failed", 0}, {"cancelled", 0}}}});
  Result<RetryDraft> d = draft_retry(*load_finished_job(f.spool, "cut"), "n", f.config, {});
  REQUIRE_MESSAGE(d, d.error().message);
  CHECK(d->cancelled == 2);
  CHECK(d->new_since == 0);
}

TEST_CASE("retry: a missing manifest is refused unless nothing was done") {
  RetryFixture f;
  f.input("a.txt");
  f.finish("lost", f.dir_job("lost"), {},
           {{"state", "failed"}, {"counts", {{"total", 1}, {"succeeded", 1}}}});
  fs::remove(f.spool.done() + "/lost.manifest.jsonl");
  Result<RetryDraft> d = draft_retry(*load_finished_job(f.spool, "lost"), "n", f.config, {});
  REQUIRE_FALSE(d);
  CHECK(d.error().message.find("its manifest") != std::string::npos);
  CHECK(d.error().message.find("is missing") != std::string::npos);
  // Opened when the job is loaded: removed after that, it is still read.
  f.finish("held", f.dir_job("held"), {{f.in + "/a.txt", "failed"}},
           {{"state", "failed"}, {"counts", {{"total", 1}, {"failed", 1}}}});
  Result<FinishedJob> held = load_finished_job(f.spool, "held");
  REQUIRE(held);
  fs::remove(f.spool.done() + "/held.manifest.jsonl");
  Result<RetryDraft> h = draft_retry(*held, "n", f.config, {});
  REQUIRE_MESSAGE(h, h.error().message);
  CHECK(h->failed == 1);
  // A job that ended before any document (nothing recorded): everything is to do.
  f.finish("empty", f.dir_job("empty"), {}, {{"state", "failed"}, {"counts", {{"total", 1}}}});
  fs::remove(f.spool.done() + "/empty.manifest.jsonl");
  Result<RetryDraft> e = draft_retry(*load_finished_job(f.spool, "empty"), "n", f.config, {});
  REQUIRE_MESSAGE(e, e.error().message);
  CHECK(e->cancelled == 1);
}

TEST_CASE("retry: a name that is not UTF-8 is matched as recorded and left out with a warning") {
  RetryFixture f;
  f.input("caf\xe9.txt");
  f.input("ok.txt");
  f.input("bad.txt");
  f.finish("latin", f.dir_job("latin"),
           {{f.in + "/caf\xe9.txt", "failed"},
            {f.in + "/ok.txt", "succeeded"},
            {f.in + "/bad.txt", "failed"}});
  // The manifest holds the name as the daemon writes it: invalid UTF-8 replaced (U+FFFD).
  Result<RetryDraft> d = draft_retry(*load_finished_job(f.spool, "latin"), "n", f.config, {});
  REQUIRE_MESSAGE(d, d.error().message);
  CHECK(nlohmann::json::parse(d->text)["input"]["only"] == nlohmann::json{"bad.txt"});
  CHECK(d->failed == 2);
  CHECK(d->documents == 1);
  CHECK(d->gone == 0);
  REQUIRE_FALSE(d->warnings.empty());
  CHECK(d->warnings.front().find("not valid UTF-8") != std::string::npos);
}

TEST_CASE("retry: the retry acts with only the groups its submitter still has") {
  Credentials then{1000, 100, {100, 200, 300}};
  Credentials now{1000, 100, {100, 300, 400}};
  Credentials who = retry_credentials(then, now);
  CHECK(who.uid == 1000);
  CHECK(who.gid == 100);
  CHECK(who.groups == std::vector<gid_t>{100, 300});
  Credentials gone{1000, static_cast<gid_t>(-1), {}};  // no user entry now
  Credentials bare = retry_credentials(then, gone);
  CHECK(bare.gid == static_cast<gid_t>(-1));
  CHECK(bare.groups.empty());
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
  f.finish("orig", f.dir_job("orig"), {},
           {{"id", "orig"}, {"state", "failed"}, {"finished_at", "2026-12-02T09:00:00.000Z"}});
  FinishedReports reports(f.spool.root(), false);
  const std::string path = f.spool.done() + "/orig.report.json";
  struct stat before;
  REQUIRE(::stat(path.c_str(), &before) == 0);
  const std::string later = "2026-12-02T10:00:00.000Z";
  REQUIRE(link_retry(reports, "orig", "orig-retry-1", later));
  REQUIRE(link_retry(reports, "orig", "orig-retry-1", later));  // again (its finish): once
  REQUIRE(link_retry(reports, "orig", "orig-retry-2", later));
  // Retention ages the job by its report's mtime: a link is not a new end.
  struct stat after;
  REQUIRE(::stat(path.c_str(), &after) == 0);
  CHECK(after.st_mtim.tv_sec == before.st_mtim.tv_sec);
  CHECK(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
  nlohmann::json report = nlohmann::json::parse(TempFolder::read(path));
  CHECK(report["retried_by"] == nlohmann::json{"orig-retry-1", "orig-retry-2"});
  CHECK(latest_retry(report) == "orig-retry-2");
  CHECK(report["state"] == "failed");
  // Another change (as the notifier's) starts from the report on disk: the links stay.
  REQUIRE(reports.update("orig", [](nlohmann::ordered_json& r) {
    r["notify"] = {{"x", 1}};
    return true;
  }));
  report = nlohmann::json::parse(TempFolder::read(path));
  CHECK(report["retried_by"].size() == 2);
  CHECK(report["notify"]["x"] == 1);
  // Pruned (its job file gone): nothing is written back.
  fs::remove(f.spool.done() + "/orig.json");
  fs::remove(path);
  Status gone = link_retry(reports, "orig", "orig-retry-3", later);
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

namespace docpipe {
namespace {

TEST_CASE("retry: retry_of in active/ counts only in a file the daemon wrote itself") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root to give the file to another user");
    return;
  }
  RetryFixture f;
  f.input("a.txt");
  nlohmann::json job = f.dir_job("planted");
  job["retry_of"] = "victim";
  const std::string path = f.spool.active_job("planted");
  TempFolder::write(path, job.dump());
  // The daemon's own file (a retry it admitted): resumed as written.
  IntakeResult own = load_active_job(f.spool, "planted", f.config);
  REQUIRE_MESSAGE(own.kind == IntakeResult::Kind::kAccepted, join_field_errors(own.errors));
  CHECK(own.job->spec.retry_of == "victim");
  // A claimed drop stays its producer's file: an edit after its check cannot plant a link.
  REQUIRE(::chown(path.c_str(), 65534, 65534) == 0);
  IntakeResult planted = load_active_job(f.spool, "planted", f.config);
  CHECK(planted.kind == IntakeResult::Kind::kRejected);
  CHECK(join_field_errors(planted.errors).find("retry_of: is written by `docpipe retry` only") !=
        std::string::npos);
}

}  // namespace
}  // namespace docpipe
