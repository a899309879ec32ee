// Item 15 of issue 9: a temp file left in an output folder because the folder turned read-only
// between its create and its rename is removed later: at the end of a later job, and at start-up
// after a restart (the daemon keeps the list in the spool).

#include <doctest/doctest.h>

#include <memory>

#include "tests/e2e/harness.h"
#include "tests/support/immutable.h"

namespace e2e {
namespace {

using docpipe::test::MutableGuard;
using docpipe::test::set_immutable;

// Runs a job whose one large (streamed) document sleeps after its temp file is written; the
// output folder turns immutable meanwhile, so the rename and the removal both fail.
void leave_a_temp(DaemonProcess& daemon, const std::string& spool, const std::string& id,
                  const std::string& in, const std::string& out) {
  drop_job(spool, id + ".json", make_job(id, in, out, {{{"op", "test.sleep"}, {"ms", 1500}}}));
  REQUIRE(poll_until(kJobTimeout, [&] { return !dot_files_under(out).empty(); }));
  REQUIRE(set_immutable(out, true));
  JobOutcome outcome = daemon.wait_for_job(id);
  INFO(outcome.report.dump(2));
  CHECK(outcome.report["counts"]["failed"] == 1);
  CHECK(dot_files_under(out).size() == 1);
}

TEST_CASE(
    "leftover temps: a temp file a read-only folder kept is removed after a job and a restart") {
  TempDir tmp;  // /tmp: ext4, where chattr +i works
  const std::string spool = tmp / "spool";
  const std::string out = tmp / "out";
  make_dirs(out);
  if (!set_immutable(out, true) || !set_immutable(out, false)) {
    return skip_test("cannot chattr +i here (needs root and ext4)");
  }
  MutableGuard guard(out);
  write_file(tmp / "in/big.txt", std::string(9u << 20, 'x'));  // above the 8 MiB stream threshold
  write_file(tmp / "in2/small.txt", "small");

  auto daemon = std::make_unique<DaemonProcess>(spool, std::vector<std::string>{});
  daemon->set_binary(DOCPIPE_TEST_BINARY);
  daemon->start();
  leave_a_temp(*daemon, spool, "first", tmp / "in", out);
  CHECK(file_exists(spool + "/leftover-temps.json"));

  // Writable again: the end of the next job removes it.
  REQUIRE(set_immutable(out, false));
  drop_job(spool, "after.json", make_job("after", tmp / "in2", tmp / "out2"));
  CHECK(daemon->wait_for_job("after").folder == "done");
  CHECK(dot_files_under(out).empty());
  CHECK_FALSE(file_exists(spool + "/leftover-temps.json"));

  // Again, but the folder opens up only while the daemon is down: start-up removes it.
  leave_a_temp(*daemon, spool, "second", tmp / "in", out);
  CHECK(daemon->terminate() == 0);
  REQUIRE(set_immutable(out, false));
  daemon = std::make_unique<DaemonProcess>(spool, std::vector<std::string>{});
  daemon->start();
  CHECK(poll_until(kStartTimeout, [&] { return dot_files_under(out).empty(); }));
  CHECK_FALSE(file_exists(spool + "/leftover-temps.json"));
  CHECK(daemon->terminate() == 0);
}

}  // namespace
}  // namespace e2e
