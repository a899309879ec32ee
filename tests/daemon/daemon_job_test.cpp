// DaemonJob on real files (tests/daemon/daemon_job_fixture.h): the journal and manifest bytes it
// writes, and what a resumed job makes of its journal: counts, superseded inputs, a torn tail,
// intents settled only when the output's sha256 matches, and the report of an unresumable job.

#include "daemon/daemon_job.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>

#include "core/path_util.h"
#include "tests/daemon/daemon_job_fixture.h"
#include "tests/pipeline/pipeline_test_support.h"

namespace docpipe {
namespace {

using test::done_record;
using test::drain;
using test::JobFolder;
using test::outcome_of;
using testing::temp_files_under;

std::vector<std::string> inputs_of(const std::vector<DocumentRef>& docs) {
  std::vector<std::string> out;
  for (const auto& d : docs) out.push_back(d.input_path);
  return out;
}

TEST_CASE("daemon job: a fresh job journals one record per document, the manifest lists them") {
  JobFolder f;
  DaemonJob job(f.spec({"a.txt", "b.txt"}, IfExists::kReplace, 5), 2, 1000, nullptr, nullptr,
                [](DaemonJob*) {});
  REQUIRE(job.open(f.journal, /*resume=*/false, /*durable=*/false));
  std::vector<DocumentRef> docs = drain(job);
  REQUIRE(docs.size() == 2);
  job.document_finished(outcome_of(docs[0], f.out("a.txt")));
  job.document_finished(
      outcome_of(docs[1], f.out("b.txt"), DocumentState::kFailed, "read: bad \"bytes\"\n\x01"));
  job.job_finished(false);
  REQUIRE(job.close_journal());
  REQUIRE(job.write_manifest(f.journal, f.manifest));

  const std::string a = R"({"input":")" + f.in("a.txt") + R"(","output":")" + f.out("a.txt") +
                        R"(","state":"succeeded","bytes_in":10,"bytes_out":20,"sha256":")" +
                        std::string(64, 'a') +
                        R"(","attempts":1,"duration_seconds":0.5,"error":""})";
  const std::string b = R"({"input":")" + f.in("b.txt") + R"(","output":")" + f.out("b.txt") +
                        R"(","state":"failed","bytes_in":10,"bytes_out":0,"sha256":"",)"
                        R"("attempts":1,"duration_seconds":0.5,)"
                        R"("error":"read: bad \"bytes\"\n\u0001"})";
  CHECK(JobFolder::read(f.journal) ==
        JobJournal::encode(R"({"id":"job","journal":1,"submitted_at_ms":1000})") +
            JobJournal::encode(a) + JobJournal::encode(b));
  CHECK(JobFolder::read(f.manifest) == a + "\n" + b + "\n");
  JobReport r = job.report();
  CHECK(r.state == JobState::kSucceeded);
  CHECK(r.counts.total == 2);
  CHECK(r.counts.succeeded == 1);
  CHECK(r.counts.failed == 1);
  CHECK(r.counts.bytes_in == 20);
  CHECK(r.counts.bytes_out == 20);
  REQUIRE(r.failed_documents.size() == 1);
  CHECK(r.failed_documents[0].input == f.in("b.txt"));
}

TEST_CASE("daemon job: resume counts its journal, skips done documents, redoes a vanished output") {
  JobFolder f;
  JobFolder::write(f.out("a.txt"), "A");  // b.txt's output has vanished since
  f.write_journal({done_record(f.in("a.txt"), f.out("a.txt")),
                   done_record(f.in("b.txt"), f.out("b.txt")),
                   done_record(f.in("c.txt"), f.out("c.txt"), "failed", "boom"),
                   done_record(f.in("d.txt"), f.out("d.txt"), "skipped")});
  DaemonJob job(f.spec({"a.txt", "b.txt", "c.txt", "d.txt", "e.txt"}, IfExists::kReplace, 5), 5, 1,
                nullptr, nullptr, [](DaemonJob*) {});
  // Asked to stream its manifest, a resumed job does not: its journal holds earlier runs' records.
  REQUIRE(job.open(f.journal, /*resume=*/true, /*durable=*/false, f.manifest));
  CHECK(job.resumed_documents() == 4);
  CHECK(job.journal_damage().empty());
  JobReport before = job.report();
  CHECK(before.submitted_at_ms == 777);  // from the journal's header
  CHECK(before.counts.succeeded == 2);
  CHECK(before.counts.failed == 1);
  CHECK(before.counts.skipped == 1);
  CHECK(before.counts.bytes_in == 40);
  REQUIRE(before.failed_documents.size() == 1);
  CHECK(before.failed_documents[0].error == "boom");

  std::vector<DocumentRef> docs = drain(job);
  CHECK(inputs_of(docs) == std::vector<std::string>{f.in("b.txt"), f.in("e.txt")});
  CHECK(job.report().counts.succeeded == 1);  // b.txt's record no longer counts
  for (const auto& d : docs) {
    job.document_finished(outcome_of(d, f.out(std::string(base_name(d.input_path)))));
  }
  job.job_finished(false);
  REQUIRE(job.close_journal());
  JobReport r = job.report();
  CHECK(r.counts.total == 5);
  CHECK(r.counts.succeeded == 3);
  CHECK(r.counts.failed == 1);
  CHECK(r.counts.skipped == 1);

  // b.txt was done twice: the manifest lists only its last record.
  REQUIRE(job.write_manifest(f.journal, f.manifest));
  auto journal = JobJournal::load(f.journal);
  REQUIRE(journal);
  REQUIRE(journal->records.size() == 6);
  CHECK(JobFolder::read(f.manifest) == journal->records[0] + "\n" + journal->records[2] + "\n" +
                                           journal->records[3] + "\n" + journal->records[4] + "\n" +
                                           journal->records[5] + "\n");
}

TEST_CASE("daemon job: a fresh job streams its manifest as it journals and commits it at the end") {
  JobFolder f;
  DaemonJob job(f.spec({"a.txt", "b.txt", "c.txt"}), 3, 1000, nullptr, nullptr, [](DaemonJob*) {});
  REQUIRE(job.open(f.journal, /*resume=*/false, /*durable=*/false, f.manifest));
  std::vector<DocumentRef> docs = drain(job);
  REQUIRE(docs.size() == 3);
  CHECK(temp_files_under(f.root).empty());  // created at the first record
  job.document_finished(outcome_of(docs[0], f.out("a.txt")));
  std::vector<DocumentOutcome> batch;
  batch.push_back(outcome_of(docs[1], f.out("b.txt"), DocumentState::kFailed, "boom"));
  batch.push_back(outcome_of(docs[2], f.out("c.txt")));
  job.documents_finished(std::move(batch));
  REQUIRE(temp_files_under(f.root).size() == 1);
  CHECK_FALSE(std::filesystem::exists(f.manifest));
  // Written through, not held in a buffer: the temp file has every record so far.
  const std::string so_far = JobFolder::read(temp_files_under(f.root)[0]);
  CHECK(std::count(so_far.begin(), so_far.end(), '\n') == 3);
  job.job_finished(false);
  REQUIRE(job.close_journal());
  auto journal = JobJournal::load(f.journal);
  REQUIRE(journal);
  REQUIRE(journal->records.size() == 3);
  const std::string expected =
      journal->records[0] + "\n" + journal->records[1] + "\n" + journal->records[2] + "\n";
  // The journal is not read again: with it gone, the manifest is still whole.
  std::filesystem::remove(f.journal);
  REQUIRE(job.write_manifest(f.journal, f.manifest));
  CHECK(JobFolder::read(f.manifest) == expected);
  CHECK(temp_files_under(f.root).empty());
}

TEST_CASE(
    "daemon job: a manifest stream that cannot be written leaves the job to the journal scan") {
  JobFolder f;
  const std::string later = f.root + "/later/job.manifest.jsonl";  // its folder does not exist yet
  DaemonJob job(f.spec({"a.txt", "b.txt"}), 2, 1000, nullptr, nullptr, [](DaemonJob*) {});
  REQUIRE(job.open(f.journal, /*resume=*/false, /*durable=*/false, later));
  std::vector<DocumentRef> docs = drain(job);
  REQUIRE(docs.size() == 2);
  for (const auto& d : docs) {
    job.document_finished(outcome_of(d, f.out(std::string(base_name(d.input_path)))));
  }
  job.job_finished(false);
  REQUIRE(job.close_journal());
  JobReport r = job.report();
  CHECK(r.state == JobState::kSucceeded);  // the stream's failure is not the job's
  CHECK(r.counts.succeeded == 2);
  std::filesystem::create_directories(f.root + "/later");
  REQUIRE(job.write_manifest(f.journal, later));
  auto journal = JobJournal::load(f.journal);
  REQUIRE(journal);
  REQUIRE(journal->records.size() == 2);
  CHECK(JobFolder::read(later) == journal->records[0] + "\n" + journal->records[1] + "\n");
}

TEST_CASE("daemon job: a later record for the same input replaces the earlier one in the counts") {
  JobFolder f;
  JobFolder::write(f.out("a.txt"), "A");
  f.write_journal({done_record(f.in("a.txt"), f.out("a.txt"), "failed", "first try"),
                   done_record(f.in("a.txt"), f.out("a.txt"))});
  DaemonJob job(f.spec({"a.txt"}, IfExists::kReplace, 5), 1, 1, nullptr, nullptr,
                [](DaemonJob*) {});
  REQUIRE(job.open(f.journal, true, false));
  JobReport r = job.report();
  CHECK(r.counts.succeeded == 1);
  CHECK(r.counts.failed == 0);
  CHECK(r.counts.bytes_in == 10);
  CHECK(drain(job).empty());
  job.job_finished(false);
  REQUIRE(job.close_journal());
  REQUIRE(job.write_manifest(f.journal, f.manifest));
  CHECK(JobFolder::read(f.manifest) == done_record(f.in("a.txt"), f.out("a.txt")) + "\n");
}

TEST_CASE("daemon job: a torn last record is dropped on resume and appends follow the good ones") {
  JobFolder f;
  JobFolder::write(f.out("a.txt"), "A");
  f.write_journal({done_record(f.in("a.txt"), f.out("a.txt"))});
  const std::string torn = JobJournal::encode(done_record(f.in("b.txt"), f.out("b.txt")));
  std::ofstream(f.journal, std::ios::app | std::ios::binary) << torn.substr(0, torn.size() / 2);
  DaemonJob job(f.spec({"a.txt", "b.txt"}), 2, 1, nullptr, nullptr, [](DaemonJob*) {});
  REQUIRE(job.open(f.journal, true, false));
  CHECK(job.resumed_documents() == 1);
  CHECK(job.journal_damage().find("torn") != std::string::npos);
  std::vector<DocumentRef> docs = drain(job);
  REQUIRE(inputs_of(docs) == std::vector<std::string>{f.in("b.txt")});
  job.document_finished(outcome_of(docs[0], f.out("b.txt")));
  job.job_finished(false);
  REQUIRE(job.close_journal());
  auto journal = JobJournal::load(f.journal);
  REQUIRE(journal);
  CHECK_FALSE(journal->torn);
  CHECK(journal->records.size() == 2);
}

std::string intent(const std::string& input, const std::string& output, const std::string& sha) {
  return R"({"intent":"commit","input":")" + input + R"(","output":")" + output +
         R"(","sha256":")" + sha + R"(","bytes_in":3,"bytes_out":4,"attempts":2})";
}

TEST_CASE("daemon job: an intent is settled as done only when its output has the sha256 named") {
  JobFolder f;
  JobFolder::write(f.out("a.txt"), "mine");
  JobFolder::write(f.out("b.txt"), "someone else's");
  f.write_journal({intent(f.in("a.txt"), f.out("a.txt"), test::sha256_of("mine")),
                   intent(f.in("b.txt"), f.out("b.txt"), test::sha256_of("mine")),
                   intent(f.in("c.txt"), f.out("c.txt"), test::sha256_of("mine")),
                   intent(f.in("d.txt"), f.out("d.txt"), test::sha256_of("mine")),
                   done_record(f.in("d.txt"), f.out("d.txt"), "failed", "late")});
  DaemonJob job(f.spec({"a.txt", "b.txt", "c.txt", "d.txt"}, IfExists::kSkip, 5), 4, 1, nullptr,
                nullptr, [](DaemonJob*) {});
  REQUIRE(job.open(f.journal, true, false));
  CHECK(job.recognised_outputs() == 1);
  CHECK(job.resumed_documents() == 2);  // a.txt (recognised) and d.txt
  JobReport r = job.report();
  CHECK(r.counts.succeeded == 1);
  CHECK(r.counts.failed == 1);
  CHECK(r.counts.bytes_in == 13);
  CHECK(r.counts.bytes_out == 24);
  CHECK(inputs_of(drain(job)) == std::vector<std::string>{f.in("b.txt"), f.in("c.txt")});
  REQUIRE(job.close_journal());
  auto journal = JobJournal::load(f.journal);
  REQUIRE(journal);
  REQUIRE(journal->records.size() == 2);
  CHECK(journal->records[1] ==
        R"({"input":")" + f.in("a.txt") + R"(","output":")" + f.out("a.txt") +
            R"(","state":"succeeded","bytes_in":3,"bytes_out":4,"sha256":")" +
            test::sha256_of("mine") + R"(","attempts":2,"duration_seconds":0.0,"error":""})");
}

TEST_CASE("daemon job: with if_exists skip an intent record precedes each rename") {
  JobFolder f;
  DaemonJob job(f.spec({"a.txt"}, IfExists::kSkip), 1, 1, nullptr, nullptr, [](DaemonJob*) {});
  REQUIRE(job.open(f.journal, false, /*durable=*/true));
  std::vector<DocumentRef> docs = drain(job);
  REQUIRE(docs.size() == 1);
  const std::string out = f.out("a.txt"), sha = test::sha256_of("x");
  const std::string metadata = R"({"pages":2,"title":"T"})";
  REQUIRE(job.document_committing(PendingOutput{docs[0], out, sha, 3, 4, 2, metadata}));
  REQUIRE(job.close_journal());
  auto journal = JobJournal::load(f.journal);
  REQUIRE(journal);
  REQUIRE(journal->intents.size() == 1);
  // The transforms' metadata rides with the intent, so a resume that settles it keeps it.
  std::string want = intent(f.in("a.txt"), out, sha);
  want.insert(want.size() - 1, R"(,"metadata":{"pages":2,"title":"T"})");
  CHECK(journal->intents[0] == want);
}

TEST_CASE("daemon job: an unresumable job's report counts what its journal recorded") {
  JobFolder f;
  f.write_journal({done_record(f.in("a.txt"), f.out("a.txt")),
                   done_record(f.in("b.txt"), f.out("b.txt"), "failed", "bad"),
                   intent(f.in("c.txt"), f.out("c.txt"), "00")});
  std::string note;
  JobReport r = DaemonJob::unresumable_report("job", f.journal, f.manifest, false, note);
  CHECK(r.state == JobState::kFailed);
  CHECK(r.submitted_at_ms == 777);
  CHECK(r.counts.total == 2);
  CHECK(r.counts.succeeded == 1);
  CHECK(r.counts.failed == 1);
  CHECK(note == "its journal recorded 2 document(s)");
  CHECK(JobFolder::read(f.manifest) ==
        done_record(f.in("a.txt"), f.out("a.txt")) + "\n" +
            done_record(f.in("b.txt"), f.out("b.txt"), "failed", "bad") + "\n");

  std::string missing_note;
  JobReport none = DaemonJob::unresumable_report("job", f.root + "/nope.journal",
                                                 f.root + "/nope.manifest", false, missing_note);
  CHECK(missing_note == "no journal");
  CHECK(none.counts.total == 0);
  CHECK_FALSE(std::filesystem::exists(f.root + "/nope.manifest"));
}

}  // namespace
}  // namespace docpipe
