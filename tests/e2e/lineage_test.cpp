// Redo only what changed (issue 14), through the real binary: `if_exists: "unchanged"` after 10
// of 1,000 inputs changed redoes exactly those 10 (5 more only touched are found unchanged by
// their hash); `docpipe plan` beforehand lists exactly those 10 and its counts match the run's
// report; a changed transform parameter redoes everything; `docpipe which` names the job, input
// and hash; a kill -9 mid-job converges; a damaged store is moved aside; and an unprivileged
// caller cannot ask about a file it cannot read.

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include <map>
#include <set>
#include <string>

#include "tests/e2e/crash_support.h"
#include "tests/e2e/harness.h"

namespace e2e {
namespace {

std::string doc_name(int i) {
  char name[32];
  std::snprintf(name, sizeof name, "doc-%04d.txt", i);
  return name;
}

void make_inputs(const std::string& in, int n) {
  for (int i = 0; i < n; ++i) {
    write_file(in + "/" + doc_name(i),
               "document " + std::to_string(i) + "\n" + std::string(200, 'x'));
  }
}

nlohmann::json unchanged_job(const std::string& id, const std::string& in, const std::string& out,
                             int level) {
  nlohmann::json job = make_job(id, in, out, {{{"op", "gzip"}, {"level", level}}});
  job["output"]["suffix"] = ".gz";
  job["output"]["if_exists"] = "unchanged";
  return job;
}

struct Stamp {
  ino_t ino;
  int64_t mtime_ns;
};

std::map<std::string, Stamp> output_stamps(const std::string& out) {
  std::map<std::string, Stamp> stamps;
  for (const std::string& rel : list_files(out)) {
    struct stat st;
    REQUIRE(::stat((out + "/" + rel).c_str(), &st) == 0);
    stamps[rel] = {st.st_ino, st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec};
  }
  return stamps;
}

std::string job_file(const TempDir& tmp, const nlohmann::json& job) {
  const std::string path = tmp / (job["id"].get<std::string>() + ".json");
  write_file(path, job.dump(2));
  return path;
}

const nlohmann::json& counts(const JobOutcome& o) { return o.report["counts"]; }

TEST_CASE("e2e lineage: a rerun redoes exactly the changed inputs and plan says so first") {
  TempDir tmp(scratch_base());
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  constexpr int kDocs = 1000;
  make_inputs(in, kDocs);
  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.start();

  drop_job(spool, "first.json", unchanged_job("first", in, out, 1));
  JobOutcome first = daemon.wait_for_job("first");
  REQUIRE(first.folder == "done");
  CHECK(counts(first)["succeeded"] == kDocs);
  // The manifest records each input's hash and the chain.
  std::vector<nlohmann::json> lines = read_json_lines(first.manifest_path);
  REQUIRE(lines.size() == kDocs);
  const std::string chain = lines[0].value("chain", "");
  CHECK(chain.size() == 64);
  for (const nlohmann::json& l : lines) {
    const std::string input = l["input"];
    CHECK(l.value("input_sha256", "") == sha256_hex(read_file(input)));
    CHECK(l.value("chain", "") == chain);
  }
  const std::map<std::string, Stamp> before = output_stamps(out);
  REQUIRE(before.size() == kDocs);

  // 10 changed in content; 5 touched only (same bytes, a new mtime): found unchanged by hash.
  std::set<std::string> changed;
  for (int i = 0; i < 10; ++i) {
    const std::string path = in + "/" + doc_name(i * 97);
    write_file(path, "changed " + std::to_string(i) + "\n");
    changed.insert(path);
  }
  for (int i = 0; i < 5; ++i) {
    const std::string path = in + "/" + doc_name(i * 97 + 5);
    struct utimbuf t {
      .actime = 1000000000 + i, .modtime = 1000000000 + i
    };
    REQUIRE(::utime(path.c_str(), &t) == 0);
  }

  const std::string plan_file = job_file(tmp, unchanged_job("second", in, out, 1));
  CommandResult plan = docpipe({"plan", "--spool", spool, "--json", plan_file}, tmp.path());
  INFO("plan: " << plan.out << plan.err);
  REQUIRE(plan.exit_code == 2);
  nlohmann::json p = nlohmann::json::parse(plan.out);
  CHECK(p["counts"]["total"] == kDocs);
  CHECK(p["counts"]["changed"] == 10);
  CHECK(p["counts"]["unchanged"] == kDocs - 10);
  CHECK(p["counts"]["new"] == 0);
  CHECK(p["counts"]["would_overwrite"] == 0);
  CHECK(p["counts"]["orphans"] == 0);
  CHECK(p["counts"]["hashed"] == 15);
  CHECK(p["chain"] == chain);
  std::set<std::string> listed;
  for (const auto& d : p["documents"]) listed.insert(d["input"].get<std::string>());
  CHECK(listed == changed);
  uint64_t changed_bytes = 0;
  for (const std::string& c : changed) changed_bytes += read_file(c).size();
  CHECK(p["bytes_to_process"] == changed_bytes);
  CHECK(p["estimate_seconds"].is_number());  // the first job was measured
  // The human form says the same.
  CommandResult human = docpipe({"plan", "--spool", spool, plan_file}, tmp.path());
  CHECK(human.exit_code == 2);
  CHECK(human.out.find("changed          10") != std::string::npos);

  drop_job(spool, "second.json", unchanged_job("second", in, out, 1));
  JobOutcome second = daemon.wait_for_job("second");
  REQUIRE(second.folder == "done");
  // The plan matched the run.
  CHECK(counts(second)["succeeded"] == p["counts"]["changed"]);
  CHECK(counts(second)["skipped"] == p["counts"]["unchanged"]);
  CHECK(counts(second)["failed"] == 0);
  const std::map<std::string, Stamp> after = output_stamps(out);
  for (const auto& [rel, stamp] : before) {
    const bool redone = changed.count(in + "/" + rel.substr(0, rel.size() - 3)) > 0;
    const Stamp& now = after.at(rel);
    CHECK_MESSAGE((now.ino != stamp.ino) == redone, rel);
    CHECK_MESSAGE((now.mtime_ns != stamp.mtime_ns) == redone, rel);
  }
  for (const std::string& c : changed) {
    CHECK(gunzip(read_file(out + c.substr(in.size()) + ".gz")) == read_file(c));
  }
  CHECK(daemon.metric("docpipe_unchanged_checks_total", {{"result", "precheck"}}) == kDocs - 15);
  CHECK(daemon.metric("docpipe_unchanged_checks_total", {{"result", "hashed_same"}}) == 5);
  CHECK(daemon.metric("docpipe_unchanged_checks_total", {{"result", "changed"}}) == 10);
  int unchanged_lines = 0;
  for (const nlohmann::json& l : read_json_lines(second.manifest_path)) {
    if (l["state"] == "skipped") unchanged_lines += l.value("reason", "") == "unchanged";
  }
  CHECK(unchanged_lines == kDocs - 10);

  // Nothing left to do: the touched inputs' stats were refreshed, so nothing is hashed either.
  CommandResult again = docpipe({"plan", "--spool", spool, "--json", plan_file}, tmp.path());
  CHECK(again.exit_code == 0);
  nlohmann::json q = nlohmann::json::parse(again.out);
  CHECK(q["counts"]["unchanged"] == kDocs);
  CHECK(q["counts"]["hashed"] == 0);

  // which: the redone output names the second job; an untouched one the first.
  const std::string redone_input = *changed.begin();
  const std::string redone_output = out + redone_input.substr(in.size()) + ".gz";
  CommandResult which = docpipe({"which", "--spool", spool, "--json", redone_output}, tmp.path());
  INFO("which: " << which.out << which.err);
  REQUIRE(which.exit_code == 0);
  nlohmann::json w = nlohmann::json::parse(which.out);
  CHECK(w["job"] == "second");
  CHECK(w["input"] == redone_input);
  CHECK(w["input_sha256"] == sha256_hex(read_file(redone_input)));
  CHECK(w["output_sha256"] == sha256_hex(read_file(redone_output)));
  CHECK(w["chain"] == chain);
  CHECK(w["chain_json"]["steps"][0]["op"] == "gzip");
  CHECK(w["chain_json"]["steps"][0]["params"]["level"] == 1);
  CHECK(w["output_unchanged"] == true);
  CommandResult old =
      docpipe({"which", "--spool", spool, out + "/" + doc_name(1) + ".gz"}, tmp.path());
  CHECK(old.exit_code == 0);
  CHECK(old.out.find("job:           first") != std::string::npos);
  CommandResult none = docpipe({"which", "--spool", spool, in + "/" + doc_name(1)}, tmp.path());
  CHECK(none.exit_code == 1);
  CHECK(none.err.find("no lineage record for") != std::string::npos);
  CommandResult missing = docpipe({"which", "--spool", spool, out + "/nope.gz"}, tmp.path());
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("no such file") != std::string::npos);

  // An output edited by hand is redone, as is every document when a parameter changes.
  write_file(out + "/" + doc_name(2) + ".gz", "edited");
  drop_job(spool, "third.json", unchanged_job("third", in, out, 1));
  JobOutcome third = daemon.wait_for_job("third");
  CHECK(counts(third)["succeeded"] == 1);
  CHECK(gunzip(read_file(out + "/" + doc_name(2) + ".gz")) == read_file(in + "/" + doc_name(2)));

  const std::string level2 = job_file(tmp, unchanged_job("fourth", in, out, 2));
  CommandResult plan2 = docpipe({"plan", "--spool", spool, "--json", level2}, tmp.path());
  CHECK(plan2.exit_code == 2);
  CHECK(nlohmann::json::parse(plan2.out)["counts"]["changed"] == kDocs);
  drop_job(spool, "fourth.json", unchanged_job("fourth", in, out, 2));
  JobOutcome fourth = daemon.wait_for_job("fourth");
  CHECK(counts(fourth)["succeeded"] == kDocs);
  CHECK(counts(fourth)["skipped"] == 0);

  // Orphans: a recorded output whose input is gone.
  REQUIRE(::unlink((in + "/" + doc_name(3)).c_str()) == 0);
  CommandResult plan3 = docpipe({"plan", "--spool", spool, "--json", level2}, tmp.path());
  CHECK(plan3.exit_code == 0);
  nlohmann::json o = nlohmann::json::parse(plan3.out);
  CHECK(o["counts"]["orphans"] == 1);
  REQUIRE(o["orphans"].size() == 1);
  CHECK(o["orphans"][0]["output"] == out + "/" + doc_name(3) + ".gz");
}

TEST_CASE("e2e lineage: a kill -9 mid-job converges and the rerun redoes nothing") {
  TempDir tmp(scratch_base());
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  constexpr int kDocs = 200;
  make_inputs(in, kDocs);
  auto job = [&](const std::string& id) {
    nlohmann::json j = make_job(id, in, out, {{{"op", "test.sleep"}, {"ms", 10}}});
    j["output"]["if_exists"] = "unchanged";
    return j;
  };
  drop_job(spool, "crashy.json", job("crashy"));
  {
    DaemonProcess daemon(spool, {"--workers", "2"});
    daemon.set_binary(DOCPIPE_TEST_BINARY);
    daemon.start();
    REQUIRE(poll_until(kJobTimeout, [&] {
      daemon.expect_running();
      return count_outputs(out) >= 60;
    }));
    REQUIRE(::kill(daemon.pid(), SIGKILL) == 0);
    CHECK(daemon.wait_exit() == 128 + SIGKILL);
  }
  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  JobOutcome resumed = daemon.wait_for_job("crashy");
  REQUIRE(resumed.folder == "done");
  CHECK(counts(resumed)["succeeded"] == kDocs);
  // Every output, of both runs, is on record: the rerun skips them all.
  drop_job(spool, "rerun.json", job("rerun"));
  JobOutcome rerun = daemon.wait_for_job("rerun");
  CHECK(counts(rerun)["succeeded"] == 0);
  CHECK(counts(rerun)["skipped"] == kDocs);
}

TEST_CASE("e2e lineage: a damaged store is moved aside and the next run redoes everything once") {
  TempDir tmp(scratch_base());
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  constexpr int kDocs = 30;
  make_inputs(in, kDocs);
  {
    DaemonProcess daemon(spool, {});
    daemon.start();
    drop_job(spool, "a.json", unchanged_job("a", in, out, 1));
    CHECK(counts(daemon.wait_for_job("a"))["succeeded"] == kDocs);
    CHECK(daemon.terminate() == 0);
  }
  for (const char* ext : {"", "-wal", "-shm"}) ::unlink((spool + "/lineage.sqlite" + ext).c_str());
  write_file(spool + "/lineage.sqlite", std::string(4096, '\x5a'));
  DaemonProcess daemon(spool, {});
  daemon.start();
  CHECK(!daemon.wait_for_log_lines({"lineage store damaged", "moved aside"}).empty());
  drop_job(spool, "b.json", unchanged_job("b", in, out, 1));
  CHECK(counts(daemon.wait_for_job("b"))["succeeded"] == kDocs);
  drop_job(spool, "c.json", unchanged_job("c", in, out, 1));
  CHECK(counts(daemon.wait_for_job("c"))["skipped"] == kDocs);
  bool aside = false;
  for (const std::string& f : list_files(spool))
    aside = aside || f.find("lineage.sqlite.damaged-") == 0;
  CHECK(aside);
}

TEST_CASE("e2e lineage: which refuses a file the caller cannot read") {
  if (::geteuid() != 0) return skip_test("needs root to act as another user (setpriv)");
  TempDir tmp(scratch_base());
  REQUIRE(::chmod(tmp.path().c_str(), 0711) == 0);
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  make_inputs(in, 3);
  DaemonProcess daemon(spool, {});
  daemon.start();
  REQUIRE(::chmod((spool + "/control.sock").c_str(), 0666) == 0);
  drop_job(spool, "mine.json", unchanged_job("mine", in, out, 1));
  REQUIRE(daemon.wait_for_job("mine").folder == "done");
  const std::string secret = out + "/" + doc_name(0) + ".gz";
  const std::string open = out + "/" + doc_name(1) + ".gz";
  REQUIRE(::chmod(secret.c_str(), 0600) == 0);
  auto as_nobody = [&](const std::string& path) {
    return run_command({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        docpipe_binary(), "which", "--spool", spool, path},
                       tmp.path());
  };
  CommandResult refused = as_nobody(secret);
  CHECK(refused.exit_code == 1);
  CHECK(refused.err.find("not yours: you cannot read") != std::string::npos);
  CHECK(refused.out.find("mine") == std::string::npos);
  CommandResult allowed = as_nobody(open);
  INFO(allowed.err);
  CHECK(allowed.exit_code == 0);
  CHECK(allowed.out.find("job:           mine") != std::string::npos);
  // A folder it cannot search: refused before anything about the file is said.
  REQUIRE(::chmod(out.c_str(), 0700) == 0);
  CommandResult hidden = as_nobody(open);
  CHECK(hidden.exit_code == 1);
  CHECK(hidden.err.find("not yours") != std::string::npos);
  // Root may ask about anything.
  CHECK(docpipe({"which", "--spool", spool, secret}, tmp.path()).exit_code == 0);
}

}  // namespace
}  // namespace e2e
