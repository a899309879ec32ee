// docpipe retry through the real binary (issue 14, docs/design.md "Retry"): a job's failed
// documents, once fixed, are done again alone and land where the original would have put them;
// documents a cancel left undone are retried with them; both reports name each other; a job
// still running, one already retried, one with nothing left and one that does not exist are
// refused with their reasons; nobody cannot retry root's job (the answer is that of a job that
// never was), and a retry root asks for of nobody's job acts for nobody.

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <set>
#include <string>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

constexpr uid_t kNobody = 65534;

// Each input the manifest lists, which must be listed once.
std::set<std::string> manifest_inputs(const JobOutcome& outcome) {
  std::set<std::string> inputs;
  const std::vector<nlohmann::json> lines = read_json_lines(outcome.manifest_path);
  for (const auto& line : lines) inputs.insert(line["input"].get<std::string>());
  CHECK(inputs.size() == lines.size());
  return inputs;
}

ino_t inode_of(const std::string& path) {
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_ino;
}

TEST_CASE("e2e retry: 3 bad documents of 8 are fixed and retried alone and both reports link") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool", in = tmp / "in", out = tmp / "out";
  const std::vector<std::string> good{"g1.json", "g2.json", "sub/g3.json", "sub/g4.json",
                                      "g5.json"};
  const std::vector<std::string> bad{"b1.json", "sub/b2.json", "sub/deep/b3.json"};
  for (const auto& rel : good) write_file(in + "/" + rel, "{ \"ok\": [1, 2] }\n");
  for (const auto& rel : bad) write_file(in + "/" + rel, "{ \"broken\": \n");
  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.start();
  nlohmann::json job = make_job("nightly", in, out, {{{"op", "json.minify"}}});
  job["limits"] = {{"max_failed_documents", 10}};
  drop_job(spool, "nightly.json", job);
  JobOutcome first = daemon.wait_for_job("nightly");
  INFO("first report: " << first.report.dump(2));
  REQUIRE(first.report["counts"]["succeeded"] == 5);
  REQUIRE(first.report["counts"]["failed"] == 3);
  ino_t g3 = inode_of(out + "/sub/g3.json");

  // Not finished, or never was: refused, each with its reason.
  CommandResult unknown = docpipe({"retry", "--spool", spool, "nosuchjob"}, tmp.path());
  CHECK(unknown.exit_code == 1);
  CHECK(unknown.err.find("no finished job \"nosuchjob\"") != std::string::npos);

  for (const auto& rel : bad) write_file(in + "/" + rel, "{ \"fixed\": true }\n");
  CommandResult retried = docpipe({"retry", "--spool", spool, "--wait", "nightly"}, tmp.path());
  INFO("retry: " << retried.out << retried.err);
  CHECK(retried.exit_code == 0);
  CHECK(retried.out.find("retrying 3 document(s) of job \"nightly\" as job \"nightly-retry-1\" "
                         "(3 failed, 0 never finished)") != std::string::npos);
  JobOutcome second = daemon.wait_for_job("nightly-retry-1");
  INFO("retry report: " << second.report.dump(2));
  CHECK(second.folder == "done");
  CHECK(second.report["retry_of"] == "nightly");
  CHECK(second.report["counts"]["total"] == 3);
  CHECK(second.report["counts"]["succeeded"] == 3);
  CHECK(second.report["transforms"] == nlohmann::json{"json.minify"});
  std::set<std::string> expected;
  for (const auto& rel : bad) expected.insert(in + "/" + rel);
  CHECK(manifest_inputs(second) == expected);
  // Where the original would have put them; the good ones were not touched again.
  for (const auto& rel : bad) CHECK(read_file(out + "/" + rel) == "{\"fixed\":true}");
  CHECK(inode_of(out + "/sub/g3.json") == g3);
  nlohmann::json original = read_json(spool + "/" + first.folder + "/nightly.report.json");
  CHECK(original["retried_by"] == nlohmann::json{"nightly-retry-1"});
  nlohmann::json status = nlohmann::json::parse(
      docpipe({"status", "--spool", spool, "--json", "nightly"}, tmp.path()).out);
  CHECK(status["job"]["report"]["retried_by"] == nlohmann::json{"nightly-retry-1"});

  // The original again: its retry holds what is left. The retry: nothing is (exit 3).
  CommandResult again = docpipe({"retry", "--spool", spool, "nightly"}, tmp.path());
  CHECK(again.exit_code == 1);
  CHECK(again.err.find("was retried as \"nightly-retry-1\" already") != std::string::npos);
  CommandResult nothing = docpipe({"retry", "--spool", spool, "nightly-retry-1"}, tmp.path());
  INFO("nothing: " << nothing.err);
  CHECK(nothing.exit_code == 3);
  CHECK(nothing.err.find("nothing to retry") != std::string::npos);
  CHECK_FALSE(file_exists(spool + "/done/nightly-retry-2.json"));
  // Its retry pruned (as retention would): what is left cannot be told any more.
  for (const char* f : {".json", ".report.json", ".manifest.jsonl"}) {
    std::filesystem::remove(spool + "/done/nightly-retry-1" + f);
  }
  CommandResult pruned = docpipe({"retry", "--spool", spool, "nightly"}, tmp.path());
  CHECK(pruned.exit_code == 1);
  CHECK(pruned.err.find("which is no longer in the spool") != std::string::npos);
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e retry: a job whose input folder vanished before its walk is retried whole") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool", in = tmp / "in", out = tmp / "out";
  for (const char* name : {"a.json", "b.json", "c.json"}) write_file(in + "/" + name, "[1]\n");
  DaemonProcess daemon(spool, {"--workers", "1"});
  daemon.start();
  // Accepted (counted) while intake is paused; the folder goes before the job starts.
  REQUIRE(docpipe({"pause", "--spool", spool}, tmp.path()).exit_code == 0);
  write_file(tmp / "cut.json", make_job("cut", in, out, {{{"op", "json.minify"}}}).dump());
  REQUIRE(docpipe({"submit", "--spool", spool, tmp / "cut.json"}, tmp.path()).exit_code == 0);
  std::filesystem::rename(in, tmp / "in.away");
  REQUIRE(docpipe({"resume", "--spool", spool}, tmp.path()).exit_code == 0);
  JobOutcome cut = daemon.wait_for_job("cut");
  INFO("report: " << cut.report.dump(2));
  REQUIRE(cut.report["state"] == "failed");
  CHECK(cut.report["all_documents_seen"] == false);
  CHECK(cut.report["counts"]["cancelled"] == 3);
  std::filesystem::rename(tmp / "in.away", in);
  CommandResult retried = docpipe({"retry", "--spool", spool, "--wait", "cut"}, tmp.path());
  INFO("retry: " << retried.out << retried.err);
  CHECK(retried.exit_code == 0);
  CHECK(retried.out.find("retrying 3 document(s)") != std::string::npos);
  CHECK(daemon.wait_for_job("cut-retry-1").report["counts"]["succeeded"] == 3);
  CHECK(daemon.terminate() == 0);
}

TEST_CASE(
    "e2e retry: documents a cancel left undone are retried and a running job is refused and a "
    "crash before the link is mended") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool", in = tmp / "in", out = tmp / "out";
  constexpr int kDocuments = 10;
  std::set<std::string> all;
  for (int i = 0; i < kDocuments; ++i) {
    const std::string path = in + "/doc-" + std::to_string(i) + ".txt";
    write_file(path, "document " + std::to_string(i) + "\n");
    all.insert(path);
  }
  auto daemon = std::make_unique<DaemonProcess>(spool, std::vector<std::string>{"--workers", "1"});
  daemon->set_binary(DOCPIPE_TEST_BINARY);
  daemon->start();
  drop_job(spool, "slow.json", make_job("slow", in, out, {{{"op", "test.sleep"}, {"ms", 400}}}));
  REQUIRE(poll_until(std::chrono::seconds(60), [&] {
    nlohmann::json s = daemon_status(spool, tmp.path());
    for (const auto& j : s["jobs"]) {
      if (j["id"] == "slow" && j.value("done", 0) >= 2) return true;
    }
    return false;
  }));
  CommandResult running = docpipe({"retry", "--spool", spool, "slow"}, tmp.path());
  CHECK(running.exit_code == 1);
  CHECK(running.err.find("has not finished (it is queued or running)") != std::string::npos);
  REQUIRE(docpipe({"cancel", "--spool", spool, "slow"}, tmp.path()).exit_code == 0);
  JobOutcome cancelled = daemon->wait_for_job("slow");
  INFO("cancelled report: " << cancelled.report.dump(2));
  REQUIRE(cancelled.report["state"] == "cancelled");
  const int succeeded = cancelled.report["counts"]["succeeded"].get<int>();
  REQUIRE(succeeded >= 2);
  REQUIRE(succeeded < kDocuments);

  CommandResult retried =
      docpipe({"retry", "--spool", spool, "--id", "slow-again", "slow"}, tmp.path());
  INFO("retry: " << retried.out << retried.err);
  REQUIRE(retried.exit_code == 0);
  CHECK(retried.out.find(std::to_string(kDocuments - succeeded) + " document(s) of job \"slow\" "
                                                                  "as job \"slow-again\"") !=
        std::string::npos);
  // A crash right after the retry was admitted, and its link lost (stripped here): the retry
  // resumes from active/ (a file the daemon wrote, so its retry_of stands) and links itself
  // again when it finishes.
  REQUIRE(::kill(daemon->pid(), SIGKILL) == 0);
  daemon->wait_exit();
  const std::string original = spool + "/failed/slow.report.json";
  nlohmann::json stripped = read_json(original);
  REQUIRE(stripped["retried_by"] == nlohmann::json{"slow-again"});
  stripped.erase("retried_by");
  write_file(original, stripped.dump(2));
  REQUIRE(file_exists(spool + "/active/slow-again.json"));  // still running when killed
  daemon = std::make_unique<DaemonProcess>(spool, std::vector<std::string>{"--workers", "1"});
  daemon->set_binary(DOCPIPE_TEST_BINARY);
  daemon->start();
  // Resumed and running, its link lost: still no second retry of the same documents.
  CommandResult blocked = docpipe({"retry", "--spool", spool, "slow"}, tmp.path());
  CHECK(blocked.exit_code == 1);
  CHECK(blocked.err.find("is being retried as \"slow-again\"") != std::string::npos);
  JobOutcome again = daemon->wait_for_job("slow-again");
  CHECK(again.report["retry_of"] == "slow");
  CHECK(read_json(original)["retried_by"] == nlohmann::json{"slow-again"});
  CHECK(again.report["state"] == "succeeded");
  CHECK(again.report["counts"]["total"] == kDocuments - succeeded);
  // Between them, every document once.
  std::set<std::string> first = manifest_inputs(cancelled), second = manifest_inputs(again);
  std::set<std::string> both = first;
  both.insert(second.begin(), second.end());
  CHECK(both == all);
  CHECK(first.size() + second.size() == all.size());
  CHECK(daemon->terminate() == 0);
}

TEST_CASE(
    "e2e retry: nobody cannot retry root's job and root's retry of nobody's acts for nobody") {
  if (::geteuid() != 0) return skip_test("needs root to act as nobody (setpriv)");
  TempDir tmp;
  REQUIRE(::chmod(tmp.path().c_str(), 0755) == 0);
  const std::string spool = tmp / "spool", in = tmp / "in";
  write_file(in + "/good.json", "[1]\n");
  write_file(in + "/bad.json", "[\n");
  REQUIRE(::chmod(in.c_str(), 0755) == 0);
  make_dirs(tmp / "out-nobody");
  REQUIRE(::chown((tmp / "out-nobody").c_str(), kNobody, kNobody) == 0);
  DaemonProcess daemon(spool, {"--workers", "1"});
  daemon.start();
  REQUIRE(::chmod((spool + "/control.sock").c_str(), 0666) == 0);
  auto as_nobody = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv{"/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                                  "--clear-groups", docpipe_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, tmp.path());
  };
  nlohmann::json root_job = make_job("rootjob", in, tmp / "out-root", {{{"op", "json.minify"}}});
  root_job["limits"] = {{"max_failed_documents", 5}};
  drop_job(spool, "rootjob.json", root_job);
  REQUIRE(daemon.wait_for_job("rootjob").report["counts"]["failed"] == 1);
  {
    nlohmann::json job = make_job("nobodyjob", in, tmp / "out-nobody", {{{"op", "json.minify"}}});
    job["limits"] = {{"max_failed_documents", 5}};
    const std::string staged = tmp / "nobodyjob.json";
    write_file(staged, job.dump());
    REQUIRE(::chown(staged.c_str(), kNobody, kNobody) == 0);
    REQUIRE(::rename(staged.c_str(), (spool + "/incoming/nobodyjob.json").c_str()) == 0);
  }
  REQUIRE(daemon.wait_for_job("nobodyjob").report["counts"]["failed"] == 1);

  CommandResult others = as_nobody({"retry", "--spool", spool, "rootjob"});
  CommandResult never = as_nobody({"retry", "--spool", spool, "neverwas"});
  CHECK(others.exit_code == 1);
  CHECK(others.err.find("no finished job \"rootjob\"") != std::string::npos);
  CHECK(never.err.find("no finished job \"neverwas\"") != std::string::npos);
  CHECK_FALSE(file_exists(spool + "/done/rootjob-retry-1.json"));
  CHECK_FALSE(file_exists(spool + "/failed/rootjob-retry-1.json"));

  write_file(in + "/bad.json", "[2]\n");
  CommandResult by_root = docpipe({"retry", "--spool", spool, "nobodyjob"}, tmp.path());
  INFO("root's retry: " << by_root.out << by_root.err);
  REQUIRE(by_root.exit_code == 0);
  JobOutcome retry = daemon.wait_for_job("nobodyjob-retry-1");
  CHECK(retry.report["state"] == "succeeded");
  // nobody's own job, acting with nobody's rights: nobody sees it.
  CommandResult seen = as_nobody({"status", "--spool", spool, "--json", "nobodyjob-retry-1"});
  INFO("status as nobody: " << seen.out << seen.err);
  REQUIRE(seen.exit_code == 0);
  CHECK(nlohmann::json::parse(seen.out)["job"]["submitter_uid"] == kNobody);
  CHECK(read_file(tmp / "out-nobody/bad.json") == "[2]");
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
