// Paths resolved beneath an open folder (core/safe_fs.h): symlinks that lead out are refused with
// openat2 and with the O_NOFOLLOW walk that replaces it on kernels without it; folders are created
// one at a time without following symlinks; the submitter's rights are checked on the way.

#include "core/safe_fs.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace docpipe {
namespace {

namespace fs = std::filesystem;

struct SafeFsFixture {
  SafeFsFixture() {
    char tmpl[] = "/tmp/docpipe-safefs-XXXXXX";
    root = ::mkdtemp(tmpl);
    ::chmod(root.c_str(), 0755);
    fs::create_directories(root + "/base/in");
    fs::create_directories(root + "/outside");
    std::ofstream(root + "/base/in/a.txt") << "inside";
    std::ofstream(root + "/outside/s.txt") << "secret";
    fs::create_symlink("in/a.txt", root + "/base/rel_in.txt");
    fs::create_symlink(root + "/outside/s.txt", root + "/base/abs_out.txt");
    fs::create_symlink("../outside", root + "/base/rel_out");
    Result<DirFd> b = open_dir_path(root + "/base");
    REQUIRE(b);
    base = std::move(*b);
  }
  ~SafeFsFixture() {
    set_openat2_disabled_for_testing(false);
    fs::remove_all(root);
  }

  std::string read_beneath(const std::string& rel, std::string* error = nullptr) {
    Result<int> fd = open_beneath(base, rel, O_RDONLY, "read");
    if (!fd) {
      if (error != nullptr) *error = fd.error().message;
      return "<refused>";
    }
    char buf[64];
    ssize_t n = ::read(*fd, buf, sizeof buf);
    ::close(*fd);
    return std::string(buf, n > 0 ? static_cast<size_t>(n) : 0);
  }

  std::string root;
  DirFd base;
};

TEST_CASE("safe fs: open_beneath follows links that stay beneath and refuses those leading out") {
  SafeFsFixture f;
  CHECK(f.read_beneath("in/a.txt") == "inside");
  CHECK(f.read_beneath("rel_in.txt") == "inside");
  std::string error;
  CHECK(f.read_beneath("abs_out.txt", &error) == "<refused>");
  CHECK(error == f.root + "/base/abs_out.txt: leads outside " + f.root +
                     "/base (through a symlink or \"..\"), refusing to read it");
  CHECK(f.read_beneath("rel_out/s.txt") == "<refused>");
  CHECK(f.read_beneath("in/../../outside/s.txt") == "<refused>");
}

TEST_CASE("safe fs: without openat2 the walk refuses every symlink and every \"..\"") {
  SafeFsFixture f;
  set_openat2_disabled_for_testing(true);
  CHECK(f.read_beneath("in/a.txt") == "inside");
  std::string error;
  CHECK(f.read_beneath("rel_out/s.txt", &error) == "<refused>");
  CHECK(error == f.root + "/base/rel_out is a symlink, refusing to read through it");
  CHECK(f.read_beneath("abs_out.txt", &error) == "<refused>");
  CHECK(f.read_beneath("in/../../outside/s.txt", &error) == "<refused>");
  CHECK(error.find("\"..\" leads outside") != std::string::npos);
}

TEST_CASE("safe fs: walk_dirs_beneath creates missing folders and never writes through a link") {
  SafeFsFixture f;
  WalkOptions opts;
  opts.create = true;
  Result<DirFd> made = walk_dirs_beneath(f.base, "new/deeper", opts);
  REQUIRE(made);
  CHECK(made->path() == f.root + "/base/new/deeper");
  CHECK(fs::is_directory(f.root + "/base/new/deeper"));
  Result<DirFd> through = walk_dirs_beneath(f.base, "rel_out/x", opts);
  REQUIRE_FALSE(through);
  CHECK(through.error().message ==
        f.root + "/base/rel_out is a symlink, refusing to write through it");
  CHECK_FALSE(fs::exists(f.root + "/outside/x"));
}

TEST_CASE("safe fs: walks check the submitter's search and write rights, naming path and uid") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root to make folders owned by others");
    return;
  }
  SafeFsFixture f;
  const Credentials who{4001, 4001, {}};
  fs::create_directories(f.root + "/base/closed/inner");
  ::chmod((f.root + "/base/closed").c_str(), 0700);
  fs::create_directories(f.root + "/base/ro");
  ::chmod((f.root + "/base/ro").c_str(), 0755);

  WalkOptions opts;
  opts.who = &who;
  Result<DirFd> r = walk_dirs_beneath(f.base, "closed/inner", opts);
  REQUIRE_FALSE(r);
  CHECK(r.error().message ==
        f.root + "/base/closed: the submitter (uid 4001) may not search this folder");
  opts.create = true;
  opts.want_last = W_OK | X_OK;
  r = walk_dirs_beneath(f.base, "ro/sub", opts);
  REQUIRE_FALSE(r);
  CHECK(r.error().message ==
        f.root +
            "/base/ro: the submitter (uid 4001) may not create files in and search this folder");
  CHECK_FALSE(fs::exists(f.root + "/base/ro/sub"));
  ::chown((f.root + "/base/ro").c_str(), 4001, 4001);
  CHECK(walk_dirs_beneath(f.base, "ro/sub/deeper", opts));
  // Folders made for the submitter are theirs, so later documents may write into them.
  struct stat st;
  REQUIRE(::stat((f.root + "/base/ro/sub/deeper").c_str(), &st) == 0);
  CHECK(st.st_uid == 4001);
  CHECK(walk_dirs_beneath(f.base, "ro/sub/deeper", opts));

  CHECK(check_path_access(f.root + "/base/closed/inner", who, X_OK, "read").error().message ==
        f.root + "/base/closed: the submitter (uid 4001) may not search this folder");
  CHECK(check_path_access(f.root + "/base/ro", who, W_OK | X_OK, "write"));
}

TEST_CASE("safe fs: a daemon that may not chown grants the submitter its folders by an ACL") {
  if (::geteuid() != 0) {
    if (const char* all = std::getenv("DOCPIPE_REQUIRE_ALL_TESTS"); all != nullptr && *all) {
      FAIL("needs root to act as two other users and DOCPIPE_REQUIRE_ALL_TESTS is set");
    }
    MESSAGE("skipped: needs root to act as two other users");
    return;
  }
  SafeFsFixture f;
  // The daemon runs as uid 4101 (not root: it may not chown); the submitter is uid 4102. Both
  // may create folders in out/ (mode 0777), as a group-writable output folder allows.
  fs::create_directories(f.root + "/base/out");
  ::chmod((f.root + "/base/out").c_str(), 0777);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(4101) != 0 || ::setuid(4101) != 0) ::_exit(10);
    const Credentials who{4102, 4102, {}};
    WalkOptions opts;
    opts.who = &who;
    opts.create = true;
    opts.want_last = W_OK | X_OK;
    // Made now, then walked again by the job's next document: both must be allowed.
    if (!walk_dirs_beneath(f.base, "out/a/b", opts)) ::_exit(11);
    if (!walk_dirs_beneath(f.base, "out/a/b", opts)) ::_exit(12);
    if (!walk_dirs_beneath(f.base, "out/a/b/c", opts)) ::_exit(13);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  struct stat st;
  REQUIRE(::stat((f.root + "/base/out/a/b").c_str(), &st) == 0);
  CHECK(st.st_uid == 4101);  // still the daemon's: the submitter's rights come from the ACL
  CHECK(::getxattr((f.root + "/base/out/a/b").c_str(), "system.posix_acl_access", nullptr, 0) > 0);
}

TEST_CASE("safe fs: rename_in with noreplace never replaces") {
  SafeFsFixture f;
  std::ofstream(f.root + "/base/in/b.txt") << "b";
  Result<DirFd> in = open_dir_beneath(f.base, "in", "write");
  REQUIRE(in);
  CHECK(rename_in(in->fd(), "b.txt", "a.txt", true) == EEXIST);
  CHECK(f.read_beneath("in/a.txt") == "inside");
  CHECK(rename_in(in->fd(), "b.txt", "a.txt", false) == 0);
  CHECK(f.read_beneath("in/a.txt") == "b");
}

}  // namespace
}  // namespace docpipe
