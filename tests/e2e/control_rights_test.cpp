// Who may do what on the control socket (issue 9, items 3, 4 and 8): every job records its
// submitter (the socket peer, or the owner of a dropped file) and keeps it across a restart;
// status, list and cancel show and touch only the caller's own jobs unless it is root or in
// admin_group; hostile requests (deep nesting, a client that never reads, idle or too many
// connections) cost the daemon a bounded amount. Unprivileged callers are real: the CLI runs
// under setpriv as uid 65534 (nobody) and as uid 65533 (no user database entry).

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "tests/e2e/control_client.h"
#include "tests/e2e/harness.h"

namespace e2e {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
// Sanitizers reserve terabytes of address space and keep freed memory in quarantine: no cap on
// the address space, and RSS says nothing about the daemon's own memory there.
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

constexpr uid_t kNobody = 65534;
constexpr uid_t kOther = 65533;      // a second unprivileged user (no passwd entry needed)
constexpr gid_t kAdminGroup = 4242;  // admin_group in the tests' config

bool running_as_root() { return ::geteuid() == 0; }

// `docpipe ARGS...` as uid:gid with exactly `groups` as supplementary groups.
CommandResult docpipe_as(uid_t uid, gid_t gid, const std::vector<gid_t>& groups,
                         const std::vector<std::string>& args, const std::string& scratch) {
  std::vector<std::string> argv{"/usr/bin/setpriv", "--reuid=" + std::to_string(uid),
                                "--regid=" + std::to_string(gid)};
  if (groups.empty()) {
    argv.push_back("--clear-groups");
  } else {
    std::string list;
    for (gid_t g : groups) list += (list.empty() ? "" : ",") + std::to_string(g);
    argv.push_back("--groups=" + list);
  }
  argv.push_back(docpipe_binary());
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, scratch);
}

CommandResult nobody(const std::vector<std::string>& args, const std::string& scratch) {
  return docpipe_as(kNobody, kNobody, {}, args, scratch);
}

void write_documents(const std::string& dir, int n) {
  for (int i = 0; i < n; ++i) write_file(dir + "/doc-" + std::to_string(i) + ".txt", "text\n");
}

// The test's folders as an unprivileged user needs them: the temp folder traversable, inputs
// readable (umask 022 makes them so), each user's output folder its own.
void share_with_users(const TempDir& tmp) { REQUIRE(::chmod(tmp.path().c_str(), 0711) == 0); }

std::string output_dir_for(const TempDir& tmp, const std::string& name, uid_t uid) {
  std::string dir = tmp / name;
  make_dirs(dir);
  REQUIRE(::chown(dir.c_str(), uid, uid) == 0);
  return dir;
}

// The socket is 0660 for the daemon's group; the tests' callers are in no such group, so the
// test opens it (who may connect is the deployment's choice; what a caller may see is not).
void open_socket_to_all(const std::string& spool) {
  REQUIRE(::chmod((spool + "/control.sock").c_str(), 0666) == 0);
}

nlohmann::json slow_job(const std::string& id, const std::string& in, const std::string& out,
                        int ms) {
  return make_job(id, in, out, {{{"op", "test.sleep"}, {"ms", ms}}});
}

// A job file the given user can read, for `docpipe submit`.
std::string job_file(const TempDir& tmp, const std::string& id, const nlohmann::json& job) {
  std::string path = tmp / (id + ".json");
  write_file(path, job.dump(2));
  return path;
}

std::set<std::string> listed_ids(const CommandResult& r) {
  std::set<std::string> ids;
  nlohmann::json reply = nlohmann::json::parse(r.out);
  for (const auto& j : reply["jobs"]) ids.insert(j["id"].get<std::string>());
  return ids;
}

std::optional<nlohmann::json> status_json(const CommandResult& r) {
  if (r.exit_code != 0) return std::nullopt;
  return nlohmann::json::parse(r.out)["job"];
}

uint64_t status_field_kib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1));
  }
  throw std::runtime_error("no " + field + " in /proc/" + std::to_string(pid) + "/status");
}

TEST_CASE("e2e rights: a non-admin sees and cancels only its own jobs - root and admins all") {
  if (!running_as_root()) return skip_test("needs root to act as other users (setpriv)");
  TempDir tmp;
  share_with_users(tmp);
  const std::string spool = tmp / "spool";
  write_documents(tmp / "in", 100);
  write_file(tmp / "config.json",
             nlohmann::json{{"admin_group", std::to_string(kAdminGroup)}}.dump());
  DaemonProcess daemon(spool, {"--config", tmp / "config.json", "--workers", "1"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  open_socket_to_all(spool);
  const std::string scratch = tmp.path();

  // Root's job, running for a while.
  std::string root_file =
      job_file(tmp, "rootjob", slow_job("rootjob", tmp / "in", tmp / "out-root", 1000));
  REQUIRE(docpipe({"submit", "--spool", spool, root_file}, scratch).exit_code == 0);

  // nobody: root's job does not exist for it, worded exactly as a job that never existed.
  CommandResult seen = nobody({"status", "--spool", spool, "rootjob"}, scratch);
  CommandResult never = nobody({"status", "--spool", spool, "neverwas"}, scratch);
  INFO("status rootjob: " << seen.err << "\nstatus neverwas: " << never.err);
  CHECK(seen.exit_code == 1);
  CHECK(seen.err == "docpipe status: no job \"rootjob\": not queued, running or finished\n");
  CHECK(never.err == "docpipe status: no job \"neverwas\": not queued, running or finished\n");
  CommandResult cancel = nobody({"cancel", "--spool", spool, "rootjob"}, scratch);
  CHECK(cancel.exit_code == 1);
  CHECK(cancel.err == "docpipe cancel: no job \"rootjob\" is queued or running\n");
  CHECK(listed_ids(nobody({"status", "--spool", spool, "--json"}, scratch)).empty());

  // nobody's own job: submitted through the socket, seen, listed and cancelled by nobody.
  std::string own_out = output_dir_for(tmp, "out-nobody", kNobody);
  std::string own_file = job_file(tmp, "ownjob", slow_job("ownjob", tmp / "in", own_out, 1000));
  CommandResult submitted = nobody({"submit", "--spool", spool, own_file}, scratch);
  INFO("submit as nobody: " << submitted.out << submitted.err);
  REQUIRE(submitted.exit_code == 0);
  std::optional<nlohmann::json> own =
      status_json(nobody({"status", "--spool", spool, "--json", "ownjob"}, scratch));
  REQUIRE(own.has_value());
  CHECK((*own)["submitter_uid"] == kNobody);
  CHECK(listed_ids(nobody({"status", "--spool", spool, "--json"}, scratch)) ==
        std::set<std::string>{"ownjob"});
  // Another unprivileged user sees neither job.
  CHECK(docpipe_as(kOther, kOther, {}, {"status", "--spool", spool, "ownjob"}, scratch).exit_code ==
        1);
  CHECK(nobody({"cancel", "--spool", spool, "ownjob"}, scratch).exit_code == 0);
  daemon.wait_for_job("ownjob");
  // Finished: still its submitter's (the record moved with the job), still nobody else's.
  // (The daemon forgets the running job a moment after its files reach failed/.)
  std::optional<nlohmann::json> finished;
  CHECK(poll_until(kStartTimeout, [&] {
    finished = status_json(nobody({"status", "--spool", spool, "--json", "ownjob"}, scratch));
    return finished && (*finished)["state"] == "cancelled";
  }));
  REQUIRE(finished.has_value());
  CHECK((*finished)["submitter_uid"] == kNobody);
  CHECK(docpipe_as(kOther, kOther, {}, {"status", "--spool", spool, "ownjob"}, scratch).exit_code ==
        1);

  // A member of admin_group (as a supplementary group) and root see everything.
  CommandResult admin_list =
      docpipe_as(kOther, kOther, {kAdminGroup}, {"status", "--spool", spool, "--json"}, scratch);
  CHECK(listed_ids(admin_list) == std::set<std::string>{"rootjob"});
  CHECK(docpipe_as(kOther, kOther, {kAdminGroup}, {"status", "--spool", spool, "ownjob"}, scratch)
            .exit_code == 0);
  CHECK(docpipe({"status", "--spool", spool, "ownjob"}, scratch).exit_code == 0);
  CommandResult admin_cancel =
      docpipe_as(kOther, kOther, {kAdminGroup}, {"cancel", "--spool", spool, "rootjob"}, scratch);
  INFO("admin cancel: " << admin_cancel.out << admin_cancel.err);
  CHECK(admin_cancel.exit_code == 0);
  CHECK(daemon.wait_for_job("rootjob").report["state"] == "cancelled");
}

TEST_CASE("e2e rights: the submitter of a socket submit and of a dropped file survives a restart") {
  if (!running_as_root()) return skip_test("needs root to act as other users (setpriv, chown)");
  TempDir tmp;
  share_with_users(tmp);
  const std::string spool = tmp / "spool";
  write_documents(tmp / "in", 30);
  std::string out = output_dir_for(tmp, "out", kNobody);
  const std::string scratch = tmp.path();
  auto daemon = std::make_unique<DaemonProcess>(spool, std::vector<std::string>{"--workers", "1"});
  daemon->set_binary(DOCPIPE_TEST_BINARY);
  daemon->start();
  open_socket_to_all(spool);

  // Through the socket, as nobody.
  std::string sock_file = job_file(tmp, "sock", slow_job("sock", tmp / "in", out + "/s", 500));
  REQUIRE(nobody({"submit", "--spool", spool, sock_file}, scratch).exit_code == 0);
  // Dropped into incoming/ by nobody: the file is nobody's (renamed into place by root, which
  // keeps the owner, as a producer's own rename would).
  std::string drop_tmp = tmp / "drop.json";
  write_file(drop_tmp, slow_job("drop", tmp / "in", out + "/d", 500).dump());
  REQUIRE(::chown(drop_tmp.c_str(), kNobody, kNobody) == 0);
  REQUIRE(::rename(drop_tmp.c_str(), (spool + "/incoming/drop.json").c_str()) == 0);
  // And root's own drop, for contrast.
  drop_job(spool, "rootdrop.json", slow_job("rootdrop", tmp / "in", tmp / "out-root", 500));

  auto submitter_of = [&](const std::string& id) -> std::optional<nlohmann::json> {
    std::optional<nlohmann::json> job =
        status_json(docpipe({"status", "--spool", spool, "--json", id}, scratch));
    if (!job) return std::nullopt;
    return (*job)["submitter_uid"];
  };
  REQUIRE(poll_until(kStartTimeout, [&] {
    return submitter_of("drop").has_value() && submitter_of("rootdrop").has_value();
  }));
  CHECK(submitter_of("sock") == nlohmann::json(kNobody));
  CHECK(submitter_of("drop") == nlohmann::json(kNobody));
  CHECK(submitter_of("rootdrop") == nlohmann::json(0));

  // kill -9 and a new daemon on the same spool: the jobs resume, for the same submitters.
  REQUIRE(::kill(daemon->pid(), SIGKILL) == 0);
  daemon->wait_exit();
  // The socket job cannot be opened at first (a folder stands where its journal goes), so it is
  // reopened later by the retry path, which must restore its submitter as the start-up path does.
  const std::string journal = spool + "/active/sock.journal";
  std::filesystem::remove(journal);
  REQUIRE(::mkdir(journal.c_str(), 0700) == 0);
  daemon = std::make_unique<DaemonProcess>(spool, std::vector<std::string>{"--workers", "1"});
  daemon->set_binary(DOCPIPE_TEST_BINARY);
  daemon->start();
  open_socket_to_all(spool);
  REQUIRE(!daemon->wait_for_log_lines({"cannot resume job; retrying", "job=sock"}, kStartTimeout)
               .empty());
  REQUIRE(::rmdir(journal.c_str()) == 0);
  for (const char* id : {"sock", "drop", "rootdrop"}) {
    CAPTURE(id);
    REQUIRE(!daemon->wait_for_log_lines({"job resumed", std::string("job=") + id}, kStartTimeout)
                 .empty());
  }
  CHECK(submitter_of("sock") == nlohmann::json(kNobody));
  CHECK(submitter_of("drop") == nlohmann::json(kNobody));
  CHECK(submitter_of("rootdrop") == nlohmann::json(0));
  CHECK(nobody({"status", "--spool", spool, "drop"}, scratch).exit_code == 0);
  CHECK(nobody({"status", "--spool", spool, "rootdrop"}, scratch).exit_code == 1);
  CHECK(docpipe_as(kOther, kOther, {}, {"status", "--spool", spool, "sock"}, scratch).exit_code ==
        1);
  // Nobody else could have planted or swapped the records: the daemon keeps active/ private.
  struct stat sb;
  for (const char* dir : {"/active", "/submitters"}) {
    CAPTURE(dir);
    REQUIRE(::stat((spool + dir).c_str(), &sb) == 0);
    CHECK((sb.st_mode & 077) == 0);
  }
}

TEST_CASE(
    "e2e rights: a submit nested 60,000 deep is refused before parsing - the daemon stays small") {
  TempDir tmp;
  const std::string spool = tmp / "spool";
  // The unfixed daemon printed this request with indentation: gigabytes. Under a cap on its
  // address space it dies instead of taking the machine's memory.
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_AS, &old) == 0);
  rlimit capped = old;
  if (!kSanitized) capped.rlim_cur = std::min<rlim_t>(old.rlim_max, rlim_t{4} << 30);
  REQUIRE(::setrlimit(RLIMIT_AS, &capped) == 0);
  DaemonProcess daemon(spool, {});
  try {
    daemon.start();
  } catch (...) {
    ::setrlimit(RLIMIT_AS, &old);
    throw;
  }
  REQUIRE(::setrlimit(RLIMIT_AS, &old) == 0);

  const size_t depth = 60000;
  std::string nested = std::string(depth, '[') + std::string(depth, ']');
  {
    ControlClient control(spool + "/control.sock");
    REQUIRE(control.send("{\"op\":\"submit\",\"job\":{\"input\":{\"dir\":" + nested + "}}}\n"));
    std::optional<nlohmann::json> r = control.reply(milliseconds(30000));
    REQUIRE(r.has_value());
    INFO("reply: " << r->dump());
    CHECK((*r)["ok"] == false);
    CHECK((*r)["error"] == "request refused: nested deeper than 64 levels");
    // The connection and the daemon go on.
    CHECK(control.request({{"op", "status"}})["ok"] == true);
  }
  // The same job as a file in incoming/ is rejected with the same cause.
  write_file(tmp / "deep.json", "{\"input\":{\"dir\":" + nested + "}}");
  REQUIRE(::rename((tmp / "deep.json").c_str(), (spool + "/incoming/deep.json").c_str()) == 0);
  nlohmann::json rejection = daemon.wait_for_rejection("deep.json");
  CHECK(rejection.dump().find("nested deeper than 64 levels") != std::string::npos);
  daemon.expect_running();
  uint64_t peak_kib = status_field_kib(daemon.pid(), "VmHWM");
  INFO("peak RSS: " << peak_kib << " KiB");
  if (!kSanitized) CHECK(peak_kib < 200 * 1024);
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e rights: a client that never reads its replies cannot grow the daemon's memory") {
  TempDir tmp;
  const std::string spool = tmp / "spool";
  DaemonProcess daemon(spool, {});
  daemon.start();
  const std::string socket = spool + "/control.sock";
  uint64_t rss_before = status_field_kib(daemon.pid(), "VmRSS");

  // Status requests as fast as the daemon takes them, for 3 s, never reading a reply: unfixed,
  // the daemon read them all and queued ~0.5 KiB of reply per 16-byte request.
  ControlClient hog(socket);
  std::string batch;
  for (int i = 0; i < 4096; ++i) batch += "{\"op\":\"status\"}\n";
  size_t sent = 0;
  Clock::time_point until = Clock::now() + milliseconds(3000);
  while (Clock::now() < until) {
    ssize_t n = ::send(hog.fd(), batch.data(), batch.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      break;  // the daemon hung up on it: also a bound
    } else {
      pollfd p{hog.fd(), POLLOUT, 0};
      ::poll(&p, 1, 50);
    }
  }
  // Meanwhile, and after, other clients are served.
  ControlClient other(socket);
  CHECK(other.request({{"op", "status"}})["ok"] == true);
  uint64_t rss_after = status_field_kib(daemon.pid(), "VmRSS");
  INFO("sent " << sent << " bytes of requests; RSS " << rss_before << " -> " << rss_after
               << " KiB");
  if (!kSanitized)
    CHECK(rss_after < rss_before + 24 * 1024);  // unfixed: +68 MiB in these 3 s, and growing
  daemon.expect_running();
}

TEST_CASE("e2e rights: control connections are capped and idle ones closed - --wait outlives it") {
  TempDir tmp;
  const std::string spool = tmp / "spool";
  write_documents(tmp / "in", 3);
  write_file(tmp / "config.json",
             R"({"max_control_connections": 3, "control_idle_timeout_ms": 400})");
  DaemonProcess daemon(spool, {"--config", tmp / "config.json", "--workers", "1"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  const std::string socket = spool + "/control.sock";

  Clock::time_point opened = Clock::now();
  std::vector<std::unique_ptr<ControlClient>> idle;
  for (int i = 0; i < 3; ++i) idle.push_back(std::make_unique<ControlClient>(socket));
  // The daemon takes connections in order: make sure all three are its own before the fourth.
  CHECK(idle.back()->request({{"op", "status"}})["ok"] == true);
  {
    ControlClient extra(socket);
    std::optional<nlohmann::json> r = extra.reply();
    REQUIRE(r.has_value());
    INFO("reply: " << r->dump());
    CHECK((*r)["ok"] == false);
    CHECK((*r)["error"].get<std::string>().find("too many control connections") !=
          std::string::npos);
    CHECK_FALSE(extra.reply().has_value());  // and closed
  }
  // Idle ones are closed after the timeout (not before), which frees the slots.
  for (auto& c : idle) CHECK_FALSE(c->reply(milliseconds(5000)).has_value());
  long waited =
      static_cast<long>(std::chrono::duration_cast<milliseconds>(Clock::now() - opened).count());
  CHECK(waited >= 350);  // the loop's clock is coarse (a few ms)
  idle.clear();
  ControlClient fresh(socket);
  nlohmann::json fresh_reply = fresh.request({{"op", "status"}});
  INFO("fresh: " << fresh_reply.dump());
  CHECK(fresh_reply["ok"] == true);

  // A job that runs 3 x 600 ms, several idle timeouts: --wait polls with fresh requests.
  write_file(tmp / "long.json", slow_job("long", tmp / "in", tmp / "out", 600).dump());
  CommandResult r = docpipe({"submit", "--spool", spool, "--wait", tmp / "long.json"}, tmp.path());
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  CHECK(lines_of(r.out).back().rfind("long: succeeded, 3 succeeded", 0) == 0);
}

// Pausing intake stops every user's jobs: only root, the daemon's own user and admin_group.
TEST_CASE("e2e rights: only root or admin_group pauses and resumes intake") {
  if (!running_as_root()) return skip_test("needs root to act as other users (setpriv)");
  TempDir tmp;
  share_with_users(tmp);
  const std::string spool = tmp / "spool";
  write_file(tmp / "config.json",
             nlohmann::json{{"admin_group", std::to_string(kAdminGroup)}}.dump());
  DaemonProcess daemon(spool, {"--config", tmp / "config.json", "--workers", "1"});
  daemon.start();
  open_socket_to_all(spool);
  const std::string scratch = tmp.path();
  const std::string refused =
      " is for the daemon's operators: root, the daemon's own user, or a member of the "
      "config's admin_group\n";

  CommandResult pause = nobody({"pause", "--spool", spool}, scratch);
  CHECK(pause.exit_code == 1);
  CHECK(pause.err == "docpipe pause: pausing intake" + refused);
  CHECK(daemon_status(spool, scratch)["daemon"]["intake"]["state"] == "open");
  CHECK_FALSE(file_exists(spool + "/paused.json"));

  CommandResult admin = docpipe_as(kOther, kOther, {kAdminGroup},
                                   {"pause", "--spool", spool, "--reason", "admin"}, scratch);
  INFO(admin.err);
  CHECK(admin.exit_code == 0);
  nlohmann::json intake = daemon_status(spool, scratch)["daemon"]["intake"];
  CHECK(intake["state"] == "paused");
  CHECK(intake["by_uid"] == kOther);

  CommandResult resume = nobody({"resume", "--spool", spool}, scratch);
  CHECK(resume.exit_code == 1);
  CHECK(resume.err == "docpipe resume: resuming intake" + refused);
  CHECK(daemon_status(spool, scratch)["daemon"]["intake"]["state"] == "paused");
  CHECK(docpipe({"resume", "--spool", spool}, scratch).exit_code == 0);
  CHECK(daemon_status(spool, scratch)["daemon"]["intake"]["state"] == "open");
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
