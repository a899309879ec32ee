// Retention through the real binary (issue 14, "Keep the house clean"): finished and rejected
// jobs older than the config's max_age_days leave the spool on the daemon's own timer, younger
// ones stay, and /metrics counts what went and measures what is left. "Old" is made by setting
// the files' mtimes back two days (the daemon judges age by the newest mtime of a job's files).

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <string>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

void set_age_days(const std::string& path, int days) {
  const time_t at = ::time(nullptr) - days * 86400;
  timespec times[2] = {{at, 0}, {at, 0}};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
}

TEST_CASE("e2e retention: old finished and rejected jobs are pruned, young ones stay") {
  TempDir tmp;
  const std::string spool = tmp / "spool";
  write_file(tmp / "in/a.txt", "alpha\n");
  write_file(tmp / "docpipe.json", R"({"retention": {"done": {"max_age_days": 1},
                                                      "rejected": {"max_age_days": 1},
                                                      "interval_ms": 200}})");
  DaemonProcess daemon(spool, {"--config", tmp / "docpipe.json", "--workers", "1"});
  daemon.start();

  for (const char* id : {"old", "young"}) {
    drop_job(spool, std::string(id) + ".json",
             make_job(id, tmp / "in", tmp / ("out-" + std::string(id))));
    REQUIRE(daemon.wait_for_job(id).folder == "done");
  }
  drop_job(spool, "bad.json", nlohmann::json{{"id", "bad"}, {"transforms", 5}});
  daemon.wait_for_rejection("bad.json");
  // Measured with all three finished jobs' files in place at some pass.
  CHECK(daemon.wait_for_metric("docpipe_spool_files", {{"folder", "done"}}, 6) == 6);

  for (const char* name : {"old.json", "old.report.json", "old.manifest.jsonl"}) {
    set_age_days(spool + "/done/" + name, 2);
  }
  for (const char* name : {"bad.json", "bad.json.error.json"}) {
    set_age_days(spool + "/rejected/" + name, 2);
  }
  CHECK(daemon.wait_for_metric("docpipe_retention_removed_jobs_total", {{"folder", "done"}}, 1) ==
        1);
  CHECK(daemon.wait_for_metric("docpipe_retention_removed_jobs_total", {{"folder", "rejected"}},
                               1) == 1);
  CHECK_FALSE(file_exists(spool + "/done/old.json"));
  CHECK_FALSE(file_exists(spool + "/done/old.report.json"));
  CHECK_FALSE(file_exists(spool + "/done/old.manifest.jsonl"));
  CHECK_FALSE(file_exists(spool + "/rejected/bad.json"));
  CHECK_FALSE(file_exists(spool + "/rejected/bad.json.error.json"));
  CHECK(file_exists(spool + "/done/young.json"));
  CHECK(file_exists(spool + "/done/young.report.json"));
  CHECK(file_exists(spool + "/done/young.manifest.jsonl"));
  CHECK(read_file(tmp / "out-old/a.txt") == "alpha\n");  // outputs are the user's, never pruned
  // Whom the old job acted for went with it; the young job's record stays.
  CHECK_FALSE(file_exists(spool + "/submitters/old.submitter"));
  CHECK(file_exists(spool + "/submitters/young.submitter"));
  CHECK(daemon.wait_for_metric("docpipe_spool_files", {{"folder", "done"}}, 3) == 3);
  CHECK(daemon.wait_for_metric("docpipe_spool_files", {{"folder", "rejected"}}, 0) == 0);
  CHECK(daemon.metric("docpipe_spool_bytes", {{"folder", "done"}}) > 0);
  CHECK(!daemon.log_lines_with({"retention removed old jobs", "folder=done", "jobs=1"}).empty());

  // A pruned job is gone for status, and its id is free again.
  CommandResult gone = docpipe({"status", "--spool", spool, "old"}, tmp.path());
  CHECK(gone.exit_code == 1);
  CHECK(gone.err == "docpipe status: no job \"old\": not queued, running or finished\n");
  drop_job(spool, "old.json", make_job("old", tmp / "in", tmp / "out-old-again"));
  CHECK(daemon.wait_for_job("old").folder == "done");
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
