#include "pipeline/output_file.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/leftover_temps.h"
#include "core/path_util.h"
#include "core/safe_fs.h"
#include "pipeline/sha256.h"
#include "tests/pipeline/pipeline_test_support.h"
#include "tests/support/immutable.h"

namespace docpipe {
namespace {

using testing::anonymous_files_under;
using testing::make_content;
using testing::read_file;
using testing::temp_files_under;
using testing::TempDir;
using testing::write_file;

// The names in `dir`, sorted.
std::vector<std::string> list_names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : testing::fs::directory_iterator(dir)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

TEST_CASE("sha256: digests match the published test vectors, across chunk boundaries") {
  Sha256 sha;
  REQUIRE(sha.reset());
  CHECK(sha.hex_digest().value() ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  REQUIRE(sha.reset());
  REQUIRE(sha.update("a"));
  REQUIRE(sha.update(""));
  REQUIRE(sha.update("bc"));
  CHECK(sha.hex_digest().value() ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("output_file: an anonymous output has no name until commit and then all its content") {
  TempDir dir;
  const std::string path = dir / "out.txt";
  OutputFile out;
  REQUIRE(out.create(path));
  REQUIRE(out.anonymous());
  CHECK(out.temp_path().empty());
  REQUIRE(out.write("hello "));
  REQUIRE(out.write("world"));
  CHECK(testing::fs::is_empty(dir.path()));  // no name at all in the folder
  CHECK(anonymous_files_under(dir.path()) == 1);
  auto committed = out.commit(IfExists::kReplace, false);
  REQUIRE(committed);
  CHECK(*committed == OutputFile::Committed::kWritten);
  CHECK(read_file(path) == "hello world");
  CHECK(anonymous_files_under(dir.path()) == 0);  // closed once linked
  CHECK(list_names(dir.path()) == std::vector<std::string>{"out.txt"});
  CHECK(out.bytes_written() == 11);
  CHECK(out.sha256_hex().value() == testing::sha256_hex("hello world"));
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK(st.st_nlink == 1);
  const mode_t mask = ::umask(0);
  ::umask(mask);
  CHECK((st.st_mode & 0777) == (0644 & ~mask));
}

TEST_CASE("output_file: a durable output goes to a named temp file that commit renames") {
  TempDir dir;
  const std::string path = dir / "out.txt";
  OutputFile out;
  REQUIRE(out.create(path, /*durable=*/true));
  CHECK_FALSE(out.anonymous());
  const std::string temp = out.temp_path();
  CHECK(temp.rfind(dir.path() + "/.out.txt.docpipe-tmp.", 0) == 0);
  CHECK(temp.size() == (dir.path() + "/.out.txt.docpipe-tmp.").size() + 12);
  REQUIRE(out.write("hello "));
  REQUIRE(out.write("world"));
  REQUIRE(out.sync());
  CHECK_FALSE(testing::fs::exists(path));
  auto committed = out.commit(IfExists::kReplace, true);
  REQUIRE(committed);
  CHECK(*committed == OutputFile::Committed::kWritten);
  CHECK(read_file(path) == "hello world");
  CHECK_FALSE(testing::fs::exists(temp));
  CHECK(out.bytes_written() == 11);
  CHECK(out.sha256_hex().value() == testing::sha256_hex("hello world"));
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  const mode_t mask = ::umask(0);
  ::umask(mask);
  CHECK((st.st_mode & 0777) == (0644 & ~mask));
}

TEST_CASE("output_file: missing parent folders are created") {
  TempDir dir;
  const std::string path = dir / "a/b/c/out.txt";
  OutputFile out;
  REQUIRE(out.create(path));
  REQUIRE(out.write("x"));
  REQUIRE(out.commit(IfExists::kReplace, false));
  CHECK(read_file(path) == "x");
}

TEST_CASE("output_file: replace overwrites and skip and fail never clobber an existing file") {
  for (bool durable : {false, true}) {
    CAPTURE(durable);
    TempDir dir;
    const std::string path = dir / "out.txt";
    write_file(path, "old");
    for (IfExists mode : {IfExists::kSkip, IfExists::kFail}) {
      OutputFile out;
      REQUIRE(out.create(path, durable));
      CHECK(out.anonymous() == !durable);
      REQUIRE(out.write("new"));
      auto committed = out.commit(mode, durable);
      REQUIRE(committed);
      CHECK(*committed == OutputFile::Committed::kTargetExists);
      CHECK(read_file(path) == "old");
    }
    OutputFile out;
    REQUIRE(out.create(path, durable));
    REQUIRE(out.write("new"));
    auto replaced = out.commit(IfExists::kReplace, durable);
    REQUIRE(replaced);
    CHECK(*replaced == OutputFile::Committed::kWritten);
    CHECK(read_file(path) == "new");
    // Replaced by a rename (an anonymous one was linked under a temp name first): one name left.
    CHECK(list_names(dir.path()) == std::vector<std::string>{"out.txt"});
    CHECK(anonymous_files_under(dir.path()) == 0);
  }
}

TEST_CASE("output_file: discard and destruction remove the temp file") {
  TempDir dir;
  {
    OutputFile out;
    REQUIRE(out.create(dir / "a.txt", /*durable=*/true));
    REQUIRE(out.write("partial"));
    CHECK(temp_files_under(dir.path()).size() == 1);
  }
  CHECK(temp_files_under(dir.path()).empty());
  OutputFile out;
  REQUIRE(out.create(dir / "b.txt", /*durable=*/true));
  out.discard();
  CHECK(temp_files_under(dir.path()).empty());
  CHECK_FALSE(testing::fs::exists(dir / "b.txt"));
}

TEST_CASE("output_file: an anonymous output that is discarded or destroyed leaves nothing") {
  TempDir dir;
  {
    OutputFile out;
    REQUIRE(out.create(dir / "a.txt"));
    REQUIRE(out.write("partial"));
    CHECK(anonymous_files_under(dir.path()) == 1);
  }
  CHECK(anonymous_files_under(dir.path()) == 0);
  OutputFile out;
  REQUIRE(out.create(dir / "b.txt"));
  REQUIRE(out.write("partial"));
  out.discard();
  CHECK_FALSE(out.open());
  CHECK(anonymous_files_under(dir.path()) == 0);
  CHECK(testing::fs::is_empty(dir.path()));
}

TEST_CASE("output_file: each way of linking an anonymous output writes the same outputs") {
  const TmpfileLink before = set_tmpfile_link_for_testing(TmpfileLink::kUnknown);
  TmpfileLink learnt = TmpfileLink::kUnknown;
  for (TmpfileLink link :
       {TmpfileLink::kUnknown, TmpfileLink::kEmptyPath, TmpfileLink::kProcFd, TmpfileLink::kNone}) {
    CAPTURE(static_cast<int>(link));
    // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH before Linux 6.10: forced only where it was learnt.
    if (link == TmpfileLink::kEmptyPath && learnt != TmpfileLink::kEmptyPath) continue;
    set_tmpfile_link_for_testing(link);
    TempDir dir;
    write_file(dir / "old.txt", "old");
    for (const char* name : {"new.txt", "old.txt"}) {
      OutputFile out;
      REQUIRE(out.create(dir / name));
      // kNone: this process may not link such files, so a named temp file is used instead.
      CHECK(out.anonymous() == (link != TmpfileLink::kNone));
      CHECK(temp_files_under(dir.path()).size() == (link == TmpfileLink::kNone ? 1u : 0u));
      REQUIRE(out.write(name));
      auto committed = out.commit(IfExists::kReplace, false);
      REQUIRE(committed);
      CHECK(*committed == OutputFile::Committed::kWritten);
      CHECK(read_file(dir / name) == name);
    }
    CHECK(list_names(dir.path()) == std::vector<std::string>{"new.txt", "old.txt"});
    CHECK(anonymous_files_under(dir.path()) == 0);
    if (link == TmpfileLink::kUnknown) learnt = set_tmpfile_link_for_testing(link);
  }
  CHECK(learnt != TmpfileLink::kUnknown);
  // kUnknown was learnt from the first anonymous file: root, or Linux 6.10 or later, may use
  // AT_EMPTY_PATH; /proc/self/fd works for anyone where /proc is mounted.
  set_tmpfile_link_for_testing(TmpfileLink::kUnknown);
  {
    TempDir dir;
    OutputFile out;
    REQUIRE(out.create(dir / "x.txt"));
    CHECK(out.anonymous());
  }
  CHECK(set_tmpfile_link_for_testing(before) != TmpfileLink::kUnknown);
}

TEST_CASE("output_file: an error names the output and the cause") {
  TempDir dir;
  write_file(dir / "file", "not a folder");
  OutputFile out;
  Status st = out.create(dir / "file/out.txt");
  REQUIRE_FALSE(st);
  CHECK(st.error().message == "write " + dir / "file/out.txt" + ": Not a directory");
  CHECK(st.error().code == ErrorCode::kNotFound);
}

// The way anonymous outputs are linked now, left as it is.
TmpfileLink current_tmpfile_link() {
  const TmpfileLink now = set_tmpfile_link_for_testing(TmpfileLink::kUnknown);
  set_tmpfile_link_for_testing(now);
  return now;
}

// Restores the link way and clears injected faults when a test ends, whatever it did.
struct FaultGuard {
  TmpfileLink before = current_tmpfile_link();
  ~FaultGuard() {
    set_output_faults_for_testing(0, 0);
    set_tmpfile_link_for_testing(before);
  }
};

TEST_CASE("output_file: a close that fails after a replace's temp link leaves the old output") {
  FaultGuard guard;
  TempDir dir;
  write_file(dir / "out.txt", "old");
  OutputFile out;
  REQUIRE(out.create(dir / "out.txt"));
  REQUIRE(out.anonymous());
  REQUIRE(out.write("new"));
  set_output_faults_for_testing(0, EIO);
  auto committed = out.commit(IfExists::kReplace, false);
  set_output_faults_for_testing(0, 0);
  REQUIRE_FALSE(committed);
  CHECK(committed.error().message == "write " + dir / "out.txt" + ": Input/output error");
  CHECK(read_file(dir / "out.txt") == "old");  // closed before the rename: never replaced
  CHECK(list_names(dir.path()) == std::vector<std::string>{"out.txt"});
}

TEST_CASE("output_file: a close that fails after a direct link still leaves a written output") {
  FaultGuard guard;
  TempDir dir;
  OutputFile out;
  REQUIRE(out.create(dir / "new.txt"));
  REQUIRE(out.anonymous());
  REQUIRE(out.write("whole"));
  set_output_faults_for_testing(0, EIO);
  auto committed = out.commit(IfExists::kSkip, false);
  set_output_faults_for_testing(0, 0);
  // Every byte was written before the link, and these file systems flush nothing at close: the
  // output is the document's own (a failure would make its retry skip or fail on it).
  REQUIRE(committed);
  CHECK(*committed == OutputFile::Committed::kWritten);
  CHECK(read_file(dir / "new.txt") == "whole");
  CHECK(anonymous_files_under(dir.path()) == 0);
}

TEST_CASE("output_file: a folder on a file system not listed gets a named temp file") {
  FaultGuard guard;
  set_output_faults_for_testing(0, 0, /*foreign_fs=*/true);
  TempDir dir;
  OutputFile out;
  REQUIRE(out.create(dir / "x.txt"));
  CHECK_FALSE(out.anonymous());
  CHECK(temp_files_under(dir.path()).size() == 1);
  REQUIRE(out.write("x"));
  REQUIRE(out.commit(IfExists::kReplace, false));
  CHECK(read_file(dir / "x.txt") == "x");
  CHECK(current_tmpfile_link() == guard.before);  // nothing learnt or switched off
}

TEST_CASE("output_file: a refused link copies the output to a named temp file and stops linking") {
  FaultGuard guard;
  set_tmpfile_link_for_testing(TmpfileLink::kProcFd);
  TempDir dir;
  write_file(dir / "old.txt", "old");
  for (const char* name : {"new.txt", "old.txt"}) {
    set_tmpfile_link_for_testing(TmpfileLink::kProcFd);
    OutputFile out;
    REQUIRE(out.create(dir / name));
    REQUIRE(out.anonymous());
    const std::string big = make_content(200000, 7);  // more than one copy buffer
    REQUIRE(out.write(big));
    set_output_faults_for_testing(EACCES, 0);  // as a security module refusing links would
    auto committed = out.commit(IfExists::kReplace, false);
    set_output_faults_for_testing(0, 0);
    REQUIRE(committed);
    CHECK(*committed == OutputFile::Committed::kWritten);
    CHECK(read_file(dir / name) == big);
    CHECK(out.sha256_hex().value() == testing::sha256_hex(big));
    CHECK(current_tmpfile_link() == TmpfileLink::kNone);  // named temp files from now on
    // The output is the copy: its stat, not the written file's, goes to the lineage store.
    struct stat st;
    REQUIRE(::stat((dir / name).c_str(), &st) == 0);
    REQUIRE(out.copied_stat() != nullptr);
    CHECK(out.copied_stat()->st_ino == st.st_ino);
    CHECK(out.copied_stat()->st_size == static_cast<off_t>(big.size()));
  }
  CHECK(list_names(dir.path()) == std::vector<std::string>{"new.txt", "old.txt"});
  OutputFile next;
  REQUIRE(next.create(dir / "next.txt"));
  CHECK_FALSE(next.anonymous());
}

TEST_CASE("output_file: a probe that may not link leaves outputs to named temp files") {
  FaultGuard guard;
  set_tmpfile_link_for_testing(TmpfileLink::kUnknown);
  set_output_faults_for_testing(ENOENT, 0);  // no CAP_DAC_READ_SEARCH before Linux 6.10, no /proc
  TempDir dir;
  OutputFile out;
  REQUIRE(out.create(dir / "x.txt"));
  set_output_faults_for_testing(0, 0);
  CHECK_FALSE(out.anonymous());
  CHECK(current_tmpfile_link() == TmpfileLink::kNone);
  CHECK(temp_files_under(dir.path()).size() == 1);
  REQUIRE(out.write("x"));
  REQUIRE(out.commit(IfExists::kReplace, false));
  CHECK(read_file(dir / "x.txt") == "x");
}

TEST_CASE("output_file: an anonymous output meets a folder at its name or a removed folder") {
  TempDir dir;
  testing::fs::create_directories(dir / "out.txt");
  {
    OutputFile out;
    REQUIRE(out.create(dir / "out.txt"));
    REQUIRE(out.anonymous());
    REQUIRE(out.write("x"));
    auto replaced = out.commit(IfExists::kReplace, false);
    REQUIRE_FALSE(replaced);
    CHECK(replaced.error().message == "rename to " + dir / "out.txt" + ": Is a directory");
  }
  {
    OutputFile out;
    REQUIRE(out.create(dir / "out.txt"));
    REQUIRE(out.write("x"));
    auto skipped = out.commit(IfExists::kSkip, false);
    REQUIRE(skipped);
    CHECK(*skipped == OutputFile::Committed::kTargetExists);
  }
  CHECK(list_names(dir.path()) == std::vector<std::string>{"out.txt"});
  CHECK(testing::fs::is_directory(dir / "out.txt"));
  // Its folder looks empty while it is written, and may be removed meanwhile.
  OutputFile out;
  REQUIRE(out.create(dir / "sub/a.txt"));
  REQUIRE(out.anonymous());
  REQUIRE(out.write("a"));
  REQUIRE(::rmdir((dir / "sub").c_str()) == 0);
  auto gone = out.commit(IfExists::kReplace, false);
  REQUIRE_FALSE(gone);
  CHECK(gone.error().message == "write " + dir / "sub/a.txt" +
                                    " (its folder was removed while it was written): No such "
                                    "file or directory");
  CHECK(gone.error().code == ErrorCode::kNotFound);  // as a named temp file's create would fail
  CHECK(anonymous_files_under(dir.path()) == 0);
}

// The names inotify reported in `dir` since `fd` started watching it, as "EVENT name" lines.
std::vector<std::string> watched_events(int fd) {
  std::vector<std::string> events;
  alignas(struct inotify_event) char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      const auto* e = reinterpret_cast<const struct inotify_event*>(p);
      const std::string name = e->len > 0 ? e->name : "";
      if (e->mask & IN_CREATE) events.push_back("create " + name);
      if (e->mask & IN_MOVED_TO) events.push_back("moved_to " + name);
      p += sizeof(struct inotify_event) + e->len;
    }
  }
  return events;
}

TEST_CASE("output_file: a watcher sees a new output as one create and a replaced one as moved_to") {
  TempDir dir;
  write_file(dir / "old.txt", "old");
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::inotify_add_watch(fd, dir.path().c_str(), IN_CREATE | IN_MOVED_TO) >= 0);
  for (const char* name : {"new.txt", "old.txt"}) {
    OutputFile out;
    REQUIRE(out.create(dir / name));
    REQUIRE(out.write("whole"));
    REQUIRE(out.commit(IfExists::kReplace, false));
  }
  const std::vector<std::string> events = watched_events(fd);
  ::close(fd);
  REQUIRE(events.size() == 3);
  CHECK(events[0] == "create new.txt");  // the link of a whole file: nothing before it
  CHECK(events[1].rfind("create .old.txt.docpipe-tmp.", 0) == 0);  // a temp name: skip dot names
  CHECK(events[2] == "moved_to old.txt");
}

TEST_CASE("output_file: outputs are anonymous only on local file systems without a flush") {
  CHECK(anonymous_outputs_on(0x01021994));        // tmpfs
  CHECK(anonymous_outputs_on(0xEF53));            // ext2/3/4
  CHECK(anonymous_outputs_on(0x58465342));        // XFS
  CHECK(anonymous_outputs_on(0x9123683E));        // Btrfs
  CHECK_FALSE(anonymous_outputs_on(0x6969));      // NFS: close() flushes and reports errors
  CHECK_FALSE(anonymous_outputs_on(0x65735546));  // FUSE
  CHECK_FALSE(anonymous_outputs_on(0xFF534D42));  // CIFS
  CHECK_FALSE(anonymous_outputs_on(0));           // not told
}

TEST_CASE("output_file: a long file name still gets a temp name within NAME_MAX") {
  TempDir dir;
  const std::string name(250, 'n');
  OutputFile out;
  REQUIRE(out.create(dir / name, /*durable=*/true));
  CHECK(docpipe::base_name(out.temp_path()).size() <= 255);
  REQUIRE(out.write("long"));
  REQUIRE(out.commit(IfExists::kReplace, false));
  CHECK(read_file(dir / name) == "long");
  // An anonymous one replacing it is linked under such a temp name, then renamed over it.
  OutputFile again;
  REQUIRE(again.create(dir / name));
  REQUIRE(again.anonymous());
  REQUIRE(again.write("longer"));
  REQUIRE(again.commit(IfExists::kReplace, false));
  CHECK(read_file(dir / name) == "longer");
  CHECK(list_names(dir.path()) == std::vector<std::string>{name});
}

using docpipe::test::set_immutable;

bool can_set_immutable(const std::string& dir) {
  if (set_immutable(dir, true) && set_immutable(dir, false)) return true;
  const char* all = std::getenv("DOCPIPE_REQUIRE_ALL_TESTS");
  if (all != nullptr && *all != '\0') FAIL("cannot chattr +i here (needs root and ext4)");
  MESSAGE("skipped: cannot chattr +i here (needs root and ext4)");
  return false;
}

TEST_CASE("output_file: a symlinked sub-folder of the output folder is refused, nothing outside") {
  TempDir dir;
  testing::fs::create_directories(dir / "out");
  testing::fs::create_directories(dir / "elsewhere");
  testing::fs::create_symlink(dir / "elsewhere", dir / "out/sub");
  Result<DirFd> base = open_dir_path(dir / "out");
  REQUIRE(base);
  OutputFile out;
  Status st = out.create(dir / "out/sub/x.txt", OutputTarget{&*base, "sub/x.txt", nullptr});
  REQUIRE_FALSE(st);
  CHECK(st.error().message == "write " + dir / "out/sub/x.txt" + ": " + dir / "out/sub" +
                                  " is a symlink, refusing to write through it");
  CHECK(testing::fs::is_empty(dir / "elsewhere"));
  // A symlink where the output itself goes is replaced by the rename, never written through.
  testing::fs::create_symlink(dir / "elsewhere/victim", dir / "out/y.txt");
  REQUIRE(out.create(dir / "out/y.txt", OutputTarget{&*base, "y.txt", nullptr}));
  REQUIRE(out.write("y"));
  REQUIRE(out.commit(IfExists::kReplace, false));
  CHECK(testing::fs::is_empty(dir / "elsewhere"));
  CHECK(read_file(dir / "out/y.txt") == "y");
  CHECK(OutputFile::exists(OutputTarget{&*base, "y.txt", nullptr}));
  CHECK_FALSE(OutputFile::exists(OutputTarget{&*base, "sub/x.txt", nullptr}));
}

TEST_CASE(
    "output_file: outputs of one batch share their sub-folder, and a swap is refused after it") {
  TempDir dir;
  testing::fs::create_directories(dir / "out/sub");
  testing::fs::create_directories(dir / "elsewhere");
  Result<DirFd> base = open_dir_path(dir / "out");
  REQUIRE(base);
  SharedFolders shared;
  OutputFile a, b, c;
  REQUIRE(a.create(dir / "out/sub/a.txt", OutputTarget{&*base, "sub/a.txt", nullptr, &shared}));
  REQUIRE(b.create(dir / "out/sub/b.txt", OutputTarget{&*base, "sub/b.txt", nullptr, &shared}));
  // A missing folder is created, then shared too; the output folder itself needs no entry.
  REQUIRE(c.create(dir / "out/new/c.txt", OutputTarget{&*base, "new/c.txt", nullptr, &shared}));
  OutputFile top;
  REQUIRE(top.create(dir / "out/t.txt", OutputTarget{&*base, "t.txt", nullptr, &shared}));
  CHECK(shared.size() == 2);
  CHECK(a.folder_fd() == b.folder_fd());
  CHECK(a.folder_fd() != c.folder_fd());
  for (OutputFile* o : {&a, &b, &c, &top}) {
    REQUIRE(o->write("x"));
    REQUIRE(o->commit(IfExists::kReplace, /*sync_folder=*/true));
  }
  CHECK(read_file(dir / "out/sub/a.txt") == "x");
  CHECK(read_file(dir / "out/sub/b.txt") == "x");
  CHECK(read_file(dir / "out/new/c.txt") == "x");
  CHECK(temp_files_under(dir / "out").empty());

  // The next batch opens its folders afresh: a sub-folder swapped for a symlink meanwhile is
  // refused, never written through.
  shared.clear();
  testing::fs::rename(dir / "out/sub", dir / "moved");
  testing::fs::create_symlink(dir / "elsewhere", dir / "out/sub");
  OutputFile d;
  Status st = d.create(dir / "out/sub/d.txt", OutputTarget{&*base, "sub/d.txt", nullptr, &shared});
  REQUIRE_FALSE(st);
  CHECK(st.error().message.find("is a symlink, refusing to write through it") != std::string::npos);
  CHECK(testing::fs::is_empty(dir / "elsewhere"));
  CHECK(shared.size() == 0);
}

TEST_CASE(
    "output_file: a temp file its folder kept (read-only before the rename) is removed later") {
  TempDir dir;
  testing::fs::create_directories(dir / "out");
  if (!can_set_immutable(dir / "out")) return;
  const size_t before = LeftoverTemps::global().size();
  {
    // An anonymous output cannot be linked there either, and leaves nothing behind.
    OutputFile anon;
    REQUIRE(anon.create(dir / "out/a.txt"));
    REQUIRE(anon.write("a"));
    REQUIRE(set_immutable(dir / "out", true));
    const TmpfileLink learnt = current_tmpfile_link();
    auto refused = anon.commit(IfExists::kReplace, false);
    CHECK_FALSE(refused);
    CHECK(anonymous_files_under(dir / "out") == 0);
    // Its named temp file was refused too: the folder, not links, is at fault.
    CHECK(current_tmpfile_link() == learnt);
    CHECK(LeftoverTemps::global().size() == before);
    REQUIRE(set_immutable(dir / "out", false));
    CHECK(testing::fs::is_empty(dir / "out"));
  }
  OutputFile out;
  REQUIRE(out.create(dir / "out/a.txt", /*durable=*/true));
  REQUIRE(out.write("a"));
  const std::string temp = out.temp_path();
  REQUIRE(set_immutable(dir / "out", true));
  auto committed = out.commit(IfExists::kReplace, false);
  CHECK_FALSE(committed);
  CHECK(testing::fs::exists(temp));  // neither renamed nor removable
  CHECK(LeftoverTemps::global().size() == before + 1);
  CHECK(LeftoverTemps::global().retry() == 0);  // still read-only: kept for later
  REQUIRE(set_immutable(dir / "out", false));
  CHECK(LeftoverTemps::global().retry() == 1);
  CHECK_FALSE(testing::fs::exists(temp));
  CHECK(LeftoverTemps::global().size() == before);
}

TEST_CASE("output_file: leftover temp files are kept in their store across restarts") {
  TempDir dir;
  testing::fs::create_directories(dir / "out");
  write_file(dir / "out/.a.txt.docpipe-tmp.abcdefabcdef", "left");
  write_file(dir / "out/not-a-temp", "keep");
  const std::string store = dir / "leftover-temps.json";
  {
    LeftoverTemps first;
    first.set_store(store);
    first.add(dir / "out", ".a.txt.docpipe-tmp.abcdefabcdef");
    first.add(dir / "out", "not-a-temp");  // never anything but a docpipe temp name
    CHECK(first.size() == 1);
  }
  REQUIRE(testing::fs::exists(store));
  LeftoverTemps second;
  second.set_store(store);
  CHECK(second.size() == 1);
  CHECK(second.retry() == 1);
  CHECK_FALSE(testing::fs::exists(dir / "out/.a.txt.docpipe-tmp.abcdefabcdef"));
  CHECK(testing::fs::exists(dir / "out/not-a-temp"));
  CHECK_FALSE(testing::fs::exists(store));  // an empty list leaves no file
}

}  // namespace
}  // namespace docpipe
