// core/fs_util.h: the streaming atomic writer (whole or nothing, no temp file left on any
// failure) and the start-up removal of leftover temp files (only docpipe temp names, in every
// folder below, never through a symlinked folder).

#include "core/fs_util.h"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/path_util.h"
#include "tests/support/temp_folder.h"

namespace docpipe {
namespace {

namespace fs = std::filesystem;

// A temp folder whose names() are those of its root.
struct TempDir : test::TempFolder {
  TempDir() : TempFolder("/tmp", "fsutil") {}
  std::vector<std::string> names() const { return TempFolder::names(TempFolder::root()); }
  const std::string& root = TempFolder::root();
};

// Says why a test cannot run here and passes, unless DOCPIPE_REQUIRE_ALL_TESTS is set.
void skip_test(const std::string& reason) {
  if (std::getenv("DOCPIPE_REQUIRE_ALL_TESTS") != nullptr) {
    FAIL("cannot run, and DOCPIPE_REQUIRE_ALL_TESTS is set: " << reason);
  }
  MESSAGE("skipped: " << reason);
}

TEST_CASE("fs util: an atomic writer streams into a temp file and commit renames it into place") {
  for (bool durable : {false, true}) {
    CAPTURE(durable);
    TempDir d;
    const std::string path = d.root + "/out.jsonl";
    std::ofstream(path) << "old";
    Result<AtomicFileWriter> w = AtomicFileWriter::create(path, durable);
    REQUIRE(w);
    CHECK(parent_path(w->temp_path()) == d.root);
    CHECK(is_docpipe_temp_name(base_name(w->temp_path())));
    std::string expected;
    for (int i = 0; i < 20000; ++i) {  // past the buffer several times, in small pieces
      const std::string line = "line " + std::to_string(i) + "\n";
      REQUIRE(w->write(line));
      expected += line;
    }
    const std::string big(200000, 'x');  // a piece larger than the buffer
    REQUIRE(w->write(big));
    expected += big;
    CHECK(TempDir::read(path) == "old");  // readers see the old file until the commit
    REQUIRE(w->commit());
    CHECK(TempDir::read(path) == expected);
    CHECK(d.names() == std::vector<std::string>{"out.jsonl"});
    CHECK_FALSE(w->write("more"));  // committed: nothing more goes in
  }
}

TEST_CASE("fs util: an atomic writer dropped or aborted leaves neither temp file nor target") {
  TempDir d;
  const std::string path = d.root + "/out.txt";
  {
    Result<AtomicFileWriter> w = AtomicFileWriter::create(path, false);
    REQUIRE(w);
    REQUIRE(w->write("partial"));
    CHECK(fs::exists(w->temp_path()));
  }  // destroyed without a commit
  CHECK(d.names().empty());
  Result<AtomicFileWriter> w = AtomicFileWriter::create(path, false);
  REQUIRE(w);
  REQUIRE(w->write(std::string(100000, 'y')));
  w->abort();
  CHECK(d.names().empty());
  CHECK_FALSE(w->commit());
  CHECK(d.names().empty());
}

TEST_CASE("fs util: an atomic writer in a missing folder fails naming the temp file") {
  TempDir d;
  Result<AtomicFileWriter> w = AtomicFileWriter::create(d.root + "/missing/out.txt", true);
  REQUIRE_FALSE(w);
  CHECK(w.error().code == ErrorCode::kNotFound);
  CHECK(w.error().message.find(d.root + "/missing/.out.txt.docpipe-tmp.") != std::string::npos);
  CHECK_FALSE(write_file_atomic(d.root + "/missing/out.txt", "x", false));
  CHECK(d.names().empty());
}

TEST_CASE("fs util: a commit whose rename fails removes the temp file and keeps the target") {
  TempDir d;
  const std::string path = d.root + "/target";
  fs::create_directories(path + "/inside");  // a non-empty folder cannot be renamed over
  Result<AtomicFileWriter> w = AtomicFileWriter::create(path, true);
  REQUIRE(w);
  REQUIRE(w->write("content"));
  Status st = w->commit();
  REQUIRE_FALSE(st);
  CHECK(st.error().message.find("rename to " + path) != std::string::npos);
  CHECK(d.names() == std::vector<std::string>{"target"});
  CHECK(fs::is_directory(path + "/inside"));
}

TEST_CASE("fs util: an atomic writer that runs out of space leaves nothing behind") {
  if (::geteuid() != 0) return skip_test("mounting a tmpfs needs root");
  TempDir d;
  const std::string mnt = d.root + "/small";
  fs::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=64k") != 0) {
    return skip_test(std::string("cannot mount a tmpfs: ") + std::strerror(errno));
  }
  const std::string path = mnt + "/manifest.jsonl";
  std::ofstream(path) << "previous";
  Result<AtomicFileWriter> w = AtomicFileWriter::create(path, true);
  REQUIRE(w);
  Status st = ok();
  for (int i = 0; i < 100 && st; ++i) st = w->write(std::string(4096, 'z'));  // 400 KiB > 64 KiB
  if (st) st = w->commit();
  REQUIRE_FALSE(st);
  CHECK(st.error().sys_errno == ENOSPC);
  CHECK_FALSE(w->commit());  // the failure sticks
  CHECK(test::TempFolder::names(mnt) == std::vector<std::string>{"manifest.jsonl"});
  CHECK(TempDir::read(path) == "previous");
  CHECK_FALSE(write_file_atomic(path, std::string(100000, 'q'), false));
  CHECK(test::TempFolder::names(mnt) == std::vector<std::string>{"manifest.jsonl"});
  ::umount2(mnt.c_str(), MNT_DETACH);
}

TEST_CASE("fs util: leftover temp files are removed below a folder, never through a symlink") {
  TempDir dir;
  const std::string& root = dir.root;
  fs::create_directories(root + "/out/a/b");
  fs::create_directories(root + "/elsewhere");
  for (const std::string& p :
       {root + "/out/.x.txt.docpipe-tmp.aaaaaaaaaaaa",
        root + "/out/a/b/.y.docpipe-tmp.bbbbbbbbbbbb", root + "/out/keep.txt",
        root + "/elsewhere/.z.docpipe-tmp.cccccccccccc"}) {
    std::ofstream(p) << "x";
  }
  fs::create_symlink(root + "/elsewhere", root + "/out/link");
  CHECK(remove_docpipe_temp_files(root + "/out") == 2);
  CHECK_FALSE(fs::exists(root + "/out/.x.txt.docpipe-tmp.aaaaaaaaaaaa"));
  CHECK_FALSE(fs::exists(root + "/out/a/b/.y.docpipe-tmp.bbbbbbbbbbbb"));
  CHECK(fs::exists(root + "/out/keep.txt"));
  CHECK(fs::exists(root + "/elsewhere/.z.docpipe-tmp.cccccccccccc"));
}

TEST_CASE("fs util: temp removal in a wide tree holds a descriptor per level, not per folder") {
  TempDir dir;
  constexpr int kFolders = 600;
  for (int i = 0; i < kFolders; ++i) {
    const std::string sub = dir.root + "/out/" + std::to_string(i);
    fs::create_directories(sub);
    std::ofstream(sub + "/.d.docpipe-tmp.aaaaaaaaaaaa") << "x";
  }
  // In a child with 64 descriptors free: one per pending folder would run out after 64.
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int probe = ::dup(0);
    struct rlimit limit {
      static_cast<rlim_t>(probe + 64), static_cast<rlim_t>(probe + 64)
    };
    ::close(probe);
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) ::_exit(90);
    ::_exit(remove_docpipe_temp_files(dir.root + "/out") == kFolders ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(fs::exists(dir.root + "/out/0"));
  CHECK_FALSE(fs::exists(dir.root + "/out/0/.d.docpipe-tmp.aaaaaaaaaaaa"));
}

}  // namespace
}  // namespace docpipe
