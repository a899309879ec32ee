// Resume after damage (issue 9, items 14, 17, 20): the spool file name is the job's identity
// whatever its text says; damage in the middle of a journal costs only the records it hit (and
// the log says how many); a job file that cannot be resumed keeps in its failed/ report what its
// journal knew; outputs that vanished after they were recorded are done again, and only those.

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>

#include "tests/e2e/crash_support.h"
#include "tests/e2e/harness.h"

namespace e2e {
namespace {

// `n` small documents in `in`; returns input path -> content.
std::map<std::string, std::string> make_documents(const std::string& in, size_t n) {
  std::map<std::string, std::string> docs;
  for (size_t i = 0; i < n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "/doc-%04zu.txt", i);
    docs[in + name] = "document " + std::to_string(1000 + i) + "\n" + std::string(120, 'r');
    write_file(in + name, docs[in + name]);
  }
  return docs;
}

// Starts the test daemon, lets the job get at least `outputs` done, then stops it: SIGTERM
// (every finished document recorded) or kill -9.
void run_until(const std::string& spool, const std::string& out, size_t outputs, bool kill9) {
  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  REQUIRE(poll_until(kJobTimeout, [&] {
    daemon.expect_running();
    return count_outputs(out) >= outputs;
  }));
  if (kill9) {
    REQUIRE(::kill(daemon.pid(), SIGKILL) == 0);
    CHECK(daemon.wait_exit() == 128 + SIGKILL);
  } else {
    CHECK(daemon.terminate() == 0);
  }
}

nlohmann::json sleepy(int ms) { return {{{"op", "test.sleep"}, {"ms", ms}}}; }

TEST_CASE("e2e crash: an id edited inside active/ID.json neither renames nor reruns the job") {
  TempDir tmp(scratch_base());
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  constexpr size_t kDocs = 300;
  make_documents(in, kDocs);
  drop_job(spool, "named.json", make_job("named", in, out, sleepy(5)));
  run_until(spool, out, 40, /*kill9=*/false);

  const size_t recorded = recorded_inputs(read_journal(spool + "/active/named.journal")).size();
  REQUIRE(recorded >= 40);
  REQUIRE(recorded < kDocs);
  nlohmann::json text = read_json(spool + "/active/named.json");
  REQUIRE(text["id"] == "named");
  text["id"] = "renamed-inside";
  write_file(spool + "/active/named.json", text.dump(2));

  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  JobOutcome outcome = daemon.wait_for_job("named", milliseconds(60000));
  INFO("log:\n" << daemon.log());
  CHECK(
      daemon.log_lines_with({"differs from its file name", "job=named", "renamed-inside"}).size() ==
      1);
  CHECK(resumed_count(daemon, "named") == static_cast<long>(recorded));
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["id"] == "named");
  CHECK(outcome.report["counts"]["succeeded"] == kDocs);
  // Only what the first run had not done: not the whole job again.
  CHECK(daemon.wait_for_metric("docpipe_documents_total", {{"outcome", "succeeded"}},
                               static_cast<double>(kDocs - recorded)) ==
        static_cast<double>(kDocs - recorded));
  CHECK(read_json_lines(outcome.manifest_path).size() == kDocs);
  CHECK(list_files(spool + "/active").empty());
  CHECK_FALSE(file_exists(spool + "/done/renamed-inside.json"));
  CHECK(daemon.terminate() == 0);

  // And it stays finished: another restart runs nothing.
  DaemonProcess again(spool, {"--workers", "2"});
  again.start();
  CHECK(again.log_lines_with({" job resumed "}).empty());
  CHECK(again.terminate() == 0);
}

TEST_CASE("e2e crash: damage mid-journal redoes only the documents whose records it hit") {
  TempDir tmp(scratch_base());
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  constexpr size_t kDocs = 400;
  make_documents(in, kDocs);
  drop_job(spool, "hurt.json", make_job("hurt", in, out, sleepy(5)));
  run_until(spool, out, 150, /*kill9=*/false);

  // Zeros over 700 bytes a third of the way in, as a bad block would leave them.
  const std::string journal_path = spool + "/active/hurt.journal";
  JournalView before = read_journal(journal_path);
  const size_t recorded = before.records.size();
  REQUIRE(recorded >= 150);
  std::string text = read_file(journal_path);
  const size_t at = text.size() / 3;
  text.replace(at, 700, std::string(700, '\0'));
  write_file(journal_path, text);
  JournalView after = read_journal(journal_path);
  const size_t lost = recorded - after.records.size();
  REQUIRE(lost >= 2);
  CAPTURE(lost);

  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  JobOutcome outcome = daemon.wait_for_job("hurt");
  INFO("log:\n" << daemon.log());
  // Said as damage, with its size, not as a torn last record.
  std::vector<std::string> said = daemon.log_lines_with({"journal damaged", "job=hurt"});
  REQUIRE(said.size() == 1);
  std::smatch m;
  REQUIRE(std::regex_search(said[0], m, std::regex("about ([0-9]+) record\\(s\\) lost")));
  // An estimate from the damaged bytes and the records' mean size: off by one at most here.
  CHECK(std::stol(m[1]) >= static_cast<long>(lost) - 1);
  CHECK(std::stol(m[1]) <= static_cast<long>(lost) + 1);
  CHECK(said[0].find("later record(s) read") != std::string::npos);
  CHECK(daemon.log_lines_with({"torn"}).empty());
  CHECK(resumed_count(daemon, "hurt") == static_cast<long>(recorded - lost));
  // Redone: the documents never done, plus the ones whose records the damage took.
  CHECK(daemon.wait_for_metric("docpipe_documents_total", {{"outcome", "succeeded"}},
                               static_cast<double>(kDocs - recorded + lost)) ==
        static_cast<double>(kDocs - recorded + lost));
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["counts"]["succeeded"] == kDocs);
  std::vector<nlohmann::json> manifest = read_json_lines(outcome.manifest_path);
  CHECK(manifest.size() == kDocs);
  std::set<std::string> inputs;
  for (const nlohmann::json& line : manifest) inputs.insert(line["input"].get<std::string>());
  CHECK(inputs.size() == kDocs);
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e crash: a job file that cannot be resumed keeps what its journal knew") {
  TempDir tmp(scratch_base());
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  constexpr size_t kDocs = 300;
  make_documents(in, kDocs);
  // Every tenth document fails for good (a folder stands where its output goes): the report must
  // keep those the journal recorded.
  for (size_t i = 0; i < kDocs; i += 10) {
    char name[32];
    std::snprintf(name, sizeof name, "/doc-%04zu.txt/blocker", i);
    write_file(out + name, "");
  }
  nlohmann::json job = make_job("spoilt", in, out, sleepy(5));
  job["limits"] = {{"max_failed_documents", kDocs}};
  drop_job(spool, "spoilt.json", job);
  run_until(spool, out, 30 + 60, /*kill9=*/false);  // the 30 blockers count as outputs
  JournalView journal = read_journal(spool + "/active/spoilt.journal");
  const size_t recorded = journal.records.size();
  REQUIRE(recorded >= 60);
  std::set<std::string> failed;
  for (const nlohmann::json& r : journal.records) {
    if (r["state"] == "failed") failed.insert(r["input"].get<std::string>());
  }
  REQUIRE(failed.size() > 0);
  write_file(spool + "/active/spoilt.json", "{ this is not json");

  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.start();
  JobOutcome outcome = daemon.wait_for_job("spoilt");
  nlohmann::json report = outcome.report;
  INFO("report: " << report.dump(2) << "\nlog:\n" << daemon.log());
  CHECK(outcome.folder == "failed");
  CHECK(report["state"] == "failed");
  std::string reason = report["reason"];
  CHECK(reason.find("cannot resume") != std::string::npos);
  CHECK(reason.find("recorded " + std::to_string(recorded) + " document(s)") != std::string::npos);
  CHECK(report["counts"]["succeeded"] == recorded - failed.size());
  CHECK(report["counts"]["failed"] == failed.size());
  CHECK(report["counts"]["total"] == recorded);
  std::set<std::string> listed;
  for (const nlohmann::json& f : report["failed_documents"]) {
    listed.insert(f["input"].get<std::string>());
    CHECK(f["error"].get<std::string>().find("Is a directory") != std::string::npos);
  }
  CHECK(listed == failed);
  CHECK(report["bytes"]["in"].get<uint64_t>() > 0);
  REQUIRE(file_exists(spool + "/failed/spoilt.manifest.jsonl"));
  std::vector<nlohmann::json> manifest = read_json_lines(spool + "/failed/spoilt.manifest.jsonl");
  CHECK(manifest.size() == recorded);
  CHECK(daemon.wait_for_metric("docpipe_jobs_total", {{"outcome", "failed"}}, 1) == 1);
  CHECK(list_files(spool + "/active").empty());
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e crash: outputs deleted after a kill -9 are redone, and only those") {
  TempDir tmp(scratch_base());
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  constexpr size_t kDocs = 400;
  std::map<std::string, std::string> docs = make_documents(in, kDocs);
  drop_job(spool, "gone.json", make_job("gone", in, out, sleepy(5)));
  run_until(spool, out, 120, /*kill9=*/true);

  JournalView journal = read_journal(spool + "/active/gone.journal");
  std::set<std::string> recorded = recorded_inputs(journal);
  REQUIRE(recorded.size() >= 100);
  CHECK(recorded.size() == journal.records.size());  // no document recorded twice
  // Delete every tenth recorded output; note the inode of every other one.
  std::set<std::string> deleted;
  std::map<std::string, ino_t> kept;
  size_t i = 0;
  for (const std::string& input : recorded) {
    const std::string output = out + input.substr(in.size());
    struct stat sb;
    REQUIRE(::stat(output.c_str(), &sb) == 0);
    if (i++ % 10 == 0) {
      REQUIRE(::unlink(output.c_str()) == 0);
      deleted.insert(input);
    } else {
      kept[output] = sb.st_ino;
    }
  }
  CAPTURE(deleted.size());

  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  JobOutcome outcome = daemon.wait_for_job("gone");
  INFO("log:\n" << daemon.log());
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["counts"]["succeeded"] == kDocs);
  // Done in this run: what was not recorded, plus exactly the deleted ones.
  const double redone = static_cast<double>(kDocs - recorded.size() + deleted.size());
  CHECK(daemon.wait_for_metric("docpipe_documents_total", {{"outcome", "succeeded"}}, redone) ==
        redone);
  for (const std::string& input : deleted) {
    INFO(input);
    CHECK(read_file(out + input.substr(in.size())) == docs[input]);
  }
  size_t rewritten = 0;
  for (const auto& [output, ino] : kept) {
    struct stat sb;
    if (::stat(output.c_str(), &sb) != 0 || sb.st_ino != ino) ++rewritten;
  }
  CHECK(rewritten == 0);
  // Exactly one manifest line per document, a redone one with its new record.
  std::vector<nlohmann::json> manifest = read_json_lines(outcome.manifest_path);
  CHECK(manifest.size() == kDocs);
  std::set<std::string> inputs;
  for (const nlohmann::json& line : manifest) {
    std::string input = line["input"];
    inputs.insert(input);
    if (deleted.count(input) != 0) {
      CHECK(line["sha256"] == sha256_hex(docs[input]));
    }
  }
  CHECK(inputs.size() == kDocs);
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
