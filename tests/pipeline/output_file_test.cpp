#include "pipeline/output_file.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include "core/path_util.h"
#include "pipeline/sha256.h"
#include "tests/pipeline/pipeline_test_support.h"

namespace docpipe {
namespace {

using testing::read_file;
using testing::temp_files_under;
using testing::TempDir;
using testing::write_file;

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

TEST_CASE("output_file: the output appears only at commit, with its content and digest") {
  TempDir dir;
  const std::string path = dir / "out.txt";
  OutputFile out;
  REQUIRE(out.create(path));
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

TEST_CASE("output_file: replace overwrites, skip and fail never clobber an existing file") {
  TempDir dir;
  const std::string path = dir / "out.txt";
  write_file(path, "old");
  for (IfExists mode : {IfExists::kSkip, IfExists::kFail}) {
    OutputFile out;
    REQUIRE(out.create(path));
    REQUIRE(out.write("new"));
    auto committed = out.commit(mode, false);
    REQUIRE(committed);
    CHECK(*committed == OutputFile::Committed::kTargetExists);
    CHECK(read_file(path) == "old");
  }
  OutputFile out;
  REQUIRE(out.create(path));
  REQUIRE(out.write("new"));
  REQUIRE(out.commit(IfExists::kReplace, false));
  CHECK(read_file(path) == "new");
  CHECK(temp_files_under(dir.path()).empty());
}

TEST_CASE("output_file: discard and destruction remove the temp file") {
  TempDir dir;
  {
    OutputFile out;
    REQUIRE(out.create(dir / "a.txt"));
    REQUIRE(out.write("partial"));
    CHECK(temp_files_under(dir.path()).size() == 1);
  }
  CHECK(temp_files_under(dir.path()).empty());
  OutputFile out;
  REQUIRE(out.create(dir / "b.txt"));
  out.discard();
  CHECK(temp_files_under(dir.path()).empty());
  CHECK_FALSE(testing::fs::exists(dir / "b.txt"));
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

TEST_CASE("output_file: a long file name still gets a temp name within NAME_MAX") {
  TempDir dir;
  const std::string name(250, 'n');
  OutputFile out;
  REQUIRE(out.create(dir / name));
  CHECK(docpipe::base_name(out.temp_path()).size() <= 255);
  REQUIRE(out.write("long"));
  REQUIRE(out.commit(IfExists::kReplace, false));
  CHECK(read_file(dir / name) == "long");
}

}  // namespace
}  // namespace docpipe
