// A thousand small documents through redact (email, card) + gzip, checked end to end: every
// output, the report, the manifest and the metrics.

#include <doctest/doctest.h>

#include <cstdio>
#include <map>

#include "tests/e2e/corpus.h"
#include "tests/e2e/harness.h"

namespace e2e {
namespace {

TEST_CASE(
    "e2e redact gzip: 1000 documents come out redacted and compressed with report manifest "
    "and metrics") {
  TempDir tmp;
  const std::string in = tmp / "in";
  const std::string out = tmp / "out";
  const std::string spool = tmp / "spool";
  constexpr int kDocuments = 1000;

  CorpusGenerator gen(20261125);
  std::map<std::string, std::string> expected_text;  // output path -> redacted text
  std::map<std::string, std::string> output_for;     // input path -> output path
  std::map<std::string, size_t> input_size;
  int emails = 0, cards = 0, decoys = 0;
  uint64_t bytes_in = 0;
  for (int i = 0; i < kDocuments; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "batch-%02d/doc-%04d.txt", i / 100, i);
    SensitiveDocument doc = gen.document(4096);
    write_file(in + "/" + name, doc.text);
    expected_text[out + "/" + name + ".gz"] = doc.redacted;
    output_for[in + "/" + name] = out + "/" + name + ".gz";
    input_size[in + "/" + name] = doc.text.size();
    bytes_in += doc.text.size();
    emails += doc.emails;
    cards += doc.cards;
    decoys += doc.decoys;
  }
  // The corpus really exercises both patterns and the look-alikes that must stay.
  REQUIRE(emails > 2 * kDocuments);
  REQUIRE(cards > 2 * kDocuments);
  REQUIRE(decoys > 2 * kDocuments);

  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.start();
  nlohmann::json job = make_job(
      "redact-gzip", in, out,
      {{{"op", "redact"}, {"patterns", {"email", "card"}}}, {{"op", "gzip"}, {"level", 6}}});
  job["output"]["suffix"] = ".gz";
  drop_job(spool, "redact-gzip.json", job);
  JobOutcome outcome = daemon.wait_for_job("redact-gzip");

  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.folder == "done");
  nlohmann::json report = outcome.report;  // non-const: a missing key reads as null
  CHECK(report["id"] == "redact-gzip");
  CHECK(report["state"] == "succeeded");
  CHECK(report["transforms"] == nlohmann::json{"redact", "gzip"});
  CHECK(report["input"] == in);
  CHECK(report["output"] == out);
  CHECK(report["counts"] == nlohmann::json{{"total", kDocuments},
                                           {"succeeded", kDocuments},
                                           {"failed", 0},
                                           {"skipped", 0},
                                           {"cancelled", 0}});
  CHECK(report["bytes"]["in"] == bytes_in);
  CHECK(report["failed_documents"] == nlohmann::json::array());
  CHECK(report["failed_documents_truncated"] == false);

  // Exactly the expected files, each the redacted text once gunzipped.
  std::vector<std::string> expected_files;
  for (const auto& [path, text] : expected_text)
    expected_files.push_back(path.substr(out.size() + 1));
  CHECK(list_files(out) == expected_files);
  uint64_t bytes_out = 0;
  std::vector<std::string> wrong;
  for (const auto& [path, text] : expected_text) {
    if (!file_exists(path)) continue;
    std::string compressed = read_file(path);
    bytes_out += compressed.size();
    std::string diff = describe_difference(text, gunzip(compressed));
    if (!diff.empty()) wrong.push_back(path + ": " + diff);
  }
  INFO("first wrong output: " << (wrong.empty() ? "" : wrong.front()));
  CHECK(wrong.size() == 0);
  CHECK(report["bytes"]["out"] == bytes_out);

  // One manifest line per document, with the sha256 of the file as written.
  std::vector<nlohmann::json> lines = read_json_lines(outcome.manifest_path);
  CHECK(lines.size() == kDocuments);
  std::map<std::string, int> seen;
  std::vector<std::string> bad_lines;
  for (nlohmann::json line : lines) {
    std::string input = line.value("input", "");
    ++seen[input];
    auto it = output_for.find(input);
    std::string output = line.value("output", "");
    bool good =
        it != output_for.end() && output == it->second && line["state"] == "succeeded" &&
        line["error"] == "" && line["attempts"] == 1 && line["bytes_in"] == input_size[input] &&
        file_exists(output) && line["bytes_out"] == read_file(output).size() &&
        line["sha256"] == sha256_hex(read_file(output)) && line["duration_seconds"].is_number();
    if (!good) bad_lines.push_back(line.dump());
  }
  INFO("first bad manifest line: " << (bad_lines.empty() ? "" : bad_lines.front()));
  CHECK(bad_lines.size() == 0);
  CHECK(seen.size() == static_cast<size_t>(kDocuments));

  // The job counter moves after the report is written: poll for it, then the rest is settled.
  CHECK(daemon.wait_for_metric("docpipe_jobs_total", {{"outcome", "succeeded"}}, 1) == 1);
  std::vector<MetricSample> metrics = parse_prometheus_text(daemon.scrape());
  CHECK(metric_value(metrics, "docpipe_documents_total", {{"outcome", "succeeded"}}) == kDocuments);
  CHECK(metric_value(metrics, "docpipe_documents_total", {{"outcome", "failed"}}) == 0);
  CHECK(metric_value(metrics, "docpipe_jobs_total", {{"outcome", "failed"}}) == 0);
  CHECK(metric_value(metrics, "docpipe_document_bytes_total", {{"direction", "in"}}) ==
        static_cast<double>(bytes_in));
  CHECK(metric_value(metrics, "docpipe_document_bytes_total", {{"direction", "out"}}) ==
        static_cast<double>(bytes_out));
  CHECK(metric_value(metrics, "docpipe_jobs_active") == 0);

  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
