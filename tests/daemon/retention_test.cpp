// Retention (daemon/retention.h) on real folders with mtimes set in the past and a `now` given by
// the test: which finished and rejected jobs go, which stay, and what is never touched.

#include "daemon/retention.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

namespace fs = std::filesystem;
using docpipe::PruneResult;
using docpipe::PruneRule;
using docpipe::SpoolFolder;

namespace {

constexpr int64_t kDay = 86400000;
constexpr int64_t kNow = 1796182674000;  // 2026-12-02

struct Folder {
  Folder() {
    char tmpl[] = "/tmp/docpipe-retention-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~Folder() { fs::remove_all(dir); }

  // NAME with `bytes` bytes, last written `age_ms` before kNow.
  void file(const std::string& name, int64_t age_ms, size_t bytes = 10) {
    std::ofstream(dir + "/" + name) << std::string(bytes, 'x');
    age(name, age_ms);
  }
  // NAME's own mtime (a link's, not its target's) `age_ms` before kNow.
  void age(const std::string& name, int64_t age_ms) {
    const int64_t at = kNow - age_ms;
    timespec times[2] = {{at / 1000, (at % 1000) * 1000000}, {at / 1000, (at % 1000) * 1000000}};
    REQUIRE(::utimensat(AT_FDCWD, (dir + "/" + name).c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
  }
  void finished_job(const std::string& id, int64_t age_ms) {
    file(id + ".json", age_ms + kDay);  // the job file keeps its (older) submission mtime
    file(id + ".manifest.jsonl", age_ms);
    file(id + ".report.json", age_ms);
  }
  std::set<std::string> names() const {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
    return out;
  }

  std::string dir;
};

}  // namespace

TEST_CASE("retention: finished jobs older than max_age go whole, younger ones and others stay") {
  Folder f;
  f.finished_job("old", 40 * kDay);
  f.finished_job("young", 1 * kDay);
  f.finished_job("v1.2-nightly", 31 * kDay);  // dots in the id
  f.file("crashed.json", 50 * kDay);          // a job file left alone by an earlier crash
  f.file(".young.report.json.docpipe-tmp.ab12", 90 * kDay);  // a temp file: not a job's
  f.file("notes.txt", 90 * kDay);                            // no job's name
  fs::create_directory(f.dir + "/folder.json");              // a folder: never touched

  PruneResult r = docpipe::prune_folder(f.dir, SpoolFolder::kDone, PruneRule{30 * kDay, 0}, kNow);
  CHECK(r.errors.empty());
  CHECK(r.jobs_removed == 3);
  CHECK(r.files_removed == 7);
  CHECK(r.bytes_removed == 70);
  CHECK(f.names() ==
        std::set<std::string>{"young.json", "young.manifest.jsonl", "young.report.json",
                              ".young.report.json.docpipe-tmp.ab12", "notes.txt", "folder.json"});
  CHECK(r.files_left == 4);  // young's 3 and notes.txt (temp files and folders are not counted)

  // Nothing older than the limit is left: a second pass removes nothing.
  PruneResult again =
      docpipe::prune_folder(f.dir, SpoolFolder::kDone, PruneRule{30 * kDay, 0}, kNow);
  CHECK(again.jobs_removed == 0);
  CHECK(again.files_removed == 0);
}

TEST_CASE("retention: max_jobs keeps the newest jobs, whatever their age") {
  Folder f;
  for (int i = 1; i <= 5; ++i) f.finished_job("job" + std::to_string(i), i * kDay);
  PruneResult r = docpipe::prune_folder(f.dir, SpoolFolder::kFailed, PruneRule{0, 2}, kNow);
  CHECK(r.jobs_removed == 3);
  CHECK(f.names() == std::set<std::string>{"job1.json", "job1.manifest.jsonl", "job1.report.json",
                                           "job2.json", "job2.manifest.jsonl", "job2.report.json"});
  // Both limits: the age goes first, then the count.
  PruneResult both =
      docpipe::prune_folder(f.dir, SpoolFolder::kFailed, PruneRule{kDay + kDay / 2, 5}, kNow);
  CHECK(both.jobs_removed == 1);
  CHECK(f.names().count("job1.report.json") == 1);
  CHECK(f.names().count("job2.report.json") == 0);
}

TEST_CASE("retention: a rejected file and its error file go together, links are not followed") {
  Folder f;
  Folder outside;
  outside.file("precious.txt", 0);
  f.file("bad.json", 10 * kDay);
  f.file("bad.json.error.json", 8 * kDay);
  REQUIRE(::symlink((outside.dir + "/precious.txt").c_str(), (f.dir + "/link.json").c_str()) == 0);
  f.age("link.json", 9 * kDay);
  f.file("link.json.error.json", 9 * kDay);
  f.file("fresh.json", 0);
  f.file("fresh.json.error.json", 0);
  PruneResult r =
      docpipe::prune_folder(f.dir, SpoolFolder::kRejected, PruneRule{7 * kDay, 0}, kNow);
  CHECK(r.jobs_removed == 2);
  CHECK(f.names() == std::set<std::string>{"fresh.json", "fresh.json.error.json"});
  CHECK(outside.names() == std::set<std::string>{"precious.txt"});
}

TEST_CASE("retention: a file that cannot be removed is reported and the rest goes on") {
  if (::geteuid() == 0) {
    MESSAGE("skipped: root removes files from a read-only folder");
    return;
  }
  Folder f;
  f.finished_job("old", 40 * kDay);
  ::chmod(f.dir.c_str(), 0555);
  PruneResult r = docpipe::prune_folder(f.dir, SpoolFolder::kDone, PruneRule{kDay, 0}, kNow);
  ::chmod(f.dir.c_str(), 0755);
  CHECK(r.jobs_removed == 0);
  REQUIRE_FALSE(r.errors.empty());
  CHECK(r.errors[0].find("Permission denied") != std::string::npos);
}

TEST_CASE("retention: a folder that cannot be opened is one error, nothing else") {
  PruneResult r = docpipe::prune_folder("/nonexistent/docpipe-retention", SpoolFolder::kDone,
                                        PruneRule{kDay, 0}, kNow);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] == "open /nonexistent/docpipe-retention: No such file or directory");
  CHECK_FALSE(docpipe::folder_usage("/nonexistent/docpipe-retention").has_value());
  Folder f;
  f.file("a.json", 0, 100);
  f.file(".tmp", 0, 5);
  auto usage = docpipe::folder_usage(f.dir);
  REQUIRE(usage.has_value());
  CHECK(usage->files == 1);
  CHECK(usage->bytes == 100);
}

TEST_CASE("retention: ids with dots group by the files that are there") {
  Folder f;
  // Job "weekly.report": its job file is weekly.report.json, its report weekly.report.report.json.
  f.finished_job("weekly.report", 3 * kDay);
  f.finished_job("daily", 1 * kDay);
  PruneResult r = docpipe::prune_folder(f.dir, SpoolFolder::kDone, PruneRule{0, 1}, kNow);
  CHECK(r.jobs_removed == 1);
  CHECK(r.files_removed == 3);
  CHECK(f.names() ==
        std::set<std::string>{"daily.json", "daily.manifest.jsonl", "daily.report.json"});

  // Rejected: "x.error.json" was itself a dropped job file; its error file goes with it.
  Folder rejected;
  rejected.file("x.error.json", 9 * kDay);
  rejected.file("x.error.json.error.json", 9 * kDay);
  rejected.file("y.json", 1 * kDay);
  rejected.file("y.json.error.json", 1 * kDay);
  PruneResult rr =
      docpipe::prune_folder(rejected.dir, SpoolFolder::kRejected, PruneRule{0, 1}, kNow);
  CHECK(rr.jobs_removed == 1);
  CHECK(rejected.names() == std::set<std::string>{"y.json", "y.json.error.json"});
}

TEST_CASE("retention: a job being finished, its submitter record and the end that counts") {
  Folder f;
  Folder active;
  Folder submitters;
  // Mid-finish (or a finish retried after a crash): manifest and report in done/, the job file
  // still in active/. Old, but never removed.
  f.file("moving.manifest.jsonl", 40 * kDay);
  f.file("moving.report.json", 40 * kDay);
  active.file("moving.json", 40 * kDay);
  f.finished_job("old", 40 * kDay);
  submitters.file("old.submitter", 40 * kDay);
  submitters.file("moving.submitter", 40 * kDay);
  docpipe::PruneContext context;
  context.active = active.dir;
  context.submitters = submitters.dir;
  PruneResult r =
      docpipe::prune_folder(f.dir, SpoolFolder::kDone, PruneRule{30 * kDay, 0}, kNow, context);
  CHECK(r.jobs_removed == 1);
  CHECK(f.names() == std::set<std::string>{"moving.manifest.jsonl", "moving.report.json"});
  // Whom "old" acted for goes with it: a later job of that id never finds the record.
  CHECK(submitters.names() == std::set<std::string>{"moving.submitter"});

  // A rejection's age is its error file's, not the mtime a producer gave the job file.
  Folder rejected;
  rejected.file("future.json", -400 * kDay);
  rejected.file("future.json.error.json", 10 * kDay);
  CHECK(docpipe::prune_folder(rejected.dir, SpoolFolder::kRejected, PruneRule{7 * kDay, 0}, kNow)
            .jobs_removed == 1);
  CHECK(rejected.names().empty());
}

TEST_CASE("retention: a pass stops when asked and removes at most max_removals jobs") {
  Folder f;
  for (int i = 0; i < 5; ++i) f.finished_job("job" + std::to_string(i), (40 + i) * kDay);
  docpipe::PruneContext context;
  context.max_removals = 2;
  PruneResult capped =
      docpipe::prune_folder(f.dir, SpoolFolder::kDone, PruneRule{30 * kDay, 0}, kNow, context);
  CHECK(capped.jobs_removed == 2);
  CHECK(capped.more);
  CHECK(f.names().count("job4.json") == 0);  // the oldest first
  CHECK(f.names().count("job3.json") == 0);
  std::atomic<bool> stop{true};
  context.stop = &stop;
  PruneResult stopped =
      docpipe::prune_folder(f.dir, SpoolFolder::kDone, PruneRule{30 * kDay, 0}, kNow, context);
  CHECK(stopped.jobs_removed == 0);
  CHECK(stopped.more);
  stop = false;
  context.max_removals = 10;
  PruneResult rest =
      docpipe::prune_folder(f.dir, SpoolFolder::kDone, PruneRule{30 * kDay, 0}, kNow, context);
  CHECK(rest.jobs_removed == 3);
  CHECK_FALSE(rest.more);
  CHECK(f.names().empty());
}

TEST_CASE("retention: when a file of a job cannot be removed, its marker stays") {
  Folder f;
  f.finished_job("stuck", 40 * kDay);
  // The manifest made immutable (root, ext4): no unlink succeeds, not even root's.
  const std::string manifest = f.dir + "/stuck.manifest.jsonl";
  int fd = ::open(manifest.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  int flags = 0;
  const bool immutable = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 &&
                         (flags |= FS_IMMUTABLE_FL, ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0);
  if (!immutable) {
    ::close(fd);
    MESSAGE("skipped: cannot make a file immutable here (needs root and ext4)");
    return;
  }
  PruneResult r = docpipe::prune_folder(f.dir, SpoolFolder::kDone, PruneRule{30 * kDay, 0}, kNow);
  flags &= ~FS_IMMUTABLE_FL;
  ::ioctl(fd, FS_IOC_SETFLAGS, &flags);
  ::close(fd);
  CHECK(r.jobs_removed == 0);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] == "remove " + manifest + ": Operation not permitted");
  // The id stays used while part of the job is left.
  CHECK(f.names() == std::set<std::string>{"stuck.json", "stuck.manifest.jsonl"});
}

TEST_CASE("retention: a finished job whose completion notification is pending is kept") {
  Folder f;
  Folder notify;
  f.finished_job("waiting", 40 * kDay);
  f.finished_job("told", 40 * kDay);
  f.finished_job("young", 1 * kDay);
  notify.file("waiting.json", 1 * kDay);  // SPOOL/notify/waiting.json: still being delivered
  docpipe::PruneContext context;
  context.notify = notify.dir;
  // Neither its age nor max_jobs removes it; it does not count against max_jobs either.
  PruneResult r =
      docpipe::prune_folder(f.dir, SpoolFolder::kDone, PruneRule{30 * kDay, 1}, kNow, context);
  CHECK(r.jobs_removed == 1);
  CHECK(f.names() == std::set<std::string>{"waiting.json", "waiting.manifest.jsonl",
                                           "waiting.report.json", "young.json",
                                           "young.manifest.jsonl", "young.report.json"});
  // Delivered (the record gone): the next pass prunes it.
  std::filesystem::remove(notify.dir + "/waiting.json");
  r = docpipe::prune_folder(f.dir, SpoolFolder::kDone, PruneRule{30 * kDay, 0}, kNow, context);
  CHECK(r.jobs_removed == 1);
  CHECK(f.names() ==
        std::set<std::string>{"young.json", "young.manifest.jsonl", "young.report.json"});
}
