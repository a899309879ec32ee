// Document faults on the real daemon (issue 3): transient failures are retried with backoff up to
// limits.max_attempts, permanent ones are not; document_timeout_ms counts processing time, not
// queue waits; a full file system fails the document with ENOSPC and leaves the daemon serving.
// The fault-injection transforms (test.fail, test.sleep) exist only in DOCPIPE_TEST_BINARY.

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "tests/e2e/crash_support.h"
#include "tests/e2e/harness.h"

namespace e2e {
namespace {

// Every file below `root` whose name starts with '.' (docpipe's temp files all do).
nlohmann::json limited_job(const std::string& id, const std::string& in, const std::string& out,
                           nlohmann::json transforms, nlohmann::json limits) {
  nlohmann::json job = make_job(id, in, out, std::move(transforms));
  job["limits"] = std::move(limits);
  return job;
}

double retries(const DaemonProcess& daemon) {
  return daemon.metric("docpipe_document_retries_total").value_or(-1);
}

TEST_CASE("e2e faults: transient failures are retried up to max_attempts, permanent ones never") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool";
  // test.fail counts attempts per relative path in the daemon: each job gets its own names.
  for (int i = 0; i < 5; ++i) {
    write_file(tmp / "recover/a-" + std::to_string(i) + ".txt", "alpha " + std::to_string(i));
  }
  write_file(tmp / "exhaust/b-0.txt", "bravo");
  write_file(tmp / "broken/c-0.txt", "charlie");

  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  CHECK(retries(daemon) == 0);

  {
    // Two transient failures with max_attempts 3: each document succeeds on its third attempt.
    drop_job(spool, "recover.json",
             limited_job("recover", tmp / "recover", tmp / "out-recover",
                         {{{"op", "test.fail"}, {"transient", 2}}}, {{"max_attempts", 3}}));
    JobOutcome outcome = daemon.wait_for_job("recover");
    INFO("report: " << outcome.report.dump(2));
    CHECK(outcome.folder == "done");
    CHECK(outcome.report["state"] == "succeeded");
    CHECK(outcome.report["counts"]["succeeded"] == 5);
    CHECK(outcome.report["counts"]["failed"] == 0);
    // Backoff: 100 ms then 200 ms (each jittered by x0.5 to x1.5) before the third attempt.
    CHECK(outcome.report["duration_seconds"].get<double>() >= 0.15);
    std::vector<nlohmann::json> manifest = read_json_lines(outcome.manifest_path);
    REQUIRE(manifest.size() == 5);
    for (nlohmann::json& line : manifest) {
      INFO(line.dump());
      CHECK(line["state"] == "succeeded");
      CHECK(line["attempts"] == 3);
      CHECK(line["error"] == "");
      std::string input = line["input"];
      CHECK(read_file(line["output"].get<std::string>()) == read_file(input));
    }
    CHECK(daemon.wait_for_metric("docpipe_document_retries_total", {}, 10) == 10);
    CHECK(daemon.metric("docpipe_documents_total", {{"outcome", "succeeded"}}) == 5);
  }

  {
    // As many transient failures as max_attempts: the document fails with the last error.
    drop_job(spool, "exhaust.json",
             limited_job("exhaust", tmp / "exhaust", tmp / "out-exhaust",
                         {{{"op", "test.fail"}, {"transient", 3}}}, {{"max_attempts", 3}}));
    JobOutcome outcome = daemon.wait_for_job("exhaust");
    nlohmann::json report = outcome.report;
    INFO("report: " << report.dump(2));
    const std::string input = tmp / "exhaust/b-0.txt";
    const std::string error =
        input + ": test.fail: transient failure 3 of b-0.txt: Resource temporarily unavailable";
    CHECK(outcome.folder == "failed");
    CHECK(report["state"] == "failed");
    CHECK(report["counts"]["failed"] == 1);
    REQUIRE(report["failed_documents"].size() == 1);
    CHECK(report["failed_documents"][0]["input"] == input);
    CHECK(report["failed_documents"][0]["error"] == error);
    std::vector<nlohmann::json> manifest = read_json_lines(outcome.manifest_path);
    REQUIRE(manifest.size() == 1);
    CHECK(manifest[0]["state"] == "failed");
    CHECK(manifest[0]["attempts"] == 3);
    CHECK(manifest[0]["error"] == error);
    CHECK_FALSE(file_exists(tmp / "out-exhaust/b-0.txt"));
    CHECK(dot_files_under(tmp / "out-exhaust").empty());
    CHECK(daemon.wait_for_metric("docpipe_document_retries_total", {}, 12) == 12);
    CHECK(daemon.metric("docpipe_documents_total", {{"outcome", "failed"}}) == 1);
  }

  {
    // A permanent failure is not retried.
    drop_job(spool, "broken.json",
             limited_job("broken", tmp / "broken", tmp / "out-broken",
                         {{{"op", "test.fail"}, {"permanent", 1}}}, {{"max_attempts", 5}}));
    JobOutcome outcome = daemon.wait_for_job("broken");
    INFO("report: " << outcome.report.dump(2));
    CHECK(outcome.folder == "failed");
    std::vector<nlohmann::json> manifest = read_json_lines(outcome.manifest_path);
    REQUIRE(manifest.size() == 1);
    CHECK(manifest[0]["attempts"] == 1);
    CHECK(manifest[0]["error"] == tmp / "broken/c-0.txt: test.fail: permanent failure of c-0.txt");
    CHECK(retries(daemon) == 12);
    CHECK(daemon.metric("docpipe_documents_total", {{"outcome", "failed"}}) == 2);
  }

  daemon.expect_running();
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e faults: document_timeout_ms fails a slow document but not a long queue wait") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool";
  constexpr int kQueued = 6;
  for (int i = 0; i < kQueued; ++i) {
    write_file(tmp / "queued/q-" + std::to_string(i) + ".txt", "queued " + std::to_string(i));
  }
  write_file(tmp / "slow/slow.txt", "slow");

  // One transformer: the documents of the first job wait their turn, up to 1.5 s, far longer
  // than the 1 s timeout, while each takes only 300 ms of processing.
  DaemonProcess daemon(spool, {"--workers", "1"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  drop_job(spool, "queued.json",
           limited_job("queued", tmp / "queued", tmp / "out-queued",
                       {{{"op", "test.sleep"}, {"ms", 300}}},
                       {{"document_timeout_ms", 1000}, {"max_attempts", 1}}));
  JobOutcome queued = daemon.wait_for_job("queued");
  INFO("report: " << queued.report.dump(2));
  CHECK(queued.folder == "done");
  CHECK(queued.report["state"] == "succeeded");
  CHECK(queued.report["counts"]["succeeded"] == kQueued);
  CHECK(queued.report["duration_seconds"].get<double>() >= kQueued * 0.3);
  CHECK(list_files(tmp / "out-queued").size() == kQueued);

  // 3 s of work against a 500 ms timeout: cancelled at the timeout, failed, no output.
  drop_job(
      spool, "slow.json",
      limited_job("slow", tmp / "slow", tmp / "out-slow", {{{"op", "test.sleep"}, {"ms", 3000}}},
                  {{"document_timeout_ms", 500}, {"max_attempts", 3}}));
  JobOutcome slow = daemon.wait_for_job("slow");
  nlohmann::json report = slow.report;
  INFO("report: " << report.dump(2));
  const std::string error = tmp / "slow/slow.txt: timed out after 500 ms (document_timeout_ms)";
  CHECK(slow.folder == "failed");
  CHECK(report["state"] == "failed");
  CHECK(report["counts"]["failed"] == 1);
  REQUIRE(report["failed_documents"].size() == 1);
  CHECK(report["failed_documents"][0]["error"] == error);
  std::vector<nlohmann::json> manifest = read_json_lines(slow.manifest_path);
  REQUIRE(manifest.size() == 1);
  CHECK(manifest[0]["error"] == error);
  CHECK(manifest[0]["attempts"] == 1);  // a timeout is not retried
  CHECK(manifest[0]["duration_seconds"].get<double>() >= 0.5);
  CHECK(manifest[0]["duration_seconds"].get<double>() < 2.0);  // stopped, not run to the end
  CHECK_FALSE(file_exists(tmp / "out-slow/slow.txt"));
  CHECK(dot_files_under(tmp / "out-slow").empty());
  CHECK(daemon.metric("docpipe_documents_total", {{"outcome", "failed"}}) == 1);
  CHECK(daemon.terminate() == 0);
}

// A small tmpfs mounted for the test and lazily unmounted at the end.
class SmallTmpfs {
 public:
  SmallTmpfs(std::string path, const char* size) : path_(std::move(path)) {
    make_dirs(path_);
    std::string options = std::string("size=") + size + ",mode=0755";
    if (::mount("tmpfs", path_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
      error_ = std::strerror(errno);
    }
  }
  ~SmallTmpfs() {
    if (error_.empty()) ::umount2(path_.c_str(), MNT_DETACH);
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;

  bool mounted() const { return error_.empty(); }
  const std::string& error() const { return error_; }

 private:
  std::string path_;
  std::string error_;
};

TEST_CASE("e2e faults: a full file system fails the document with ENOSPC and the daemon lives") {
  if (::geteuid() != 0) {
    return skip_test("mounting a small tmpfs needs root, and this runs as uid " +
                     std::to_string(::geteuid()));
  }
  TempDir tmp;
  const std::string spool = tmp / "spool", full = tmp / "full";
  SmallTmpfs fs(full, "1m");
  if (!fs.mounted()) return skip_test("cannot mount a tmpfs on " + full + ": " + fs.error());
  // 2 MiB never fits in 1 MiB; the small one does once the big one's temp file is gone.
  write_file(tmp / "big/big.bin", std::string(2u << 20, 'B'));
  write_file(tmp / "small/small.txt", "fits\n");

  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.start();
  drop_job(spool, "big.json",
           limited_job("big", tmp / "big", full + "/big", nlohmann::json::array(),
                       {{"max_attempts", 2}}));
  JobOutcome big = daemon.wait_for_job("big");
  nlohmann::json report = big.report;
  INFO("report: " << report.dump(2) << "\nlog:\n" << daemon.log());
  CHECK(big.folder == "failed");
  CHECK(report["state"] == "failed");
  REQUIRE(report["failed_documents"].size() == 1);
  std::string error = report["failed_documents"][0]["error"];
  CHECK(error.find("No space left on device") != std::string::npos);
  CHECK(error.find(full + "/big/big.bin") != std::string::npos);
  std::vector<nlohmann::json> manifest = read_json_lines(big.manifest_path);
  REQUIRE(manifest.size() == 1);
  CHECK(manifest[0]["attempts"] == 2);  // ENOSPC is transient: retried once
  CHECK(manifest[0]["error"] == error);
  CHECK(list_files(full).empty());  // neither the output nor its temp file

  // Still serving, its state files intact, and the space is usable again.
  daemon.expect_running();
  drop_job(spool, "small.json", make_job("small", tmp / "small", full + "/small"));
  JobOutcome small = daemon.wait_for_job("small");
  CHECK(small.folder == "done");
  CHECK(read_file(full + "/small/small.txt") == "fits\n");
  CHECK(read_json(spool + "/failed/big.json")["id"] == "big");
  CHECK(daemon.metric("docpipe_documents_total", {{"outcome", "failed"}}) == 1);
  CHECK(daemon.terminate() == 0);
}

// Fills the file system holding `path` by writing it until ENOSPC; returns the bytes written.
size_t fill_up(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("create " + path + ": " + std::strerror(errno));
  std::string block(64 << 10, 'F');
  size_t total = 0;
  for (size_t chunk : {block.size(), size_t{1}}) {  // then byte by byte: the last page too
    for (;;) {
      ssize_t n = ::write(fd, block.data(), chunk);
      if (n <= 0) break;
      total += static_cast<size_t>(n);
    }
  }
  ::close(fd);
  return total;
}

TEST_CASE("e2e faults: a full spool stops the job, which stays visible until space returns") {
  if (::geteuid() != 0) {
    return skip_test("mounting a small tmpfs needs root, and this runs as uid " +
                     std::to_string(::geteuid()));
  }
  TempDir tmp;
  const std::string spool = tmp / "spool", in = tmp / "in", out = tmp / "out";
  SmallTmpfs fs(spool, "2m");
  if (!fs.mounted()) return skip_test("cannot mount a tmpfs on " + spool + ": " + fs.error());
  constexpr size_t kDocs = 400;
  for (size_t i = 0; i < kDocs; ++i) {
    write_file(in + "/doc-" + std::to_string(1000 + i) + ".txt", std::string(300, 'd'));
  }

  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  drop_job(spool, "full.json", make_job("full", in, out, {{{"op", "test.sleep"}, {"ms", 10}}}));
  REQUIRE(poll_until(kJobTimeout, [&] {
    daemon.expect_running();
    return count_outputs(out) >= 30;
  }));
  const std::string filler = spool + "/filler";
  CHECK(fill_up(filler) > 0);

  // The journal cannot take another record: the job stops taking documents, and its report
  // cannot be written either. It stays in active/, shown as finishing with the error, and not
  // counted yet. (It shows "finishing" as soon as it ends, and the error once its first attempt
  // to write the report has failed: a loaded CI machine saw the first without the second.)
  nlohmann::json status;
  REQUIRE(poll_until(milliseconds(30000), [&] {
    daemon.expect_running();
    status = job_status(spool, "full", tmp.path());
    return !status.is_null() && status["state"] == "finishing" && status["error"].is_string();
  }));
  INFO("status: " << status.dump(2) << "\nlog:\n" << daemon.log());
  CHECK(status["error"].get<std::string>().find("No space left on device") != std::string::npos);
  CHECK(status["reason"].get<std::string>().find("journal") != std::string::npos);
  CHECK(file_exists(spool + "/active/full.json"));
  CHECK_FALSE(file_exists(spool + "/failed/full.report.json"));
  CHECK(daemon.metric("docpipe_jobs_total", {{"outcome", "failed"}}).value_or(0) == 0);
  CHECK(daemon.metric("docpipe_jobs_active").value_or(0) == 1);
  const size_t outputs_when_stopped = count_outputs(out);
  CHECK(outputs_when_stopped < kDocs);

  // Space returns: the next retry finishes the job, failed, with the journal's error as reason.
  REQUIRE(::unlink(filler.c_str()) == 0);
  JobOutcome outcome = daemon.wait_for_job("full", milliseconds(30000));
  nlohmann::json report = outcome.report;
  INFO("report: " << report.dump(2));
  CHECK(outcome.folder == "failed");
  CHECK(report["state"] == "failed");
  std::string reason = report["reason"];
  CHECK(reason.find("journal") != std::string::npos);
  CHECK(reason.find("No space left on device") != std::string::npos);
  CHECK(report["counts"]["cancelled"].get<uint64_t>() > 0);
  CHECK(report["counts"]["total"] == kDocs);
  // It took no documents after the journal failed (those in flight aside).
  CHECK(count_outputs(out) == outputs_when_stopped);
  CHECK(daemon.wait_for_metric("docpipe_jobs_total", {{"outcome", "failed"}}, 1) == 1);
  CHECK(daemon.metric("docpipe_jobs_active").value_or(-1) == 0);
  CHECK(daemon.log_lines_with({" job finished ", "job=full "}).size() == 1);
  CHECK(list_files(spool + "/active").empty());
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
