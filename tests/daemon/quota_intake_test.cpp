// Quotas where jobs come in and leave (docs/design.md "Quotas per submitter (issue 14)"):
// take_job_file refuses a dropped job over its owner's caps into rejected/ with the reason and
// counts an accepted one before it is claimed; the job table counts every job it holds (resumed
// ones whatever the cap) and stops counting it once it is forgotten (finished, cancelled,
// unresumable). Job files are given to nobody (uid 65534) with chown: these tests need root.

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "core/fs_util.h"
#include "daemon/intake.h"
#include "daemon/quota_ledger.h"
#include "tests/daemon/job_table_fixture.h"

namespace fs = std::filesystem;
using docpipe::Credentials;
using docpipe::IntakeResult;
using docpipe::JobTable;
using docpipe::QuotaLedger;
using docpipe::QuotaRefusal;
using docpipe::test::JobTableFixture;

namespace {

constexpr uid_t kNobody = 65534;

bool skip_unless_root() {
  if (::geteuid() == 0) return false;
  if (const char* all = std::getenv("DOCPIPE_REQUIRE_ALL_TESTS"); all != nullptr && *all) {
    FAIL("needs root to give job files to nobody and DOCPIPE_REQUIRE_ALL_TESTS is set");
  }
  MESSAGE("skipped: needs root to give job files to nobody");
  return true;
}

// A spool with quotas: nobody may have 2 jobs and priority 5; everyone else the default 2.
struct QuotaIntakeFixture {
  QuotaIntakeFixture() {
    char tmpl[] = "/tmp/docpipe-quota-intake-XXXXXX";
    root = ::mkdtemp(tmpl);
    REQUIRE(::chmod(root.c_str(), 0755) == 0);  // nobody reads in/ and writes out/
    spool = std::make_unique<docpipe::Spool>(root + "/spool", /*durable=*/false);
    REQUIRE(spool->create_layout());
    fs::create_directories(root + "/in");
    fs::create_directories(root + "/out");
    REQUIRE(::chmod((root + "/out").c_str(), 0777) == 0);
    std::ofstream(root + "/in/a.txt") << "alpha\n";
    config = docpipe::parse_config(R"({"quotas": {"default": {"max_queued_jobs": 2},
                                       "users": {"nobody": {"max_priority": 5}}}})",
                                   root, "config.json");
    config.spool_dir = root + "/spool";
  }
  ~QuotaIntakeFixture() { fs::remove_all(root); }

  // incoming/NAME.json for job `id`, owned by `uid`.
  void drop(const std::string& id, uid_t uid, int priority = 0) {
    const std::string path = spool->incoming() + "/" + id + ".json";
    std::ofstream(path) << nlohmann::json{
        {"id", id},
        {"input", {{"dir", root + "/in"}}},
        {"output", {{"dir", root + "/out"}}},
        {"priority", priority}}.dump();
    REQUIRE(::chown(path.c_str(), uid, uid) == 0);
  }
  IntakeResult take(const std::string& id) {
    return docpipe::take_job_file(*spool, id + ".json", config, &ledger);
  }
  std::string error_file(const std::string& id) const {
    auto text = docpipe::read_file(spool->rejected() + "/" + id + ".json.error.json");
    return text ? *text : std::string();
  }

  std::string root;
  std::unique_ptr<docpipe::Spool> spool;
  docpipe::DaemonConfig config;
  QuotaLedger ledger;
};

Credentials user(uid_t uid) { return Credentials{uid, uid, {}}; }

}  // namespace

TEST_CASE("quota intake: a dropped job over its owner's cap is rejected with the reason") {
  if (skip_unless_root()) return;
  QuotaIntakeFixture f;
  f.drop("one", kNobody);
  f.drop("two", kNobody);
  f.drop("three", kNobody);
  CHECK(f.take("one").kind == IntakeResult::Kind::kAccepted);
  CHECK(f.take("two").kind == IntakeResult::Kind::kAccepted);
  CHECK(f.ledger.count(kNobody) == 2);
  IntakeResult over = f.take("three");
  REQUIRE(over.kind == IntakeResult::Kind::kRejected);
  CHECK(over.quota_refused == QuotaRefusal::kQueuedJobs);
  REQUIRE(over.errors.size() == 1);
  const std::string reason =
      "over quota: uid 65534 has 2 jobs queued or running on this node, the most that "
      "quotas.default.max_queued_jobs (2) allows; submit again once one of them has finished";
  CHECK(over.errors[0].reason == reason);
  CHECK(f.error_file("three").find(reason) != std::string::npos);
  CHECK_FALSE(fs::exists(f.spool->active_job("three")));
  CHECK(f.ledger.count(kNobody) == 2);
  // One finishes (the table releases it): the next one is accepted.
  f.ledger.release("one");
  f.drop("four", kNobody);
  CHECK(f.take("four").kind == IntakeResult::Kind::kAccepted);
  CHECK(f.ledger.count(kNobody) == 2);
}

TEST_CASE("quota intake: a dropped job above its owner's max_priority is rejected on priority") {
  if (skip_unless_root()) return;
  QuotaIntakeFixture f;
  f.drop("urgent", kNobody, 9);
  IntakeResult r = f.take("urgent");
  REQUIRE(r.kind == IntakeResult::Kind::kRejected);
  CHECK(r.quota_refused == QuotaRefusal::kPriority);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].path == "priority");
  CHECK(r.errors[0].reason ==
        "9 is above the cap 5 for uid 65534 (quotas.users.nobody.max_priority)");
  CHECK(f.error_file("urgent").find("quotas.users.nobody.max_priority") != std::string::npos);
  CHECK(f.ledger.count(kNobody) == 0);  // refused: never counted
  f.drop("fine", kNobody, 5);
  CHECK(f.take("fine").kind == IntakeResult::Kind::kAccepted);
}

TEST_CASE("quota intake: root's dropped jobs are never limited") {
  if (skip_unless_root()) return;
  QuotaIntakeFixture f;
  for (const char* id : {"r1", "r2", "r3", "r4"}) {
    f.drop(id, 0, 100);
    IntakeResult r = f.take(id);
    CAPTURE(id);
    CHECK(r.kind == IntakeResult::Kind::kAccepted);
    CHECK(r.quota_refused == QuotaRefusal::kNone);
  }
  CHECK(f.ledger.count(0) == 4);  // counted (status shows them), never refused
}

TEST_CASE("quota intake: a job not claimed after all gives its reservation back") {
  if (skip_unless_root()) return;
  QuotaIntakeFixture f;
  // The id was run before: the claim refuses it after the reservation.
  REQUIRE(docpipe::write_file_atomic(f.spool->done() + "/ran.json", "{}", false));
  f.drop("ran", kNobody);
  IntakeResult r = f.take("ran");
  REQUIRE(r.kind == IntakeResult::Kind::kRejected);
  CHECK(r.quota_refused == QuotaRefusal::kNone);
  CHECK(f.ledger.count(kNobody) == 0);
  CHECK(f.ledger.size() == 0);
  // An id counted already (queued or being accepted) is refused as active, and the counted
  // job's reservation stays.
  f.ledger.hold("busy", 1000);
  f.drop("busy", kNobody);
  IntakeResult busy = f.take("busy");
  REQUIRE(busy.kind == IntakeResult::Kind::kRejected);
  REQUIRE(busy.errors.size() == 1);
  CHECK(busy.errors[0].path == "id");
  CHECK(busy.errors[0].reason == "job id \"busy\" is already active");
  CHECK(f.ledger.count(1000) == 1);
  CHECK(f.ledger.count(kNobody) == 0);
}

TEST_CASE("quota intake: dropped jobs taken at once on many threads never pass the cap") {
  if (skip_unless_root()) return;
  QuotaIntakeFixture f;
  constexpr int kJobs = 8;
  for (int i = 0; i < kJobs; ++i) f.drop("race" + std::to_string(i), kNobody);
  std::vector<IntakeResult> results(kJobs);
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < kJobs; ++i) {
    threads.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      results[i] = f.take("race" + std::to_string(i));
    });
  }
  go = true;
  for (auto& t : threads) t.join();
  int accepted = 0;
  int refused = 0;
  for (const IntakeResult& r : results) {
    if (r.kind == IntakeResult::Kind::kAccepted) ++accepted;
    if (r.quota_refused == QuotaRefusal::kQueuedJobs) ++refused;
  }
  CHECK(accepted == 2);
  CHECK(refused == kJobs - 2);
  CHECK(f.ledger.count(kNobody) == 2);
  int in_active = 0;
  for (int i = 0; i < kJobs; ++i) {
    in_active += fs::exists(f.spool->active_job("race" + std::to_string(i))) ? 1 : 0;
  }
  CHECK(in_active == 2);
}

TEST_CASE("quota table: a job counts while queued or running and not once it has finished") {
  JobTableFixture f(/*max_active_jobs=*/1);
  f.table->enqueue(f.make_job("a", 0, user(1000)));
  f.table->enqueue(f.make_job("b", 0, user(1000)));
  f.table->enqueue(f.make_job("c", 0));  // root's
  CHECK(f.quotas.count(1000) == 2);
  CHECK(f.quotas.count(0) == 1);
  f.work.finish("a");
  f.drain();  // a's report written: forgotten, and b admitted
  CHECK(f.quotas.count(1000) == 1);
  CHECK(f.work.added == std::vector<std::string>{"a", "b"});
  f.work.finish("b");
  f.drain();
  CHECK(f.quotas.count(1000) == 0);
  CHECK(f.quotas.count(0) == 1);
}

TEST_CASE("quota table: a cancelled queued job and an unresumable one stop counting") {
  JobTableFixture f(/*max_active_jobs=*/1);
  f.table->enqueue(f.make_job("running", 0, user(1000)));
  f.table->enqueue(f.make_job("waiting", 0, user(1000)));
  CHECK(f.quotas.count(1000) == 2);
  CHECK(f.table->cancel("waiting", user(1000)) == JobTable::CancelOutcome::kCancelled);
  f.drain();
  CHECK(f.quotas.count(1000) == 1);
  // Accepted and counted at its submit, never opened, then found unresumable: forgotten too.
  REQUIRE(f.quotas.reserve("broken", 1000, 5) == QuotaLedger::Reserve::kReserved);
  REQUIRE(docpipe::write_file_atomic(f.spool->active_job("broken"), "{not json", false));
  f.table->finish_unresumable("broken", {{"", "malformed"}});
  f.executor.run_all();
  CHECK(f.quotas.count(1000) == 1);
}

TEST_CASE("quota table: resumed jobs count whatever the cap - once each") {
  JobTableFixture f(/*max_active_jobs=*/1);
  // Reserved at submit, then queued: one count.
  REQUIRE(f.quotas.reserve("new", 1000, 1) == QuotaLedger::Reserve::kReserved);
  f.table->enqueue(f.make_job("new", 0, user(1000)));
  CHECK(f.quotas.count(1000) == 1);
  // Two more resumed from active/ (accepted by an earlier run): counted past the cap of 1.
  f.table->enqueue(f.make_job("old1", 0, user(1000)));
  f.table->enqueue(f.make_job("old2", 0, user(1000)));
  CHECK(f.quotas.count(1000) == 3);
  CHECK(f.quotas.reserve("next", 1000, 1) == QuotaLedger::Reserve::kOverCap);
}
