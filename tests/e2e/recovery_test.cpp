// Nothing lost across crashes and shutdowns (issue 3): a 5,000-document job survives three
// kill -9 at random points, and a SIGTERM mid-job resumes at the next start without doing any
// document twice. Both run the test build of the daemon (DOCPIPE_TEST_BINARY): `test.sleep` makes
// the jobs last long enough to be interrupted while documents are in flight.

#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <random>
#include <regex>
#include <set>

#include "tests/e2e/corpus.h"
#include "tests/e2e/crash_support.h"
#include "tests/e2e/harness.h"

namespace e2e {
namespace {

// A report's counts when all `n` documents of the job succeeded.
nlohmann::json all_succeeded(size_t n) {
  return {{"total", n}, {"succeeded", n}, {"failed", 0}, {"skipped", 0}, {"cancelled", 0}};
}

// A tmpfs when there is one: fsync is free there, so the jobs' pace is set by test.sleep and the
// worker count rather than by a shared disk.
// Files below `root` that look like a temp file of any kind: a dot name (".NAME.docpipe-tmp.X",
// a hidden name of any other kind) or anything else mentioning "tmp".
std::vector<std::string> temp_files_under(const std::string& root) {
  std::vector<std::string> found;
  if (!file_exists(root)) return found;
  for (const std::string& rel : list_files(root)) {
    std::string name = rel.substr(rel.rfind('/') + 1);
    if (name[0] == '.' || name.find("tmp") != std::string::npos) found.push_back(rel);
  }
  return found;
}

// Milliseconds between the first log lines containing `from` and `to` (their timestamps).
long log_gap_ms(const DaemonProcess& daemon, const std::string& from, const std::string& to) {
  auto at_ms = [&](const std::string& needle) -> long {
    std::vector<std::string> lines = daemon.log_lines_with({needle});
    std::smatch m;
    // Lines start with a UTC timestamp: 2026-11-26T03:06:50.057Z.
    if (lines.empty() ||
        !std::regex_search(lines.front(), m,
                           std::regex("T([0-9]{2}):([0-9]{2}):([0-9]{2})\\.([0-9]{3})Z"))) {
      return -1;
    }
    return ((std::stol(m[1]) * 60 + std::stol(m[2])) * 60 + std::stol(m[3])) * 1000 +
           std::stol(m[4]);
  };
  long a = at_ms(from), b = at_ms(to);
  if (a < 0 || b < 0) return -1;
  return b >= a ? b - a : b + 86400000 - a;  // across midnight
}

void start_test_daemon(DaemonProcess& daemon) {
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
}

TEST_CASE("e2e recovery: a 5000-document job survives kill -9 at three random points") {
  TempDir tmp(scratch_base());
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  constexpr size_t kDocuments = 5000;

  CorpusGenerator gen(3);
  std::map<std::string, std::string> expected;   // output path -> redacted text
  std::map<std::string, std::string> output_of;  // input path -> output path
  for (size_t i = 0; i < kDocuments; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "part-%zu/doc-%04zu.txt", i % 10, i);
    SensitiveDocument doc = gen.document(400 + gen.below(400));
    write_file(in + "/" + name, doc.text);
    expected[out + "/" + name] = doc.redacted;
    output_of[in + "/" + name] = out + "/" + name;
  }

  // Thresholds in three separate bands of the output count, so each kill lands mid-job.
  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  std::vector<size_t> thresholds;
  for (size_t band = 0; band < 3; ++band) {
    thresholds.push_back(300 + band * 1500 + rng() % 1200);
  }
  MESSAGE("kill -9 when the output count reaches " << thresholds[0] << ", " << thresholds[1] << ", "
                                                   << thresholds[2] << " (seed " << seed << ")");

  nlohmann::json job = make_job(
      "crash", in, out,
      {{{"op", "test.sleep"}, {"ms", 1}}, {{"op", "redact"}, {"patterns", {"email", "card"}}}});
  drop_job(spool, "crash.json", job);
  const std::vector<std::string> args{"--workers", "8"};

  // Four starts: the first three end in kill -9, each restart resumes from the journal.
  long recorded_at_kill = -1;
  std::string planted;  // the temp file left after the last kill
  for (size_t round = 0; round <= thresholds.size(); ++round) {
    CAPTURE(round);
    DaemonProcess daemon(spool, args);
    start_test_daemon(daemon);
    INFO("log:\n" << daemon.log());
    if (round > 0) {
      // It skips exactly what the journal recorded as done before the kill.
      CHECK(resumed_count(daemon, "crash") == recorded_at_kill);
      // The leftover temp file is gone by the time the daemon is ready (a short grace for the
      // file system to show it), and the log says so.
      CHECK(poll_until(milliseconds(2000), [&] { return !file_exists(planted); }));
      CHECK(daemon.log_lines_with({" removed leftover temp files ", "job=crash"}).size() == 1);
    }
    if (round == thresholds.size()) {
      JobOutcome outcome = daemon.wait_for_job("crash");
      nlohmann::json report = outcome.report;
      INFO("report: " << report.dump(2));
      CHECK(outcome.folder == "done");
      CHECK(report["state"] == "succeeded");
      CHECK(report["counts"] == all_succeeded(kDocuments));
      // This run did what the journal had not recorded, nothing more: the few outputs renamed
      // before the last kill but not recorded were redone, no recorded one was.
      const double left = static_cast<double>(kDocuments - recorded_at_kill);
      CHECK(daemon.wait_for_metric("docpipe_documents_total", {{"outcome", "succeeded"}}, left) ==
            left);
      CHECK(daemon.terminate() == 0);
      break;
    }
    bool reached = poll_until(kJobTimeout, [&] {
      daemon.expect_running();
      return count_outputs(out) >= thresholds[round];
    });
    REQUIRE(reached);
    REQUIRE(::kill(daemon.pid(), SIGKILL) == 0);
    CHECK(daemon.wait_exit() == 128 + SIGKILL);
    // Killed mid-job: it is still active, and its journal vouches only for whole outputs.
    REQUIRE(file_exists(spool + "/active/crash.json"));
    CHECK_FALSE(file_exists(spool + "/done/crash.report.json"));
    JournalView journal = read_journal(spool + "/active/crash.journal");
    CHECK(journal.header["journal"] == 1);
    CHECK(journal.header["id"] == "crash");
    std::set<std::string> recorded;
    for (const nlohmann::json& r : journal.records) {
      std::string input = r["input"];
      recorded.insert(input);
      INFO(input);
      REQUIRE(output_of.count(input) == 1);
      CHECK(r["state"] == "succeeded");
      CHECK(r["output"] == output_of[input]);
      CHECK(read_file(output_of[input]) == expected[output_of[input]]);
    }
    CHECK(recorded.size() > 0);
    // No document was done twice (its input recorded twice), and the documents that will be
    // redone, outputs renamed but not yet recorded, are at most one batch per writer (io_threads
    // 2; a writer renames up to 32 before their records, pipeline/write_stage.cc kMaxBatch).
    CHECK(recorded.size() == journal.records.size());
    const size_t outputs = count_outputs(out);
    CHECK(outputs >= recorded.size());
    CHECK(outputs - recorded.size() <= 2 * 32);
    recorded_at_kill = static_cast<long>(recorded.size());
    // A kill rarely lands inside a write that lasts microseconds, so leave the temp file such a
    // kill would: the restart must remove it at once (and the final listing proves it did).
    planted = out + "/part-" + std::to_string(round) + "/.planted.txt.docpipe-tmp.0123456789ab";
    write_file(planted, "half a document");
  }

  // Every output present and byte-identical; nothing else in the output tree.
  std::vector<std::string> expected_files;
  for (const auto& [path, text] : expected) expected_files.push_back(path.substr(out.size() + 1));
  CHECK(list_files(out) == expected_files);
  size_t wrong = 0;
  for (const auto& [path, text] : expected) {
    std::string actual = read_file(path);
    if (actual != text && ++wrong <= 3)
      CHECK_MESSAGE(false, path << ": " << describe_difference(text, actual));
  }
  CHECK(wrong == 0);

  // The manifest: exactly one line per document, each the document's final, whole output.
  std::vector<nlohmann::json> manifest = read_json_lines(spool + "/done/crash.manifest.jsonl");
  CHECK(manifest.size() == kDocuments);
  std::set<std::string> inputs;
  size_t bad_lines = 0;
  for (nlohmann::json& line : manifest) {
    std::string input = line["input"];
    inputs.insert(input);
    bool good = output_of.count(input) == 1 && line["state"] == "succeeded" &&
                line["output"] == output_of[input] &&
                line["sha256"] == sha256_hex(expected[output_of[input]]) && line["error"] == "";
    if (!good && ++bad_lines <= 3) CHECK_MESSAGE(false, "manifest line: " << line.dump());
  }
  CHECK(bad_lines == 0);
  CHECK(inputs.size() == kDocuments);

  // No temp file anywhere, and the spool holds only the finished job.
  CHECK(temp_files_under(out).empty());
  CHECK(temp_files_under(spool).empty());
  CHECK(list_files(spool + "/active").empty());
  CHECK(list_files(spool + "/incoming").empty());
  CHECK(list_files(spool + "/done") ==
        std::vector<std::string>{"crash.json", "crash.manifest.jsonl", "crash.report.json"});
}

TEST_CASE("e2e recovery: SIGTERM mid-job then restart completes it with no document done twice") {
  TempDir tmp(scratch_base());
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  constexpr size_t kDocuments = 400;
  std::map<std::string, std::string> content;  // input path -> text
  for (size_t i = 0; i < kDocuments; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "/doc-%03zu.txt", i);
    content[in + name] = "document " + std::to_string(i) + "\n" + std::string(200 + i, 'q');
    write_file(in + name, content[in + name]);
  }
  drop_job(spool, "drain.json", make_job("drain", in, out, {{{"op", "test.sleep"}, {"ms", 1}}}));

  std::set<std::string> first_run;
  {
    DaemonProcess daemon(spool, {"--workers", "4"});
    start_test_daemon(daemon);
    REQUIRE(poll_until(kJobTimeout, [&] {
      daemon.expect_running();
      return count_outputs(out) >= 60;
    }));
    CHECK(daemon.terminate() == 0);
    INFO("log:\n" << daemon.log());
    CHECK(daemon.log_lines_with({" stopping ", "signal=SIGTERM"}).size() == 1);
    CHECK(daemon.log_lines_with({" document failed "}).empty());

    // Still active, with a journal that records each finished document once, all succeeded,
    // and accounts for every output on disk: nothing in flight was left half-recorded.
    REQUIRE(file_exists(spool + "/active/drain.json"));
    CHECK_FALSE(file_exists(spool + "/done/drain.report.json"));
    CHECK_FALSE(file_exists(spool + "/failed/drain.report.json"));
    JournalView journal = read_journal(spool + "/active/drain.journal");
    CHECK_FALSE(journal.torn);
    CHECK(journal.bad_lines == 0);
    for (const nlohmann::json& r : journal.records) {
      std::string input = r["input"];
      INFO(r.dump());
      CHECK(first_run.insert(input).second);
      CHECK(r["state"] == "succeeded");
    }
    CHECK(first_run.size() >= 60);
    CHECK(first_run.size() < kDocuments);
    CHECK(count_outputs(out) == first_run.size());
    CHECK(temp_files_under(out).empty());
  }

  DaemonProcess daemon(spool, {"--workers", "4"});
  start_test_daemon(daemon);
  JobOutcome outcome = daemon.wait_for_job("drain");
  INFO("log:\n" << daemon.log());
  CHECK(resumed_count(daemon, "drain") == static_cast<long>(first_run.size()));
  nlohmann::json report = outcome.report;
  INFO("report: " << report.dump(2));
  CHECK(outcome.folder == "done");
  CHECK(report["state"] == "succeeded");
  CHECK(report["counts"] == all_succeeded(kDocuments));
  // The second run did exactly the documents the first one had not: none twice, none lost.
  CHECK(daemon.wait_for_metric("docpipe_documents_total", {{"outcome", "succeeded"}},
                               static_cast<double>(kDocuments - first_run.size())) ==
        static_cast<double>(kDocuments - first_run.size()));
  std::vector<nlohmann::json> manifest = read_json_lines(outcome.manifest_path);
  CHECK(manifest.size() == kDocuments);
  std::set<std::string> inputs;
  for (nlohmann::json& line : manifest) {
    inputs.insert(line["input"].get<std::string>());
    CHECK(line["state"] == "succeeded");
    CHECK(line["attempts"] == 1);
  }
  CHECK(inputs.size() == kDocuments);
  for (const auto& [input, text] : content) {
    std::string output = out + input.substr(in.size());
    INFO(output);
    REQUIRE(file_exists(output));
    CHECK(read_file(output) == text);
  }
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e recovery: SIGTERM cancels documents still running after shutdown_grace_ms") {
  TempDir tmp(scratch_base());
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  for (int i = 0; i < 4; ++i) write_file(in + "/slow-" + std::to_string(i) + ".txt", "slow\n");
  write_file(tmp / "docpipe.json", R"({"shutdown_grace_ms": 200})");
  const std::vector<std::string> args{"--config", tmp / "docpipe.json", "--workers", "4"};
  drop_job(spool, "grace.json", make_job("grace", in, out, {{{"op", "test.sleep"}, {"ms", 2500}}}));

  {
    DaemonProcess daemon(spool, args);
    start_test_daemon(daemon);
    REQUIRE(daemon.wait_for_metric("docpipe_stage_in_flight", {{"stage", "transform"}}, 4) == 4);
    CHECK(daemon.terminate() == 0);
    INFO("log:\n" << daemon.log());
    // The documents needed 2.5 s more; the daemon gave them 200 ms, then left.
    long stop_ms = log_gap_ms(daemon, " stopping ", " docpipe stopped");
    CHECK(stop_ms >= 0);
    CHECK(stop_ms < 1500);
    // Cancelled by the shutdown, not failed: the journal records nothing and no output exists.
    CHECK(daemon.log_lines_with({" document failed "}).empty());
    REQUIRE(file_exists(spool + "/active/grace.json"));
    CHECK(read_journal(spool + "/active/grace.journal").records.empty());
    CHECK(count_outputs(out) == 0);
    CHECK(temp_files_under(out).empty());
  }

  DaemonProcess daemon(spool, args);
  start_test_daemon(daemon);
  JobOutcome outcome = daemon.wait_for_job("grace");
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["state"] == "succeeded");
  CHECK(outcome.report["counts"]["succeeded"] == 4);
  CHECK(outcome.report["counts"]["total"] == 4);
  CHECK(list_files(out) ==
        std::vector<std::string>{"slow-0.txt", "slow-1.txt", "slow-2.txt", "slow-3.txt"});
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
