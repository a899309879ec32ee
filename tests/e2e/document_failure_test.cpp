// A document that cannot be processed (gunzip of a file that is not gzip) among valid ones: with
// max_failed_documents 0 the job fails, says which document and why, and accounts for every other
// document as processed or cancelled; with a limit of 1 the job succeeds despite it.

#include <doctest/doctest.h>

#include <cstdio>
#include <map>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

constexpr int kGood = 30;

struct FailureFixture {
  TempDir tmp;
  std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  std::string broken = in + "/doc-15-broken.gz";
  std::map<std::string, std::string> plain;  // input path -> its gunzipped content

  FailureFixture() {
    for (int i = 0; i < kGood; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "/doc-%02d.gz", i);
      std::string text = "document " + std::to_string(i) + "\n" +
                         std::string(3000, static_cast<char>('a' + i % 26));
      write_file(in + name, gzip(text));
      plain[in + name] = text;
    }
    write_file(broken, "this is plain text, not gzip\n");
  }

  nlohmann::json job(const std::string& id, int max_failed) const {
    nlohmann::json j = make_job(id, in, out, {{{"op", "gunzip"}}});
    j["output"]["suffix"] = ".txt";
    j["limits"] = {{"max_failed_documents", max_failed}};
    return j;
  }

  // The input path an output was written from.
  std::string input_of(const std::string& relative_output) const {
    return in + "/" + relative_output.substr(0, relative_output.size() - 4);
  }
};

TEST_CASE("e2e document failure: a corrupt document fails the job when max_failed_documents is 0") {
  FailureFixture f;
  DaemonProcess daemon(f.spool, {"--workers", "2"});
  daemon.start();
  drop_job(f.spool, "strict.json", f.job("strict", 0));
  JobOutcome outcome = daemon.wait_for_job("strict");
  nlohmann::json report = outcome.report;
  INFO("report: " << report.dump(2));
  CHECK(outcome.folder == "failed");
  CHECK(report["state"] == "failed");
  CHECK(report["reason"].get<std::string>().find("max_failed_documents") != std::string::npos);

  nlohmann::json counts = report["counts"];
  CHECK(counts["total"] == kGood + 1);
  CHECK(counts["failed"] == 1);
  CHECK(counts["skipped"] == 0);
  CHECK(counts["succeeded"].get<int>() + counts["failed"].get<int>() +
            counts["cancelled"].get<int>() ==
        kGood + 1);
  REQUIRE(report["failed_documents"].size() == 1);
  CHECK(report["failed_documents"][0]["input"] == f.broken);
  std::string error = report["failed_documents"][0]["error"];
  CHECK(error.find("doc-15-broken.gz") != std::string::npos);  // names the document ...
  CHECK(error.find("gzip") != std::string::npos);              // ... and what is wrong with it

  // What the report calls succeeded is on disk, whole and correct; nothing else is.
  std::vector<std::string> written = list_files(f.out);
  CHECK(written.size() == counts["succeeded"].get<size_t>());
  for (const std::string& rel : written) {
    INFO(rel);
    REQUIRE(f.plain.count(f.input_of(rel)) == 1);
    CHECK(read_file(f.out + "/" + rel) == f.plain[f.input_of(rel)]);
  }

  // The manifest lists the processed documents (not the cancelled ones) with their states.
  std::map<std::string, int> states;
  bool broken_listed = false;
  for (nlohmann::json line : read_json_lines(outcome.manifest_path)) {
    states[line["state"].get<std::string>()]++;
    if (line["input"] == f.broken) {
      broken_listed = true;
      CHECK(line["state"] == "failed");
      CHECK(line["error"] == error);
      CHECK(line["sha256"] == "");
    }
  }
  CHECK(broken_listed);
  CHECK(states["succeeded"] == counts["succeeded"].get<int>());
  CHECK(states["failed"] == 1);
  CHECK(states.count("cancelled") == 0);

  CHECK(daemon.wait_for_metric("docpipe_jobs_total", {{"outcome", "failed"}}, 1) == 1);
  CHECK(daemon.metric("docpipe_documents_total", {{"outcome", "failed"}}) == 1);
  CHECK(daemon.metric("docpipe_documents_total", {{"outcome", "succeeded"}}) ==
        counts["succeeded"].get<double>());
  CHECK(daemon.terminate() == 0);
}

TEST_CASE(
    "e2e document failure: a job within max_failed_documents succeeds and lists the failure") {
  FailureFixture f;
  DaemonProcess daemon(f.spool, {"--workers", "2"});
  daemon.start();
  drop_job(f.spool, "lenient.json", f.job("lenient", 1));
  JobOutcome outcome = daemon.wait_for_job("lenient");
  nlohmann::json report = outcome.report;
  INFO("report: " << report.dump(2));
  CHECK(outcome.folder == "done");
  CHECK(report["state"] == "succeeded");
  CHECK(report["counts"] == nlohmann::json{{"total", kGood + 1},
                                           {"succeeded", kGood},
                                           {"failed", 1},
                                           {"skipped", 0},
                                           {"cancelled", 0}});
  REQUIRE(report["failed_documents"].size() == 1);
  CHECK(report["failed_documents"][0]["input"] == f.broken);
  CHECK(list_files(f.out).size() == static_cast<size_t>(kGood));
  CHECK(read_json_lines(outcome.manifest_path).size() == static_cast<size_t>(kGood + 1));
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
