// SubmitterStore (daemon/submitter_store.h): the record of whom a job acts for, kept beside the
// job in the spool, trusted only when the daemon wrote it, never replaced by a losing rival.

#include "daemon/submitter_store.h"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/fail_folder_opens.h"

namespace docpipe {
namespace {

class SpoolFixture {
 public:
  // `spool_durable`: the spool fsyncs its folders (the store's own records never do here).
  explicit SpoolFixture(bool spool_durable = false) {
    char tmpl[] = "/tmp/docpipe-submitters-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    spool_ = std::make_unique<Spool>(root_ + "/spool", spool_durable);
    REQUIRE(spool_->create_layout());
    store_ = std::make_unique<SubmitterStore>(*spool_, false);
    store_->start();
  }
  ~SpoolFixture() { std::filesystem::remove_all(root_); }
  const Spool& spool() const { return *spool_; }
  SubmitterStore& store() { return *store_; }

 private:
  std::string root_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<SubmitterStore> store_;
};

Credentials user(uid_t uid) { return Credentials{uid, uid + 1, {uid + 1, 4242}}; }

TEST_CASE("submitter store: records encode and decode, root as unrestricted") {
  auto back = SubmitterStore::decode(SubmitterStore::encode(user(1000)));
  REQUIRE(back.has_value());
  CHECK(back->submitter == user(1000));
  auto root = SubmitterStore::decode(SubmitterStore::encode(std::nullopt));
  REQUIRE(root.has_value());
  CHECK_FALSE(root->submitter.has_value());
  CHECK_FALSE(SubmitterStore::decode("{\"uid\":-1,\"gid\":0,\"groups\":[]}").has_value());
  CHECK_FALSE(SubmitterStore::decode("{\"uid\":1}").has_value());
  CHECK_FALSE(SubmitterStore::decode("junk").has_value());
}

TEST_CASE("submitter store: an admitted job's record survives it and stays once it is done") {
  SpoolFixture f;
  REQUIRE(f.store().admit("job1", "{}\n", user(1000)));
  auto loaded = f.store().load_active("job1");
  REQUIRE(loaded.has_value());
  CHECK(*loaded == std::optional<Credentials>(user(1000)));
  REQUIRE(f.spool().finish("job1", true, "{}"));
  f.store().start();  // a restart keeps the record of a finished job
  auto finished = f.store().load_finished("job1");
  REQUIRE(finished.has_value());
  CHECK(finished->submitter == std::optional<Credentials>(user(1000)));
}

TEST_CASE("submitter store: an admit whose folder fsync fails keeps the job and its record") {
  // The job file reached active/ before the fsync failed: the job runs, so it must keep acting
  // for its submitter. Without the record a resume would take the job file's owner, the daemon.
  SpoolFixture f(/*spool_durable=*/true);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (!test::fail_folder_opens()) ::_exit(90);
    ::_exit(f.store().admit("job2", "{}\n", user(1000)) ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);  // accepted: it is in active/
  CHECK(std::filesystem::exists(f.spool().active_job("job2")));
  auto loaded = f.store().load_active("job2");
  REQUIRE(loaded.has_value());
  CHECK(*loaded == std::optional<Credentials>(user(1000)));
}

TEST_CASE("submitter store: a refused admit of a taken id leaves the first job's record") {
  SpoolFixture f;
  REQUIRE(f.store().admit("same", "{}\n", user(1000)));
  Status second = f.store().admit("same", "{}\n", user(2000));
  REQUIRE_FALSE(second);
  CHECK(second.error().code == ErrorCode::kExists);
  auto loaded = f.store().load_active("same");
  REQUIRE(loaded.has_value());
  CHECK(*loaded == std::optional<Credentials>(user(1000)));
}

TEST_CASE("submitter store: a record anyone could have written is ignored for the file's owner") {
  if (::geteuid() != 0) {
    const char* all = std::getenv("DOCPIPE_REQUIRE_ALL_TESTS");
    if (all != nullptr && std::string(all) != "" && std::string(all) != "0") {
      FAIL("needs root (chown), and DOCPIPE_REQUIRE_ALL_TESTS is set");
    }
    MESSAGE("SKIPPED: needs root (chown)");
    return;
  }
  SpoolFixture f;
  REQUIRE(f.store().admit("planted", "{}\n", std::nullopt));  // "unrestricted"
  std::string record = f.spool().root() + "/submitters/planted.submitter";
  std::string job = f.spool().active_job("planted");
  REQUIRE(::chown(job.c_str(), 65534, 65534) == 0);
  // Group- or world-writable: someone else may have written it.
  REQUIRE(::chmod(record.c_str(), 0666) == 0);
  auto loaded = f.store().load_active("planted");
  REQUIRE(loaded.has_value());
  REQUIRE(loaded->has_value());
  CHECK((*loaded)->uid == 65534);
  // Owned by another user: the same.
  REQUIRE(::chmod(record.c_str(), 0644) == 0);
  REQUIRE(::chown(record.c_str(), 65534, 65534) == 0);
  loaded = f.store().load_active("planted");
  REQUIRE(loaded.has_value());
  REQUIRE(loaded->has_value());
  CHECK((*loaded)->uid == 65534);
}

TEST_CASE("submitter store: start() makes the spool private and drops records without a job") {
  SpoolFixture f;
  REQUIRE(::chmod(f.spool().active().c_str(), 0775) == 0);
  REQUIRE(::chmod(f.spool().done().c_str(), 0755) == 0);
  const std::string records = f.spool().root() + "/submitters";
  REQUIRE(::chmod(records.c_str(), 0755) == 0);
  // A finished job's record stays; one whose job never made it (a crash between record and
  // admit) goes, so that it can never be taken for a later job of that id.
  REQUIRE(f.store().admit("moved", "{}\n", user(1000)));
  REQUIRE(f.spool().finish("moved", true, "{}"));
  std::ofstream(records + "/gone.submitter") << SubmitterStore::encode(user(7));
  f.store().start();
  struct stat sb;
  REQUIRE(::stat(f.spool().active().c_str(), &sb) == 0);
  CHECK((sb.st_mode & 0777) == 0700);
  REQUIRE(::stat(f.spool().done().c_str(), &sb) == 0);
  CHECK((sb.st_mode & 0777) == 0700);
  REQUIRE(::stat(records.c_str(), &sb) == 0);
  CHECK((sb.st_mode & 0777) == 0700);
  CHECK(f.store().load_finished("moved").has_value());
  CHECK_FALSE(std::filesystem::exists(records + "/gone.submitter"));
}

}  // namespace
}  // namespace docpipe
