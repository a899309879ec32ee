// Bounded memory: with the pipeline's admission bounds set low, a daemon's peak RSS does not grow
// with the number of documents in a job. Two daemons run one after the other on the same kind of
// input, 2,000 and 20,000 documents. Sanitizers keep freed memory in quarantine, so RSS says
// nothing about the daemon there: the test is skipped in sanitizer builds.

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kBudget = 1 * kMiB;  // --memory-budget-bytes

// tmpfs keeps the 44,000 file creations fast and clear of ext4's delayed inode reuse (NOTES.md);
// page cache is not part of the daemon's RSS either way.
uint64_t peak_rss_for_identity_job(int documents) {
  TempDir tmp(scratch_base());
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  std::string content(4096, '.');
  for (int i = 0; i < documents; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "/%03d/doc-%05d.txt", i / 1000, i);
    std::string header = "document " + std::to_string(i) + "\n";
    content.replace(0, header.size(), header);  // distinct files of one size
    write_file(in + name, content);
  }
  DaemonProcess daemon(spool, {"--max-in-flight-documents", "8", "--memory-budget-bytes",
                               std::to_string(kBudget), "--durability", "none", "--workers", "2"});
  daemon.start();
  drop_job(spool, "bulk.json", make_job("bulk", in, out));
  JobOutcome outcome = daemon.wait_for_job("bulk");
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["counts"]["succeeded"] == documents);
  uint64_t rss = daemon.peak_rss_bytes();
  CHECK(daemon.terminate() == 0);
  return rss;
}

TEST_CASE("e2e memory: peak RSS of a 20000-document job stays within 8 MiB of a 2000-document job" *
          doctest::skip(kSanitized)) {
  uint64_t small = peak_rss_for_identity_job(2000);
  uint64_t large = peak_rss_for_identity_job(20000);
  MESSAGE("peak RSS: 2000 documents " << small / 1024 << " KiB, 20000 documents " << large / 1024
                                      << " KiB");
  // DESIGN.md: peak RSS within the memory budget + 32 MiB, whatever the job.
  CHECK(small <= kBudget + 32 * kMiB);
  CHECK(large <= kBudget + 32 * kMiB);
  CHECK(large <= small + 8 * kMiB);
}

}  // namespace
}  // namespace e2e
