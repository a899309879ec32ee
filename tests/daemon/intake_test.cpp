// take_job_file against a real spool in a temp folder: names in incoming/ that are not regular
// files (FIFO, symlink, socket) are recorded once in rejected/ without being opened for reading
// or followed; oversized job files are refused from their size alone; error lists are capped;
// the owner of the job file is reported.

#include "daemon/intake.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

namespace fs = std::filesystem;
using docpipe::DaemonConfig;
using docpipe::IntakeResult;
using docpipe::Spool;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

mode_t lstat_type(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & S_IFMT;
}

// A spool and an input folder in a fresh temp folder.
struct IntakeFixture {
  IntakeFixture() {
    char tmpl[] = "/tmp/docpipe-intake-XXXXXX";
    root = ::mkdtemp(tmpl);
    spool = std::make_unique<Spool>(root + "/spool", /*durable=*/false);
    REQUIRE(spool->create_layout());
    fs::create_directories(root + "/in");
    fs::create_directories(root + "/out");
    spit(root + "/in/a.txt", "alpha\n");
    config = docpipe::default_config(root);
    config.spool_dir = root + "/spool";
  }
  ~IntakeFixture() { fs::remove_all(root); }

  std::string incoming(const std::string& name) const { return spool->incoming() + "/" + name; }
  std::string rejected(const std::string& name) const { return spool->rejected() + "/" + name; }
  nlohmann::json error_file(const std::string& name) const {
    return nlohmann::json::parse(slurp(rejected(name + ".error.json")));
  }
  std::string job_text(const std::string& id) const {
    return nlohmann::json{
        {"id", id}, {"input", {{"dir", root + "/in"}}}, {"output", {{"dir", root + "/out"}}}}
        .dump();
  }

  std::string root;
  std::unique_ptr<Spool> spool;
  DaemonConfig config;
};

// The single reason in a rejected file's error list.
std::string only_reason(const nlohmann::json& error) {
  REQUIRE(error["errors"].size() == 1);
  return error["errors"][0]["reason"].get<std::string>();
}

}  // namespace

TEST_CASE("intake: a FIFO named like a job file is recorded in rejected/ without blocking") {
  IntakeFixture f;
  const std::string fifo = f.incoming("pipe.json");
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  std::promise<void> done;
  std::future<void> returned_future = done.get_future();
  IntakeResult r;
  std::thread taker([&] {
    r = docpipe::take_job_file(*f.spool, "pipe.json", f.config);
    done.set_value();
  });
  // Nobody ever writes to this FIFO: a blocking open would hold the pool thread forever. The
  // test blocks until the call returns, or fails after 2 s.
  bool returned = returned_future.wait_for(std::chrono::seconds(2)) == std::future_status::ready;
  CHECK(returned);
  if (!returned) {
    // Let the stuck open return (a writer arrives and leaves), so the test can end.
    int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (w >= 0) ::close(w);
  }
  taker.join();
  CHECK(r.kind == IntakeResult::Kind::kRejected);
  CHECK_FALSE(fs::exists(fs::symlink_status(fifo)));
  CHECK(lstat_type(f.rejected("pipe.json")) == S_IFIFO);  // the name moved, recorded once
  std::string reason = only_reason(f.error_file("pipe.json"));
  CHECK(reason.find("not a regular file (a FIFO)") != std::string::npos);
}

TEST_CASE("intake: a symlink to a job file outside the spool is not followed nor quoted") {
  IntakeFixture f;
  // A file only its owner should read, whose values must not leak into rejected/.
  const std::string secret = f.root + "/secret.json";
  spit(secret, R"({"id": "x", "input": {"dir": "TOP-SECRET-VALUE"}, "priority": "SECRET-2"})");
  REQUIRE(::symlink(secret.c_str(), f.incoming("link.json").c_str()) == 0);
  IntakeResult r = docpipe::take_job_file(*f.spool, "link.json", f.config);
  CHECK(r.kind == IntakeResult::Kind::kRejected);
  CHECK(lstat_type(f.rejected("link.json")) == S_IFLNK);
  std::string error_text = slurp(f.rejected("link.json.error.json"));
  CHECK(error_text.find("SECRET") == std::string::npos);
  CHECK(error_text.find(secret) == std::string::npos);
  CHECK(only_reason(nlohmann::json::parse(error_text)).find("a symbolic link") !=
        std::string::npos);
  for (const auto& e : r.errors) CHECK(e.reason.find("SECRET") == std::string::npos);
  CHECK(slurp(secret).find("TOP-SECRET-VALUE") != std::string::npos);  // untouched
}

TEST_CASE("intake: a socket named like a job file is recorded in rejected/") {
  IntakeFixture f;
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(s >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = f.incoming("sock.json");
  REQUIRE(path.size() < sizeof addr.sun_path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  IntakeResult r = docpipe::take_job_file(*f.spool, "sock.json", f.config);
  ::close(s);
  CHECK(r.kind == IntakeResult::Kind::kRejected);
  CHECK(lstat_type(f.rejected("sock.json")) == S_IFSOCK);
  CHECK(only_reason(f.error_file("sock.json")).find("a socket") != std::string::npos);
}

TEST_CASE("intake: a device node named like a job file is recorded in rejected/") {
  IntakeFixture f;
  if (::geteuid() != 0) {
    // Only root can create a device node; the other odd names are covered without it.
    if (std::getenv("DOCPIPE_REQUIRE_ALL_TESTS") != nullptr) FAIL("needs root for mknod");
    MESSAGE("skipped: needs root for mknod");
    return;
  }
  // The same device as /dev/null: reading it through the intake would give an empty job.
  REQUIRE(::mknod(f.incoming("dev.json").c_str(), S_IFCHR | 0644, ::makedev(1, 3)) == 0);
  IntakeResult r = docpipe::take_job_file(*f.spool, "dev.json", f.config);
  CHECK(r.kind == IntakeResult::Kind::kRejected);
  CHECK(lstat_type(f.rejected("dev.json")) == S_IFCHR);
  CHECK(only_reason(f.error_file("dev.json")) ==
        "not a regular file (a character device): docpipe reads only regular job files from "
        "incoming/ and never follows links");
}

TEST_CASE("intake: a 4 GiB sparse job file is rejected from its size, within a memory cap") {
  IntakeFixture f;
  const std::string big = f.incoming("huge.json");
  {
    int fd = ::open(big.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, off_t{4} << 30) == 0);  // sparse: costs no disk
    ::close(fd);
  }
  // In a child with its address space capped 256 MiB above what it has: reading the file whole
  // (what an unbounded intake does) fails there, with bad_alloc, instead of taking the machine.
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    long vm_kib = 0;
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmSize:", 0) == 0) vm_kib = std::stol(line.substr(7));
    }
    rlim_t cap = static_cast<rlim_t>(vm_kib) * 1024 + (rlim_t{256} << 20);
    struct rlimit limit {
      cap, cap
    };
    if (::setrlimit(RLIMIT_AS, &limit) != 0) ::_exit(3);
    try {
      IntakeResult r = docpipe::take_job_file(*f.spool, "huge.json", f.config);
      ::_exit(r.kind == IntakeResult::Kind::kRejected ? 0 : 1);
    } catch (...) {
      ::_exit(2);  // std::bad_alloc: the file was being read whole
    }
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  INFO("child status " << status);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(lstat_type(f.rejected("huge.json")) == S_IFREG);
  CHECK(only_reason(f.error_file("huge.json")) ==
        "job file is 4294967296 bytes, more than max_job_file_bytes (1048576)");
}

TEST_CASE("intake: max_job_file_bytes is the largest job file taken") {
  IntakeFixture f;
  std::string text = f.job_text("fits");
  f.config.max_job_file_bytes = static_cast<int64_t>(text.size());
  spit(f.incoming("fits.json"), text);
  IntakeResult fits = docpipe::take_job_file(*f.spool, "fits.json", f.config);
  CHECK(fits.kind == IntakeResult::Kind::kAccepted);

  spit(f.incoming("over.json"), f.job_text("over") + std::string(20, ' '));
  f.config.max_job_file_bytes = static_cast<int64_t>(f.job_text("over").size());
  IntakeResult over = docpipe::take_job_file(*f.spool, "over.json", f.config);
  CHECK(over.kind == IntakeResult::Kind::kRejected);
  CHECK(only_reason(f.error_file("over.json")) ==
        "job file is " + std::to_string(f.job_text("over").size() + 20) +
            " bytes, more than max_job_file_bytes (" + std::to_string(f.job_text("over").size()) +
            ")");
}

TEST_CASE("intake: a job naming 100,000 missing files reports 100 errors and counts the rest") {
  IntakeFixture f;
  nlohmann::json job{{"id", "many"}, {"output", {{"dir", f.root + "/out"}}}};
  nlohmann::json files = nlohmann::json::array();
  for (int i = 0; i < 100000; ++i) files.push_back(f.root + "/none/" + std::to_string(i));
  job["input"] = {{"files", files}};
  std::string text = job.dump();
  f.config.max_job_file_bytes = 16 << 20;
  spit(f.incoming("many.json"), text);
  IntakeResult r = docpipe::take_job_file(*f.spool, "many.json", f.config);
  CHECK(r.kind == IntakeResult::Kind::kRejected);
  CHECK(r.errors.size() == docpipe::kMaxReportedFieldErrors + 1);
  CHECK(fs::file_size(f.rejected("many.json.error.json")) < 64 * 1024);
  nlohmann::json error = f.error_file("many.json");
  REQUIRE(error["errors"].size() == docpipe::kMaxReportedFieldErrors + 1);
  CHECK(error["errors"][0]["path"] == "input.files[0]");
  CHECK(error["errors"][99]["path"] == "input.files[99]");
  CHECK(error["errors"][100]["reason"] == "... and 99900 more errors (not listed)");

  // The same cap for `docpipe validate` and submits, which share validate_job_text.
  docpipe::FieldErrors errors;
  CHECK_FALSE(docpipe::validate_job_text(text, "many", f.root, f.config, errors));
  CHECK(errors.size() == docpipe::kMaxReportedFieldErrors + 1);
}

TEST_CASE("intake: input actions are refused in cluster mode and accepted on one node") {
  IntakeFixture f;
  nlohmann::json job = nlohmann::json::parse(f.job_text("acts"));
  job["input"]["after_success"] = "delete";
  job["input"]["after_failure"] = "move:" + f.root + "/bad";
  docpipe::FieldErrors errors;
  CHECK(docpipe::validate_job_text(job.dump(), "acts", f.root, f.config, errors));
  CHECK(errors.empty());
  f.config.cluster.enabled = true;
  CHECK_FALSE(docpipe::validate_job_text(job.dump(), "acts", f.root, f.config, errors));
  REQUIRE(errors.size() == 2);
  CHECK(errors[0].path == "input.after_success");
  CHECK(errors[1].path == "input.after_failure");
  CHECK(errors[0].reason.starts_with("not available in cluster mode"));
  // Keeping inputs stays fine in a cluster.
  errors.clear();
  CHECK(docpipe::validate_job_text(f.job_text("keeps"), "keeps", f.root, f.config, errors));
  CHECK(errors.empty());
}

TEST_CASE("intake: the field error cap keeps short lists whole") {
  docpipe::FieldErrors errors(101, {"p", "r"});
  docpipe::cap_field_errors(errors);
  CHECK(errors.size() == 101);  // 100 + "1 more" would say nothing shorter
  errors.assign(102, {"p", "r"});
  docpipe::cap_field_errors(errors);
  REQUIRE(errors.size() == 101);
  CHECK(errors.back().reason == "... and 2 more errors (not listed)");
}

TEST_CASE("intake: the job file's owner is reported from the descriptor it was read through") {
  IntakeFixture f;
  spit(f.incoming("owned.json"), f.job_text("owned"));
  uid_t uid = ::geteuid();
  gid_t gid = ::getegid();
  if (uid == 0) {
    // As root, give the file to nobody: the owner must come from the file, not from us. The job
    // acts for nobody, so nobody must be able to read its input and write its output.
    REQUIRE(::chown(f.incoming("owned.json").c_str(), 65534, 65534) == 0);
    REQUIRE(::chmod(f.root.c_str(), 0755) == 0);
    REQUIRE(::chmod((f.root + "/out").c_str(), 0777) == 0);
    uid = gid = 65534;
  }
  IntakeResult r = docpipe::take_job_file(*f.spool, "owned.json", f.config);
  REQUIRE(r.kind == IntakeResult::Kind::kAccepted);
  CHECK(r.owner_uid == uid);
  CHECK(r.owner_gid == gid);
}

TEST_CASE("intake: a dropped job whose owner may not read its input is rejected, naming why") {
  if (::geteuid() != 0) {
    if (const char* all = std::getenv("DOCPIPE_REQUIRE_ALL_TESTS"); all != nullptr && *all) {
      FAIL("needs root to give the job file to another user and DOCPIPE_REQUIRE_ALL_TESTS is set");
    }
    MESSAGE("skipped: needs root to give the job file to another user");
    return;
  }
  IntakeFixture f;
  // The daemon (root) could read in/ and write out/; the job file's owner, nobody, may not
  // search the private folder holding them: the job must not act with the daemon's rights.
  REQUIRE(::chmod(f.root.c_str(), 0700) == 0);
  spit(f.incoming("foreign.json"), f.job_text("foreign"));
  REQUIRE(::chown(f.incoming("foreign.json").c_str(), 65534, 65534) == 0);
  IntakeResult r = docpipe::take_job_file(*f.spool, "foreign.json", f.config);
  REQUIRE(r.kind == IntakeResult::Kind::kRejected);
  REQUIRE_FALSE(r.errors.empty());
  CHECK(r.errors[0].reason.find("the submitter (uid 65534) may not search this folder") !=
        std::string::npos);
  CHECK(fs::exists(f.rejected("foreign.json.error.json")));
}

TEST_CASE("intake: read_job_file for the CLI refuses a large file by size and bounds a pipe") {
  IntakeFixture f;
  const std::string big = f.root + "/big.json";
  {
    int fd = ::open(big.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, off_t{1} << 40) == 0);  // 1 TiB, sparse
    ::close(fd);
  }
  auto refused = docpipe::read_job_file(big, 1048576);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == docpipe::ErrorCode::kTooLarge);
  CHECK(refused.error().message ==
        "job file is 1099511627776 bytes, more than max_job_file_bytes (1048576)");
  CHECK_FALSE(docpipe::check_job_file_size(big, 1048576));
  CHECK(docpipe::check_job_file_size(big, int64_t{1} << 40));

  // /dev/zero never ends: only the bound stops the read.
  auto endless = docpipe::read_job_file("/dev/zero", 4096);
  REQUIRE_FALSE(endless);
  CHECK(endless.error().message == "job file is larger than max_job_file_bytes (4096)");

  spit(f.root + "/small.json", "{}");
  auto small = docpipe::read_job_file(f.root + "/small.json", 2);
  REQUIRE(small);
  CHECK(*small == "{}");
}
