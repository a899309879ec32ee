// Path splitting, as the output writer, the spool and the temp-file names use it.

#include "core/path_util.h"

#include <doctest/doctest.h>

#include "core/fs_util.h"

using docpipe::base_name;
using docpipe::is_docpipe_temp_name;
using docpipe::parent_path;
using docpipe::temp_path_for;

TEST_CASE("path_util: parent_path and base_name split a path") {
  CHECK(parent_path("/a/b/c") == "/a/b");
  CHECK(parent_path("/c") == "/");
  CHECK(parent_path("c") == "");
  CHECK(base_name("/a/b/c") == "c");
  CHECK(base_name("c") == "c");
}

TEST_CASE("fs_util: temp names are hidden, recognised, distinct and within NAME_MAX") {
  const std::string a = temp_path_for("/out/d", "report.json");
  const std::string b = temp_path_for("/out/d/", "report.json");
  CHECK(parent_path(a) == "/out/d");
  CHECK(base_name(a).rfind(".report.json.docpipe-tmp.", 0) == 0);
  CHECK(is_docpipe_temp_name(base_name(a)));
  CHECK(a != b);
  CHECK(base_name(temp_path_for("/x", std::string(300, 'n'))).size() <= 255);
  // A job or document whose own name merely contains ".tmp." is not a temp file.
  CHECK_FALSE(is_docpipe_temp_name("nightly.tmp.2024.json"));
  CHECK_FALSE(is_docpipe_temp_name("report.docpipe-tmp.json"));
}
