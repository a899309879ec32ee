// What happens to inputs (issue 14): input.after_success / after_failure through the real
// daemon. Inputs are deleted or moved (with their relative paths) only once their outputs are in
// place and their outcomes journalled; a name in the move folder is never clobbered; a kill -9
// while the first input deletion is held (strace holds the daemon's unlinkat) loses nothing and
// deletes each input exactly once after the restart; a folder swapped for a symlink leading out
// is refused; and an unprivileged submitter cannot have docpipe delete what it could not.

#include <dirent.h>
#include <doctest/doctest.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "tests/e2e/crash_support.h"
#include "tests/e2e/harness.h"
#include "tests/e2e/strace_parse.h"

namespace e2e {
namespace {

constexpr uid_t kNobody = 65534;

// relative path -> content
// Odd documents in sub/, even ones at the top (all in sub/ with `all_in_sub`).
std::map<std::string, std::string> write_inputs(const std::string& in, int n,
                                                bool all_in_sub = false) {
  std::map<std::string, std::string> docs;
  for (int i = 0; i < n; ++i) {
    const std::string rel = (i % 2 == 0 && !all_in_sub ? "" : "sub/") + std::string("doc-") +
                            std::to_string(i) + ".txt";
    docs[rel] = "document " + std::to_string(i) + "\n";
    write_file(in + "/" + rel, docs[rel]);
  }
  return docs;
}

nlohmann::json acting_job(const std::string& id, const std::string& in, const std::string& out,
                          const std::string& after_success, const std::string& after_failure) {
  nlohmann::json job = make_job(id, in, out);
  if (!after_success.empty()) job["input"]["after_success"] = after_success;
  if (!after_failure.empty()) job["input"]["after_failure"] = after_failure;
  return job;
}

std::map<std::string, nlohmann::json> manifest_by_input(const JobOutcome& outcome) {
  std::map<std::string, nlohmann::json> out;
  for (nlohmann::json& line : read_json_lines(outcome.manifest_path)) {
    out[line["input"].get<std::string>()] = line;
  }
  return out;
}

std::string canonical(const std::string& path) { return std::filesystem::canonical(path).string(); }

TEST_CASE("e2e input actions: after_success delete removes each input once its output is there") {
  TempDir tmp;
  const std::string in = canonical(tmp.path()) + "/in", out = canonical(tmp.path()) + "/out";
  const std::string spool = tmp / "spool";
  std::map<std::string, std::string> docs = write_inputs(in, 10);
  // doc-0's output exists already: with if_exists skip it is skipped, and its input kept.
  write_file(out + "/doc-0.txt", "older output\n");
  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.start();
  nlohmann::json job = acting_job("del", in, out, "delete", "");
  job["output"]["if_exists"] = "skip";
  drop_job(spool, "del.json", job);
  JobOutcome outcome = daemon.wait_for_job("del");
  INFO(outcome.report.dump(2));
  CHECK(outcome.report["state"] == "succeeded");
  CHECK(outcome.report["counts"]["skipped"] == 1);
  CHECK(outcome.report["input_actions"]["done"] == 9);
  CHECK(outcome.report["input_actions"]["failed"] == 0);
  for (const auto& [rel, content] : docs) {
    INFO(rel);
    if (rel == "doc-0.txt") {
      CHECK(read_file(in + "/" + rel) == content);  // skipped: kept
      CHECK(read_file(out + "/" + rel) == "older output\n");
      continue;
    }
    CHECK_FALSE(file_exists(in + "/" + rel));
    CHECK(read_file(out + "/" + rel) == content);
  }
  std::map<std::string, nlohmann::json> lines = manifest_by_input(outcome);
  CHECK(lines.size() == docs.size());
  CHECK(lines[in + "/sub/doc-1.txt"]["input_action"] ==
        nlohmann::json{{"action", "delete"}, {"outcome", "done"}});
  CHECK_FALSE(lines[in + "/doc-0.txt"].contains("input_action"));
  CHECK(daemon.metric("docpipe_input_actions_total", {{"action", "delete"}, {"outcome", "done"}}) ==
        9);
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e input actions: move keeps relative paths and never clobbers a name in the target") {
  TempDir tmp;
  const std::string base = canonical(tmp.path());
  const std::string in = base + "/in", out = base + "/out", moved = base + "/archive/2026";
  const std::string spool = tmp / "spool";
  std::map<std::string, std::string> docs = write_inputs(in, 6);
  write_file(moved + "/sub/doc-3.txt", "already archived\n");  // a clash
  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.start();
  drop_job(spool, "mv.json", acting_job("mv", in, out, "move:" + moved, ""));
  JobOutcome outcome = daemon.wait_for_job("mv");
  INFO(outcome.report.dump(2));
  CHECK(outcome.report["state"] == "succeeded");
  CHECK(outcome.report["input_actions"]["done"] == 5);
  CHECK(outcome.report["input_actions"]["failed"] == 1);
  const nlohmann::json failure = outcome.report["input_actions"]["failures"][0];
  CHECK(failure["input"] == in + "/sub/doc-3.txt");
  CHECK(failure["error"].get<std::string>().find("exists there; not replaced") !=
        std::string::npos);
  for (const auto& [rel, content] : docs) {
    INFO(rel);
    CHECK(read_file(out + "/" + rel) == content);
    if (rel == "sub/doc-3.txt") {
      CHECK(read_file(in + "/" + rel) == content);
      CHECK(read_file(moved + "/" + rel) == "already archived\n");
    } else {
      CHECK_FALSE(file_exists(in + "/" + rel));
      CHECK(read_file(moved + "/" + rel) == content);
    }
  }
  std::map<std::string, nlohmann::json> lines = manifest_by_input(outcome);
  CHECK(lines[in + "/sub/doc-3.txt"]["input_action"]["outcome"] == "failed");
  CHECK(lines[in + "/doc-2.txt"]["input_action"]["outcome"] == "done");
  CHECK(daemon.metric("docpipe_input_actions_total", {{"action", "move"}, {"outcome", "failed"}}) ==
        1);
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e input actions: after_failure moves a document that failed for good") {
  TempDir tmp;
  const std::string base = canonical(tmp.path());
  const std::string in = base + "/in", out = base + "/out", quarantine = base + "/quarantine";
  const std::string spool = tmp / "spool";
  for (int i = 0; i < 4; ++i) write_file(in + "/ok-" + std::to_string(i) + ".gz", gzip("fine"));
  write_file(in + "/bad/broken.gz", "not gzip at all\n");
  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.start();
  nlohmann::json job = acting_job("quar", in, out, "", "move:" + quarantine);
  job["transforms"] = {{{"op", "gunzip"}}};
  job["limits"] = {{"max_failed_documents", 5}, {"max_attempts", 1}};
  drop_job(spool, "quar.json", job);
  JobOutcome outcome = daemon.wait_for_job("quar");
  INFO(outcome.report.dump(2));
  CHECK(outcome.report["state"] == "succeeded");
  CHECK(outcome.report["counts"]["failed"] == 1);
  CHECK(outcome.report["input_actions"]["done"] == 1);
  CHECK_FALSE(file_exists(in + "/bad/broken.gz"));
  CHECK(read_file(quarantine + "/bad/broken.gz") == "not gzip at all\n");
  for (int i = 0; i < 4; ++i) {  // succeeded, after_success keep
    CHECK(file_exists(in + "/ok-" + std::to_string(i) + ".gz"));
    CHECK(read_file(out + "/ok-" + std::to_string(i) + ".gz") == "fine");
  }
  CHECK_FALSE(file_exists(quarantine + "/ok-0.gz"));
  CHECK(daemon.terminate() == 0);
}

// --- holding the daemon at its first input deletion -------------------------------------------

// The string at `address` in `pid`'s memory (up to the end of its page), or "".
std::string remote_string(pid_t pid, unsigned long address) {
  char buf[4096];
  iovec local{buf, 4096 - (address % 4096)};
  iovec remote{reinterpret_cast<void*>(address), local.iov_len};
  ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (n <= 0) return "";
  return std::string(buf, strnlen(buf, static_cast<size_t>(n)));
}

// The names some thread of `pid` is at the entry of unlinkat(2) for (as strace holds them).
std::set<std::string> held_unlinks(pid_t pid) {
  std::set<std::string> names;
  const std::string proc = "/proc/" + std::to_string(pid);
  DIR* d = ::opendir((proc + "/task").c_str());
  if (d == nullptr) return names;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream syscall(proc + "/task/" + e->d_name + "/syscall");
    long nr = -1;
    std::string dirfd, path;
    if (!(syscall >> nr >> dirfd >> path) || nr != SYS_unlinkat) continue;
    std::string name = remote_string(pid, std::strtoul(path.c_str(), nullptr, 16));
    if (!name.empty()) names.insert(name);
  }
  ::closedir(d);
  return names;
}

// Whether every thread of `pid` is traced.
bool traced(pid_t pid) {
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(tasks.c_str());
  if (d == nullptr) return false;
  bool all = true;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream in(tasks + "/" + e->d_name + "/status");
    const std::string status((std::istreambuf_iterator<char>(in)), {});
    const size_t at = status.find("TracerPid:");
    all = all && at != std::string::npos && std::strtol(status.c_str() + at + 10, nullptr, 10) != 0;
  }
  ::closedir(d);
  return all;
}

// strace on every thread of `pid`, holding each thread's first unlinkat for a minute.
class UnlinkHolder {
 public:
  UnlinkHolder(const std::string& strace, pid_t pid, const std::string& log) {
    pid_ = spawn_process({strace, "-f", "-qq", "-p", std::to_string(pid), "-e", "trace=unlinkat",
                          "-e", "inject=unlinkat:delay_enter=60000000:when=1", "-o", "/dev/null"},
                         log);
  }
  ~UnlinkHolder() {
    if (pid_ < 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  UnlinkHolder(const UnlinkHolder&) = delete;
  UnlinkHolder& operator=(const UnlinkHolder&) = delete;

 private:
  pid_t pid_ = -1;
};

struct HeldRun {
  std::string in, out, spool;
  std::map<std::string, std::string> docs;
  std::string held;  // the input name whose deletion was held when the daemon was killed
};

// Runs a delete job until its first input deletion is held by strace, then kill -9s the daemon
// there. The journal and the files are as the crash left them.
HeldRun run_until_held_unlink(const TempDir& tmp, const std::string& strace, int n,
                              bool all_in_sub = false) {
  HeldRun run;
  const std::string base = canonical(tmp.path());
  run.in = base + "/in";
  run.out = base + "/out";
  run.spool = tmp / "spool";
  run.docs = write_inputs(run.in, n, all_in_sub);
  DaemonProcess daemon(run.spool, {"--workers", "1"});
  daemon.start();
  auto holder = std::make_unique<UnlinkHolder>(strace, daemon.pid(), tmp / "strace.log");
  REQUIRE(poll_until(kStartTimeout, [&] { return traced(daemon.pid()); }));
  drop_job(run.spool, "held.json", acting_job("held", run.in, run.out, "delete", ""));
  std::set<std::string> held;
  REQUIRE(poll_until(kJobTimeout, [&] {
    held = held_unlinks(daemon.pid());
    return !held.empty();
  }));
  REQUIRE(::kill(daemon.pid(), SIGKILL) == 0);
  // The dead daemon is reported to its parent once strace lets go of it.
  holder.reset();
  CHECK(daemon.wait_exit() == 128 + SIGKILL);
  run.held = *held.begin();
  return run;
}

// Input actions in a journal: begun, and finished (done or failed), by input.
struct ActionsSeen {
  std::set<std::string> begun, done, failed;
};
ActionsSeen actions_in(const JournalView& journal) {
  ActionsSeen seen;
  for (const nlohmann::json& r : journal.intents) {
    if (r.value("intent", "") != "input_action") continue;
    const std::string input = r["input"], step = r["step"];
    if (step == "begin") seen.begun.insert(input);
    if (step == "done") CHECK(seen.done.insert(input).second);  // once
    if (step == "failed") seen.failed.insert(input);
  }
  return seen;
}

TEST_CASE("e2e input actions: kill -9 between an output and its input's deletion, then resume") {
  TempDir tmp;
  const std::string strace = usable_strace(tmp);
  if (strace.empty()) return;
  HeldRun run = run_until_held_unlink(tmp, strace, 24);
  const std::string journal = run.spool + "/active/held.journal";
  REQUIRE(file_exists(journal));

  // At the kill: no input is gone whose output is not in place, and the held one is a document
  // whose output is written, whose record and action's begin are journalled, and which is not
  // deleted.
  JournalView view = read_journal(journal);
  ActionsSeen before = actions_in(view);
  const std::set<std::string> recorded = recorded_inputs(view);
  size_t gone = 0;
  for (const auto& [rel, content] : run.docs) {
    INFO(rel);
    if (file_exists(run.in + "/" + rel)) continue;
    ++gone;
    CHECK(read_file(run.out + "/" + rel) == content);
    CHECK(recorded.count(run.in + "/" + rel) == 1);
  }
  std::string held_input;
  for (const auto& [rel, content] : run.docs) {
    if (std::filesystem::path(rel).filename() == run.held) held_input = run.in + "/" + rel;
  }
  REQUIRE_FALSE(held_input.empty());
  CHECK(file_exists(held_input));
  CHECK(before.begun.count(held_input) == 1);
  CHECK(before.done.count(held_input) == 0);
  CHECK(recorded.count(held_input) == 1);
  CHECK(gone == before.done.size());

  // Restarted: the pending deletion is completed, the rest of the job runs, and every input is
  // deleted exactly once (one "done" per input over both runs, counted by this run's metric).
  DaemonProcess again(run.spool, {"--workers", "2"});
  again.start();
  JobOutcome outcome = again.wait_for_job("held");
  INFO(outcome.report.dump(2));
  CHECK(outcome.report["state"] == "succeeded");
  CHECK(outcome.report["input_actions"]["done"] == run.docs.size());
  CHECK(outcome.report["input_actions"]["failed"] == 0);
  for (const auto& [rel, content] : run.docs) {
    INFO(rel);
    CHECK_FALSE(file_exists(run.in + "/" + rel));
    CHECK(read_file(run.out + "/" + rel) == content);
  }
  CHECK(again.metric("docpipe_input_actions_total", {{"action", "delete"}, {"outcome", "done"}}) ==
        static_cast<double>(run.docs.size() - before.done.size()));
  CHECK(
      again.log_lines_with({"input actions begun before a restart completed", "job=held"}).size() ==
      1);
  std::map<std::string, nlohmann::json> lines = manifest_by_input(outcome);
  CHECK(lines.size() == run.docs.size());
  for (const auto& [input, line] : lines) {
    INFO(input);
    CHECK(line["input_action"]["outcome"] == "done");
  }
  CHECK(again.terminate() == 0);
}

TEST_CASE("e2e input actions: a folder swapped for a symlink leading out is not deleted through") {
  TempDir tmp;
  const std::string strace = usable_strace(tmp);
  if (strace.empty()) return;
  HeldRun run = run_until_held_unlink(tmp, strace, 12, /*all_in_sub=*/true);
  // While the daemon is down, in/sub is swapped for a symlink to a folder outside the input
  // folder holding files of the same names: a deletion that followed it would remove those.
  const std::string base = canonical(tmp.path());
  const std::string outside = base + "/outside";
  for (const auto& [rel, content] : run.docs) write_file(outside + "/" + rel, "precious\n");
  std::map<std::string, bool> present;
  for (const auto& [rel, content] : run.docs) present[rel] = file_exists(run.in + "/" + rel);
  // Begun and not finished at the kill: the held deletion, and the rest of its writer's batch.
  ActionsSeen at_kill = actions_in(read_journal(run.spool + "/active/held.journal"));
  const size_t pending = at_kill.begun.size() - at_kill.done.size();
  CHECK(pending >= 1);
  std::filesystem::rename(run.in + "/sub", base + "/sub-real");
  std::filesystem::create_directory_symlink(outside + "/sub", run.in + "/sub");
  // One document the resumed job still finds (a job with none left to match cannot resume).
  write_file(run.in + "/extra.txt", "extra\n");

  DaemonProcess again(run.spool, {"--workers", "2"});
  again.start();
  JobOutcome outcome = again.wait_for_job("held");
  INFO(outcome.report.dump(2));
  for (const auto& [rel, content] : run.docs) {
    INFO(rel);
    CHECK(read_file(outside + "/" + rel) == "precious\n");
    // What was there at the kill is still there, in the real folder.
    const std::string real = base + "/sub-real/" + std::filesystem::path(rel).filename().string();
    CHECK(file_exists(real) == present[rel]);
  }
  // Deleted before the kill (done, from the journal); the held one refused; none after.
  size_t deleted_before = 0;
  for (const auto& [rel, was] : present) deleted_before += was ? 0 : 1;
  CHECK(outcome.report["input_actions"]["done"] == deleted_before + 1);  // + extra.txt
  CHECK_FALSE(file_exists(run.in + "/extra.txt"));
  CHECK(outcome.report["input_actions"]["failed"] == pending);
  bool held_refused = false;
  for (const nlohmann::json& failure : outcome.report["input_actions"]["failures"]) {
    const std::string error = failure["error"];
    CHECK(error.find("is a symlink, refusing to delete from through it") != std::string::npos);
    held_refused = held_refused || error.find(run.held) != std::string::npos;
  }
  CHECK(held_refused);
  CHECK(again.terminate() == 0);
}

// --- rights ------------------------------------------------------------------------------------

CommandResult as_nobody(const std::vector<std::string>& args, const std::string& scratch) {
  std::vector<std::string> argv{"/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                                "--clear-groups", docpipe_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, scratch);
}

TEST_CASE("e2e input actions: nobody cannot have docpipe delete inputs it could not delete") {
  if (::geteuid() != 0) return skip_test("needs root to act as another user (setpriv)");
  TempDir tmp;
  REQUIRE(::chmod(tmp.path().c_str(), 0711) == 0);
  const std::string base = canonical(tmp.path());
  const std::string spool = tmp / "spool";
  // root's folder, readable by all, writable by root only.
  write_inputs(base + "/roots", 2);
  // nobody's own folder, with a sub-folder that is root's.
  write_inputs(base + "/mine", 4);
  REQUIRE(::chown((base + "/mine").c_str(), kNobody, kNobody) == 0);
  for (const std::string& d : {base + "/out-a", base + "/out-b"}) {
    make_dirs(d);
    REQUIRE(::chown(d.c_str(), kNobody, kNobody) == 0);
  }
  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.start();
  REQUIRE(::chmod((spool + "/control.sock").c_str(), 0666) == 0);

  // Refused at validation: nobody may not write to root's folder.
  write_file(base + "/a.json",
             acting_job("nobody-a", base + "/roots", base + "/out-a", "delete", "").dump());
  CommandResult refused = as_nobody({"submit", "--spool", spool, base + "/a.json"}, base);
  INFO(refused.out << refused.err);
  CHECK(refused.exit_code == 1);
  CHECK(refused.err.find("input.dir") != std::string::npos);
  CHECK(refused.err.find("uid 65534") != std::string::npos);
  CHECK(file_exists(base + "/roots/doc-0.txt"));

  // Accepted (its own folder), but the documents in root's sub-folder are kept, each with why.
  write_file(base + "/b.json",
             acting_job("nobody-b", base + "/mine", base + "/out-b", "delete", "").dump());
  CommandResult submitted = as_nobody({"submit", "--spool", spool, base + "/b.json"}, base);
  INFO(submitted.out << submitted.err);
  REQUIRE(submitted.exit_code == 0);
  JobOutcome outcome = daemon.wait_for_job("nobody-b");
  INFO(outcome.report.dump(2));
  CHECK(outcome.report["counts"]["succeeded"] == 4);
  CHECK(outcome.report["input_actions"]["done"] == 2);
  CHECK(outcome.report["input_actions"]["failed"] == 2);
  for (const nlohmann::json& f : outcome.report["input_actions"]["failures"]) {
    CHECK(f["error"].get<std::string>().find("uid 65534") != std::string::npos);
  }
  CHECK_FALSE(file_exists(base + "/mine/doc-0.txt"));
  CHECK_FALSE(file_exists(base + "/mine/doc-2.txt"));
  CHECK(file_exists(base + "/mine/sub/doc-1.txt"));
  CHECK(file_exists(base + "/mine/sub/doc-3.txt"));
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
