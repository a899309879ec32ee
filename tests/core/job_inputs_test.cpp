// The file-system half of job validation (check_job_inputs in core/job_spec.h, defined in
// core/job_inputs.cc), on real temp folders: existence, allowed roots, symlinks, the submitter's
// rights and outputs inside the input folder.

#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/job_spec.h"
#include "tests/core/job_spec_support.h"

namespace fs = std::filesystem;
using docpipe::FieldErrors;
using docpipe::JobSpec;
using docpipe::test::lines;
using docpipe::test::parse_ok;
using nlohmann::json;

namespace {

struct CheckFixture {
  CheckFixture() {
    char tmpl[] = "/tmp/docpipe-jobcheck-XXXXXX";
    root = ::mkdtemp(tmpl);
    fs::create_directories(root + "/in");
    fs::create_directories(root + "/out");
  }
  ~CheckFixture() { fs::remove_all(root); }

  void put(const std::string& rel, const std::string& content = "x") {
    fs::path p = fs::path(root) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
  }

  JobSpec job(json input, json output = nullptr) const {
    json doc = {{"input", std::move(input)},
                {"output", output.is_null() ? json{{"dir", "out"}} : std::move(output)}};
    return parse_ok(doc.dump(), {"j", root});
  }

  // Runs check_job_inputs; returns the count and the errors as lines.
  std::pair<size_t, std::vector<std::string>> check(JobSpec spec,
                                                    std::vector<std::string> in_roots = {"/"},
                                                    std::vector<std::string> out_roots = {"/"}) {
    FieldErrors errors;
    size_t n = docpipe::check_job_inputs(spec, in_roots, out_roots, errors);
    return {n, lines(errors)};
  }

  std::string root;
};

using Checked = std::pair<size_t, std::vector<std::string>>;

}  // namespace

TEST_CASE("job spec check: counts the matching documents of a valid job") {
  CheckFixture f;
  f.put("in/a.md");
  f.put("in/sub/b.md");
  f.put("in/sub/c.txt");
  f.put("in/drafts/d.md");
  CHECK(f.check(f.job({{"dir", "in"}, {"include", {"**/*.md"}}, {"exclude", {"drafts/**"}}})) ==
        Checked{2, {}});
  CHECK(f.check(f.job({{"files", {"in/a.md", "in/sub/c.txt"}}})) == Checked{2, {}});
}

TEST_CASE("job spec check: inputs of one folder whose outputs would share a name are refused") {
  CheckFixture f;
  f.put("in/a.md");
  f.put("in/sub/a.md");
  f.put("in/sub/deeper/x.md");
  f.put("in/sub/b.md");
  f.put("in/c.md");
  json out = {{"dir", "out"}, {"extension", ".txt"}};
  // Same stems in different folders are fine.
  CHECK(f.check(f.job({{"dir", "in"}}, out)) == Checked{5, {}});
  // a.txt beside a.md: both would be a.txt. The sub-folder walked between them is no excuse.
  f.put("in/sub/a.txt");
  f.put("in/sub/deeper/y.md");
  f.put("in/c.html");
  auto [n, errors] = f.check(f.job({{"dir", "in"}}, out));
  CHECK(n == 8);
  REQUIRE(errors.size() == 2);
  std::sort(errors.begin(), errors.end());
  CHECK(errors[0].starts_with("output.extension: inputs "));
  CHECK(errors[0].find("would both be written to c.txt (below output.dir)") != std::string::npos);
  CHECK(errors[1].find("sub/a.md") != std::string::npos);
  CHECK(errors[1].find("sub/a.txt") != std::string::npos);
  CHECK(errors[1].find("would both be written to sub/a.txt") != std::string::npos);
  // Without output.extension, names are kept and nothing collides.
  CHECK(f.check(f.job({{"dir", "in"}})) == Checked{8, {}});
  // An exclude that keeps one of each pair out settles it.
  CHECK(f.check(f.job({{"dir", "in"}, {"exclude", {"**/*.txt", "*.html"}}}, out)) ==
        Checked{6, {}});
}

TEST_CASE("job spec check: a folder of many colliding outputs reports ten and a count") {
  CheckFixture f;
  for (int i = 0; i < 15; ++i) {
    f.put("in/d" + std::to_string(i) + ".md");
    f.put("in/d" + std::to_string(i) + ".txt");
  }
  auto [n, errors] = f.check(f.job({{"dir", "in"}}, {{"dir", "out"}, {"extension", ".txt"}}));
  CHECK(n == 30);
  REQUIRE(errors.size() == 11);
  CHECK(errors.back() == "output.extension: ... and 5 more inputs whose outputs would collide");
}

TEST_CASE("job spec check: a missing input folder or file is named") {
  CheckFixture f;
  f.put("in/a.md");
  f.put("plain");
  CHECK(f.check(f.job({{"dir", "nope"}})) ==
        Checked{0, {"input.dir: no such directory: " + f.root + "/nope"}});
  CHECK(f.check(f.job({{"dir", "plain"}})) ==
        Checked{0, {"input.dir: not a directory: " + f.root + "/plain"}});
  CHECK(f.check(f.job({{"files", {"in/a.md", "in/gone.md", "in"}}})) ==
        Checked{1,
                {"input.files[1]: no such file: " + f.root + "/in/gone.md",
                 "input.files[2]: not a regular file: " + f.root + "/in"}});
}

TEST_CASE("job spec check: no matching document is an error naming the globs") {
  CheckFixture f;
  f.put("in/a.txt");
  f.put("in/drafts/b.md");
  CHECK(f.check(f.job({{"dir", "in"}, {"include", {"**/*.md"}}})) == Checked{1, {}});
  CHECK(f.check(f.job({{"dir", "in"}, {"include", {"**/*.md"}}, {"exclude", {"drafts/**"}}})) ==
        Checked{0,
                {"input: no documents match include [\"**/*.md\"] exclude [\"drafts/**\"] in " +
                 f.root + "/in"}});
  CHECK(f.check(f.job({{"dir", "in"}, {"include", {"*.pdf"}}})) ==
        Checked{0, {"input: no documents match include [\"*.pdf\"] in " + f.root + "/in"}});
}

TEST_CASE("job spec check: input and output must stay within the allowed roots") {
  CheckFixture f;
  f.put("in/a.md");
  f.put("elsewhere/b.md");
  const std::string in_root = f.root + "/in";
  const std::string out_root = f.root + "/out";

  CHECK(f.check(f.job({{"dir", "in"}}), {in_root}, {out_root}) == Checked{1, {}});
  // ".." is resolved before the check, lexically.
  CHECK(f.check(f.job({{"dir", "in/../elsewhere"}}), {in_root}, {out_root}) ==
        Checked{0,
                {"input.dir: " + f.root + "/elsewhere is outside the allowed input roots (" +
                 in_root + ")"}});
  CHECK(f.check(f.job({{"files", {"elsewhere/b.md"}}}), {in_root, "/nonexistent"}, {out_root}) ==
        Checked{
            0,
            {"input.files[0]: " + f.root + "/elsewhere/b.md is outside the allowed input roots (" +
             in_root + ", /nonexistent)"}});
  CHECK(f.check(f.job({{"dir", "in"}}, {{"dir", "/etc"}}), {in_root}, {out_root}) ==
        Checked{1, {"output.dir: /etc is outside the allowed output roots (" + out_root + ")"}});
  // An output folder still to be created is judged by its nearest existing ancestor.
  CHECK(f.check(f.job({{"dir", "in"}}, {{"dir", "out/new/deeper"}}), {in_root}, {out_root}) ==
        Checked{1, {}});
}

TEST_CASE("job spec check: symlinks cannot escape the allowed roots") {
  CheckFixture f;
  f.put("in/a.md");
  f.put("secret/s.md");
  const std::string in_root = f.root + "/in";
  const std::string out_root = f.root + "/out";
  fs::create_symlink(f.root + "/secret", in_root + "/dir_link");
  fs::create_symlink(f.root + "/secret", out_root + "/escape");
  fs::create_symlink(f.root + "/secret/s.md", in_root + "/file_link.md");

  CHECK(f.check(f.job({{"dir", "in/dir_link"}}), {in_root}, {out_root}) ==
        Checked{0,
                {"input.dir: " + in_root + "/dir_link (resolves to " + f.root +
                 "/secret) is outside the allowed input roots (" + in_root + ")"}});
  CHECK(f.check(f.job({{"dir", "in"}}, {{"dir", "out/escape/new"}}), {in_root}, {out_root}) ==
        Checked{1,
                {"input.dir: " + in_root +
                     "/file_link.md: symlink points outside the input "
                     "folder (to " +
                     f.root + "/secret/s.md), skipped",
                 "output.dir: " + out_root + "/escape/new (resolves to " + f.root +
                     "/secret/new) is outside the allowed output roots (" + out_root + ")"}});
}

TEST_CASE("job spec check: an output folder must be a folder") {
  CheckFixture f;
  f.put("in/a.md");
  f.put("out/file");
  CHECK(f.check(f.job({{"dir", "in"}}, {{"dir", "out/file"}})) ==
        Checked{1, {"output.dir: not a directory: " + f.root + "/out/file"}});
  CHECK(f.check(f.job({{"dir", "in"}}, {{"dir", "out/file/x/y"}})) ==
        Checked{1,
                {"output.dir: cannot create " + f.root + "/out/file/x/y: " + f.root +
                 "/out/file is not a directory"}});
}

TEST_CASE("job spec check: outputs inside the input folder must be kept out of the walk") {
  CheckFixture f;
  f.put("in/a.md");
  CHECK(f.check(f.job({{"dir", "in"}}, {{"dir", "in/out"}})) ==
        Checked{1,
                {"output.dir: " + f.root + "/in/out is inside the input folder " + f.root +
                 "/in and the include patterns reach it; add an exclude such as \"out/**\" or "
                 "choose another folder"}});
  CHECK(f.check(f.job({{"dir", "in"}, {"exclude", {"out/**"}}}, {{"dir", "in/out"}})) ==
        Checked{1, {}});
  CHECK(f.check(f.job({{"dir", "in"}, {"include", {"*.md"}}}, {{"dir", "in/out"}})) ==
        Checked{1, {}});
  CHECK(f.check(f.job({{"dir", "in"}}, {{"dir", "in"}})) ==
        Checked{1,
                {"output.dir: is the input folder " + f.root +
                 "/in; outputs would be read back as inputs"}});
}

TEST_CASE("job spec check: the submitter must be able to read the input and write the output") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root (folders the submitter may not use)");
    return;
  }
  CheckFixture f;
  f.put("in/a.md");
  f.put("private/in/b.md");
  f.put("files/c.md");
  f.put("files/d.md");
  ::chmod(f.root.c_str(), 0755);
  ::chmod((f.root + "/in").c_str(), 0755);
  ::chmod((f.root + "/in/a.md").c_str(), 0644);
  ::chmod((f.root + "/private").c_str(), 0700);
  ::chmod((f.root + "/out").c_str(), 0755);  // root's: the submitter may not create in it
  fs::create_directories(f.root + "/mine");
  ::chown((f.root + "/mine").c_str(), 4001, 4001);
  ::chmod((f.root + "/files").c_str(), 0755);
  ::chmod((f.root + "/files/c.md").c_str(), 0644);
  ::chmod((f.root + "/files/d.md").c_str(), 0600);
  auto submitted = [&](JobSpec spec) {
    spec.submitter = docpipe::Credentials{4001, 4001, {}};
    return spec;
  };

  CHECK(f.check(submitted(f.job({{"dir", "private/in"}}, {{"dir", "mine/new"}}))) ==
        Checked{0,
                {"input.dir: " + f.root +
                 "/private: the submitter (uid 4001) may not search "
                 "this folder"}});
  CHECK(f.check(submitted(f.job({{"dir", "in"}}, {{"dir", "out/new"}}))) ==
        Checked{1,
                {"output.dir: " + f.root +
                 "/out: the submitter (uid 4001) may not create files "
                 "in and search this folder"}});
  CHECK(f.check(submitted(f.job({{"files", {"files/c.md", "files/d.md"}}}, {{"dir", "mine"}}))) ==
        Checked{1,
                {"input.files[1]: " + f.root +
                 "/files/d.md: the submitter (uid 4001) may not read this file"}});
  CHECK(f.check(submitted(f.job({{"dir", "in"}}, {{"dir", "mine/new"}}))) == Checked{1, {}});
  // Without a submitter the daemon's own rights decide, as before.
  CHECK(f.check(f.job({{"dir", "private/in"}}, {{"dir", "out/new"}})) == Checked{1, {}});
}

TEST_CASE("job spec check: the roots holding input and output are recorded for the job's start") {
  CheckFixture f;
  f.put("in/sub/a.md");
  JobSpec spec = f.job({{"dir", "in/sub"}}, {{"dir", "out/new"}});
  docpipe::FieldErrors errors;
  CHECK(docpipe::check_job_inputs(spec, {"/", f.root + "/in"}, {f.root}, errors) == 1);
  CHECK(errors.empty());
  CHECK(spec.input.root == f.root + "/in");  // the most specific root
  CHECK(spec.input.real_dir == f.root + "/in/sub");
  CHECK(spec.output.root == f.root);
  CHECK(spec.output.real_dir == f.root + "/out/new");
}

// A check the daemon could not make for want of descriptors says nothing about the job: it is
// flagged as a shortage, so that the caller tries again instead of rejecting the job.
TEST_CASE("job spec check: a walk cut short by the daemon's descriptor limit is a shortage") {
  CheckFixture f;
  f.put("in/a.md");
  JobSpec spec = f.job({{"dir", "in"}});
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
  const int lowest_free = ::dup(0);  // new descriptors take the lowest free number
  REQUIRE(lowest_free >= 0);
  ::close(lowest_free);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(lowest_free);  // no new descriptor below the limit
  FieldErrors errors;
  std::optional<docpipe::Error> shortage;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  docpipe::check_job_inputs(spec, {"/"}, {"/"}, errors, true, &shortage);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &old) == 0);
  REQUIRE(shortage.has_value());
  CHECK(shortage->sys_errno == EMFILE);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].path == "input.dir");
  CHECK(errors[0].reason.find("Too many open files") != std::string::npos);

  // A submitter's rights are checked folder by folder, before any walk: a shortage there too.
  if (::geteuid() == 0) {
    JobSpec restricted = f.job({{"dir", "in"}});
    restricted.submitter = docpipe::Credentials{4001, 4001, {}};
    FieldErrors access_errors;
    std::optional<docpipe::Error> access_shortage;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
    docpipe::check_job_inputs(restricted, {"/"}, {"/"}, access_errors, true, &access_shortage);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &old) == 0);
    REQUIRE(access_shortage.has_value());
    CHECK(access_shortage->sys_errno == EMFILE);
    CHECK_FALSE(access_errors.empty());
  }

  // With descriptors back, the same job checks clean; a missing folder is no shortage.
  errors.clear();
  shortage.reset();
  CHECK(docpipe::check_job_inputs(spec, {"/"}, {"/"}, errors, true, &shortage) == 1);
  CHECK(errors.empty());
  JobSpec missing = f.job({{"dir", "gone"}});
  docpipe::check_job_inputs(missing, {"/"}, {"/"}, errors, true, &shortage);
  CHECK_FALSE(errors.empty());
  CHECK_FALSE(shortage.has_value());
}
