// open_output_folder (core/document_source.h): the job's output folder, opened for work the
// daemon does there on the job's behalf (removing a crash's temp files at resume).

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/document_source.h"
#include "core/fs_util.h"
#include "tests/support/temp_folder.h"

namespace docpipe {
namespace {

namespace fs = std::filesystem;

TEST_CASE("output folder: the folder opened for the daemon's work is the job's own") {
  test::TempFolder tmp("/tmp", "outfolder");
  JobSpec spec;
  spec.output.root = tmp.root() + "/outputs";
  spec.output.dir = spec.output.real_dir = tmp.root() + "/outputs/out";
  fs::create_directories(spec.output.dir);
  std::ofstream(spec.output.dir + "/.a.docpipe-tmp.aaaaaaaaaaaa") << "x";
  auto opened = open_output_folder(spec);
  REQUIRE(opened.has_value());
  CHECK(remove_docpipe_temp_files_at(::dup(opened->fd())) == 1);
  CHECK_FALSE(fs::exists(spec.output.dir + "/.a.docpipe-tmp.aaaaaaaaaaaa"));

  // Swapped for a symlink out of its allowed root (as a submitter could, between runs): refused,
  // so nothing outside is touched.
  fs::create_directories(tmp.root() + "/elsewhere");
  std::ofstream(tmp.root() + "/elsewhere/.b.docpipe-tmp.bbbbbbbbbbbb") << "x";
  fs::remove_all(spec.output.dir);
  fs::create_directory_symlink(tmp.root() + "/elsewhere", spec.output.dir);
  CHECK_FALSE(open_output_folder(spec).has_value());
  CHECK(fs::exists(tmp.root() + "/elsewhere/.b.docpipe-tmp.bbbbbbbbbbbb"));
}

}  // namespace
}  // namespace docpipe
