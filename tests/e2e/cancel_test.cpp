// Cancel reaches the documents in flight (issue 9, item 21): `docpipe cancel` of a job whose
// documents are being transformed ends those documents as cancelled, at once. Each document here
// takes 8 s (test.sleep), so none can finish in the time a cancel takes: a cancel that only
// stopped the job from taking more documents would let the two in flight succeed.

#include <doctest/doctest.h>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

TEST_CASE("e2e cancel: documents in flight when their job is cancelled end cancelled, not done") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool", in = tmp / "in", out = tmp / "out";
  constexpr int kDocuments = 4;
  for (int i = 0; i < kDocuments; ++i) {
    write_file(in + "/doc-" + std::to_string(i) + ".txt", "document " + std::to_string(i));
  }
  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  drop_job(spool, "slow.json", make_job("slow", in, out, {{{"op", "test.sleep"}, {"ms", 8000}}}));
  // Both transformers hold a document.
  REQUIRE(daemon.wait_for_metric("docpipe_stage_in_flight", {{"stage", "transform"}}, 2) == 2);

  CommandResult cancel = docpipe({"cancel", "--spool", spool, "slow"}, tmp.path());
  INFO("stdout: " << cancel.out << "\nstderr: " << cancel.err);
  CHECK(cancel.exit_code == 0);
  JobOutcome outcome = daemon.wait_for_job("slow");
  nlohmann::json report = outcome.report;
  INFO("report: " << report.dump(2));
  CHECK(outcome.folder == "failed");
  CHECK(report["state"] == "cancelled");
  CHECK(report["counts"]["total"] == kDocuments);
  CHECK(report["counts"]["succeeded"] == 0);
  CHECK(report["counts"]["failed"] == 0);
  CHECK(report["counts"]["cancelled"] == kDocuments);
  CHECK(read_json_lines(outcome.manifest_path).empty());
  const std::vector<std::string> written =
      file_exists(out) ? list_files(out) : std::vector<std::string>{};
  CHECK(written.empty());
  CHECK(daemon.metric("docpipe_stage_in_flight", {{"stage", "transform"}}) == 0);
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
