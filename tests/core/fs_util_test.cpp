// The start-up removal of leftover temp files (core/fs_util.h): only docpipe temp names, in every
// folder below, never through a symlinked folder.

#include "core/fs_util.h"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace docpipe {
namespace {

namespace fs = std::filesystem;

TEST_CASE("fs util: leftover temp files are removed below a folder, never through a symlink") {
  char tmpl[] = "/tmp/docpipe-fsutil-XXXXXX";
  const std::string root = ::mkdtemp(tmpl);
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
  fs::remove_all(root);
}

}  // namespace
}  // namespace docpipe
