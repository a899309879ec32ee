// input.after_success / after_failure (core/input_actions.h): parsing and validation by JSON path,
// and InputActor on a real folder: only the file that was read is acted on, through folders
// opened without following symlinks, with the submitter's rights, never clobbering a name, and
// idempotently when resuming after a crash.

#include "core/input_actions.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "core/journal_record.h"
#include "core/safe_fs.h"
#include "tests/core/job_spec_support.h"
#include "tests/support/temp_folder.h"

namespace docpipe {
namespace {

using test::TempFolder;

std::string job_text(const std::string& input_extra) {
  return R"({"input":{"dir":"/in")" + input_extra + R"(},"output":{"dir":"/out"}})";
}

TEST_CASE("input actions: keep delete and move parse and default to keep") {
  JobSpec plain = test::parse_ok(job_text(""));
  CHECK(plain.input.after_success.kind == InputActionKind::kKeep);
  CHECK(plain.input.after_failure.kind == InputActionKind::kKeep);
  CHECK_FALSE(plain.input.acts());
  JobSpec spec = test::parse_ok(
      job_text(R"(,"after_success":"delete","after_failure":"move:/srv/bad/../quarantine/")"));
  CHECK(spec.input.after_success.kind == InputActionKind::kDelete);
  CHECK(spec.input.after_failure.kind == InputActionKind::kMove);
  CHECK(spec.input.after_failure.dir == "/srv/quarantine");
  CHECK(spec.input.acts());
  CHECK_FALSE(test::parse_ok(job_text(R"(,"after_success":"keep")")).input.acts());
}

TEST_CASE("input actions: bad values are errors named by their JSON path") {
  CHECK(test::parse_errors(job_text(R"(,"after_success":"trash")")) ==
        std::vector<std::string>{"input.after_success: expected \"keep\", \"delete\" or "
                                 "\"move:<dir>\" (an absolute folder), got \"trash\""});
  CHECK(test::parse_errors(job_text(R"(,"after_failure":"move:rel/dir")")) ==
        std::vector<std::string>{
            "input.after_failure: the move folder must be an absolute path, got \"rel/dir\""});
  CHECK(test::parse_errors(job_text(R"(,"after_failure":"move:")")).size() == 1);
  CHECK(test::parse_errors(job_text(R"(,"after_success":1)")) ==
        std::vector<std::string>{"input.after_success: expected \"keep\", \"delete\" or "
                                 "\"move:<dir>\" (an absolute folder), got 1"});
  CHECK(test::parse_errors(job_text(R"(,"after_sucess":"delete")")) ==
        std::vector<std::string>{"input.after_sucess: unknown key"});
}

TEST_CASE("input actions: a move folder outside the roots or inside the input folder is refused") {
  TempFolder tmp;
  const std::string root = std::filesystem::canonical(tmp.root()).string();
  std::filesystem::create_directories(root + "/in");
  TempFolder::write(root + "/in/a.txt", "a");
  std::filesystem::create_directories(root + "/elsewhere");
  auto check = [&](const std::string& move_dir, const std::vector<std::string>& out_roots) {
    JobSpec spec = test::parse_ok(R"({"input":{"dir":")" + root + R"(/in","after_success":"move:)" +
                                  move_dir + R"("},"output":{"dir":")" + root + R"(/out"}})");
    FieldErrors errors;
    check_job_inputs(spec, {root + "/in"}, out_roots, errors);
    return std::pair{test::lines(errors), spec};
  };
  auto [outside, s1] = check(root + "/elsewhere/x", {root + "/out"});
  REQUIRE(outside.size() == 1);
  CHECK(outside[0].starts_with("input.after_success: " + root +
                               "/elsewhere/x is outside the "
                               "allowed input and output roots"));
  auto [inside, s2] = check(root + "/in/done", {root});
  REQUIRE(inside.size() == 1);
  CHECK(inside[0].find("is inside the input folder") != std::string::npos);
  auto [fine, s3] = check(root + "/archive/2026", {root});
  CHECK(fine.empty());
  CHECK(s3.input.after_success.root == root);
  CHECK(s3.input.after_success.real_dir == root + "/archive/2026");
}

// A job over `root`/in with its paths resolved as check_job_inputs would.
JobSpec job_over(const std::string& root, InputAction success) {
  JobSpec spec;
  spec.id = "t";
  spec.input.dir = root + "/in";
  spec.input.root = root;
  spec.input.real_dir = root + "/in";
  spec.output.dir = root + "/out";
  if (success.kind == InputActionKind::kMove) success.real_dir = success.dir, success.root = root;
  spec.input.after_success = success;
  return spec;
}

InputLocation where_of(const std::string& path, const std::string& rel) {
  struct stat st;
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return InputLocation{"",
                       rel,
                       rel,
                       st.st_dev,
                       st.st_ino,
                       static_cast<uint64_t>(st.st_size),
                       st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec};
}

InputAction deleting() {
  InputAction a;
  a.kind = InputActionKind::kDelete;
  return a;
}

InputAction moving_to(const std::string& dir) {
  InputAction a;
  a.kind = InputActionKind::kMove;
  a.dir = dir;
  return a;
}

TEST_CASE("input actions: delete removes the file that was read and nothing else") {
  TempFolder tmp;
  const std::string root = std::filesystem::canonical(tmp.root()).string();
  std::filesystem::create_directories(root + "/in/sub");
  TempFolder::write(root + "/in/sub/a.txt", "a");
  TempFolder::write(root + "/in/sub/b.txt", "b");
  JobSpec spec = job_over(root, deleting());
  InputActor actor(spec);
  InputLocation a = where_of(root + "/in/sub/a.txt", "sub/a.txt");
  InputLocation b = where_of(root + "/in/sub/b.txt", "sub/b.txt");

  InputActionResult done = actor.apply(spec.input.after_success, "in/sub/a.txt", a, false);
  CHECK(done.done);
  CHECK_FALSE(std::filesystem::exists(root + "/in/sub/a.txt"));

  // b replaced by another file of the same name since it was read: left in place.
  std::filesystem::remove(root + "/in/sub/b.txt");
  TempFolder::write(root + "/in/sub/other", "someone else's");
  std::filesystem::rename(root + "/in/sub/other", root + "/in/sub/b.txt");
  InputActionResult replaced = actor.apply(spec.input.after_success, "in/sub/b.txt", b, false);
  CHECK_FALSE(replaced.done);
  CHECK(replaced.error.find("not the file that was read") != std::string::npos);
  CHECK(TempFolder::read(root + "/in/sub/b.txt") == "someone else's");

  // Written to since it was read (same inode, new size and mtime): its output does not show what
  // it holds now, so it is kept.
  TempFolder::write(root + "/in/sub/c.txt", "c");
  InputLocation c = where_of(root + "/in/sub/c.txt", "sub/c.txt");
  std::ofstream(root + "/in/sub/c.txt", std::ios::app) << " and more";
  InputActionResult changed = actor.apply(spec.input.after_success, "in/sub/c.txt", c, false);
  CHECK_FALSE(changed.done);
  CHECK(changed.error.find("not the file that was read") != std::string::npos);
  CHECK(TempFolder::read(root + "/in/sub/c.txt") == "c and more");

  // Never opened (failed before it was read): no identity to check, kept.
  InputLocation unread = b;
  unread.dev = unread.ino = 0;
  CHECK_FALSE(actor.apply(spec.input.after_success, "in/sub/b.txt", unread, false).done);
  CHECK(std::filesystem::exists(root + "/in/sub/b.txt"));
}

TEST_CASE("input actions: a folder swapped for a symlink is not followed") {
  TempFolder tmp;
  const std::string root = std::filesystem::canonical(tmp.root()).string();
  std::filesystem::create_directories(root + "/in/sub");
  std::filesystem::create_directories(root + "/outside");
  TempFolder::write(root + "/in/sub/a.txt", "a");
  JobSpec spec = job_over(root, deleting());
  InputActor actor(spec);
  InputLocation a = where_of(root + "/in/sub/a.txt", "sub/a.txt");
  // The very file, hard-linked outside, and the folder swapped for a symlink to there: only the
  // symlink refusal stands between the action and the file.
  REQUIRE(::link((root + "/in/sub/a.txt").c_str(), (root + "/outside/a.txt").c_str()) == 0);
  std::filesystem::rename(root + "/in/sub", root + "/sub-moved");
  std::filesystem::create_directory_symlink(root + "/outside", root + "/in/sub");
  InputActionResult r = actor.apply(spec.input.after_success, root + "/in/sub/a.txt", a, false);
  CHECK_FALSE(r.done);
  CHECK(r.error.find("is a symlink, refusing to delete from through it") != std::string::npos);
  CHECK(std::filesystem::exists(root + "/outside/a.txt"));
  // A file name swapped for a symlink to the same file is not the file either.
  std::filesystem::remove(root + "/in/sub");
  std::filesystem::rename(root + "/sub-moved", root + "/in/sub");
  std::filesystem::remove(root + "/in/sub/a.txt");
  std::filesystem::create_symlink(root + "/outside/a.txt", root + "/in/sub/a.txt");
  r = actor.apply(spec.input.after_success, root + "/in/sub/a.txt", a, false);
  CHECK_FALSE(r.done);
  CHECK(r.error.find("symlink") != std::string::npos);
  CHECK(std::filesystem::exists(root + "/outside/a.txt"));
}

TEST_CASE("input actions: move keeps the relative path and never replaces a name") {
  TempFolder tmp;
  const std::string root = std::filesystem::canonical(tmp.root()).string();
  std::filesystem::create_directories(root + "/in/x/y");
  TempFolder::write(root + "/in/x/y/a.txt", "a");
  TempFolder::write(root + "/in/b.txt", "b");
  std::filesystem::create_directories(root + "/done");
  TempFolder::write(root + "/done/b.txt", "older b");
  JobSpec spec = job_over(root, moving_to(root + "/done"));
  InputActor actor(spec);
  InputLocation a = where_of(root + "/in/x/y/a.txt", "x/y/a.txt");
  InputLocation b = where_of(root + "/in/b.txt", "b.txt");
  CHECK(actor.apply(spec.input.after_success, "a", a, false).done);
  CHECK(TempFolder::read(root + "/done/x/y/a.txt") == "a");
  CHECK_FALSE(std::filesystem::exists(root + "/in/x/y/a.txt"));
  InputActionResult clash = actor.apply(spec.input.after_success, "b", b, false);
  CHECK_FALSE(clash.done);
  CHECK(clash.error.find("exists there; not replaced") != std::string::npos);
  CHECK(TempFolder::read(root + "/done/b.txt") == "older b");
  CHECK(TempFolder::read(root + "/in/b.txt") == "b");

  // Resuming: the move happened before the crash (source gone, target the same file): done.
  CHECK(actor.apply(spec.input.after_success, "a", a, true).done);
  // Live, a source that vanished is not "done".
  CHECK_FALSE(actor.apply(spec.input.after_success, "a", a, false).done);
  // Resuming, but the target is another file: not done.
  // (the moved file is kept elsewhere, so that its inode number cannot be reused)
  std::filesystem::rename(root + "/done/x/y/a.txt", root + "/done/kept.txt");
  TempFolder::write(root + "/done/x/y/a.txt", "impostor");
  CHECK_FALSE(actor.apply(spec.input.after_success, "a", a, true).done);
}

TEST_CASE("input actions: input.files are acted on beneath their own allowed root only") {
  TempFolder tmp;
  const std::string root = std::filesystem::canonical(tmp.root()).string();
  std::filesystem::create_directories(root + "/a/b");
  TempFolder::write(root + "/a/b/x.txt", "x");
  JobSpec spec;
  spec.id = "files";
  spec.input.files = {root + "/a/b/x.txt"};
  spec.input.real_files = spec.input.files;
  spec.input.file_roots = {root + "/a"};
  spec.output.dir = root + "/out";
  spec.input.after_success = moving_to(root + "/moved");
  spec.input.after_success.root = root;
  spec.input.after_success.real_dir = root + "/moved";
  InputActor actor(spec);
  // As the source names it: the file beneath its root, its output name for the move.
  Result<DirFd> opened = open_dir_path(root + "/a");
  REQUIRE(opened);
  auto folder = std::make_shared<const DirFd>(std::move(*opened));
  DocumentRef doc{root + "/a/b/x.txt", "x.txt", folder, "b/x.txt", nullptr};
  struct stat st;
  REQUIRE(::stat((root + "/a/b/x.txt").c_str(), &st) == 0);
  doc.input_dev = st.st_dev;
  doc.input_ino = st.st_ino;
  doc.input_size = static_cast<uint64_t>(st.st_size);
  doc.input_mtime_ns = st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
  InputLocation where = locate_input(spec, doc);
  CHECK(where.base == root + "/a");
  CHECK(where.path == "b/x.txt");
  CHECK(where.target == "x.txt");
  // A base that is not one of the job's roots (a hand-edited journal) is refused.
  InputLocation forged = where;
  forged.base = "/";
  InputActionResult refused = actor.apply(spec.input.after_success, doc.input_path, forged, false);
  CHECK_FALSE(refused.done);
  CHECK(refused.error.find("is not a root of this job's input files") != std::string::npos);
  CHECK(actor.apply(spec.input.after_success, doc.input_path, where, false).done);
  CHECK(TempFolder::read(root + "/moved/x.txt") == "x");
  CHECK_FALSE(std::filesystem::exists(root + "/a/b/x.txt"));
}

TEST_CASE("input actions: resuming a delete whose file is gone is done") {
  TempFolder tmp;
  const std::string root = std::filesystem::canonical(tmp.root()).string();
  std::filesystem::create_directories(root + "/in");
  TempFolder::write(root + "/in/a.txt", "a");
  JobSpec spec = job_over(root, deleting());
  InputActor actor(spec);
  InputLocation a = where_of(root + "/in/a.txt", "a.txt");
  std::filesystem::remove(root + "/in/a.txt");
  CHECK(actor.apply(spec.input.after_success, "a", a, true).done);
  InputActionResult live = actor.apply(spec.input.after_success, "a", a, false);
  CHECK_FALSE(live.done);
  CHECK(live.error.find("the input is gone") != std::string::npos);
}

TEST_CASE("input actions: a submitter who may not write to the folder cannot delete from it") {
  if (::geteuid() != 0) return;  // judged for another uid: needs the files to be root's
  TempFolder tmp;
  const std::string root = std::filesystem::canonical(tmp.root()).string();
  std::filesystem::create_directories(root + "/in/locked");
  std::filesystem::create_directories(root + "/in/sticky");
  REQUIRE(::chmod(root.c_str(), 0755) == 0);
  REQUIRE(::chmod((root + "/in").c_str(), 0777) == 0);
  REQUIRE(::chmod((root + "/in/sticky").c_str(), 01777) == 0);
  TempFolder::write(root + "/in/locked/a.txt", "a");
  TempFolder::write(root + "/in/sticky/b.txt", "b");  // root's, in a sticky folder
  TempFolder::write(root + "/in/c.txt", "c");
  JobSpec spec = job_over(root, deleting());
  spec.submitter = Credentials{.uid = 65534, .gid = 65534, .groups = {}};
  InputActor actor(spec);
  InputActionResult locked = actor.apply(
      spec.input.after_success, "a", where_of(root + "/in/locked/a.txt", "locked/a.txt"), false);
  CHECK_FALSE(locked.done);
  CHECK(locked.error.find("uid 65534") != std::string::npos);
  CHECK(std::filesystem::exists(root + "/in/locked/a.txt"));
  InputActionResult sticky = actor.apply(
      spec.input.after_success, "b", where_of(root + "/in/sticky/b.txt", "sticky/b.txt"), false);
  CHECK_FALSE(sticky.done);
  CHECK(sticky.error.find("sticky bit") != std::string::npos);
  CHECK(std::filesystem::exists(root + "/in/sticky/b.txt"));
  CHECK(actor.apply(spec.input.after_success, "c", where_of(root + "/in/c.txt", "c.txt"), false)
            .done);

  // At validation: no write access to input.dir refuses the job.
  REQUIRE(::chmod((root + "/in").c_str(), 0755) == 0);
  JobSpec checked = job_over(root, deleting());
  checked.submitter = spec.submitter;
  FieldErrors errors;
  check_input_actions(checked, {root}, {root}, errors);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].path == "input.dir");
  CHECK(errors[0].reason.find("uid 65534") != std::string::npos);
}

TEST_CASE("input actions: journal records round-trip and stay out of the manifest's way") {
  InputActionRecord begin;
  begin.input = "/in/a \"b\".txt";
  begin.action = "move";
  begin.base = "";
  begin.path = "a \"b\".txt";
  begin.target = "a \"b\".txt";
  begin.dev = 2049;
  begin.ino = 123456789;
  begin.output = "/out/a.txt";
  begin.sha256 = std::string(64, 'a');
  const std::string text = begin.to_json();
  CHECK(text.starts_with("{\"intent\":\"input_action\",\"step\":\"begin\""));
  Result<JournalRecord> parsed = parse_journal_record(text);
  REQUIRE(parsed);
  REQUIRE(std::holds_alternative<InputActionRecord>(*parsed));
  const InputActionRecord& r = std::get<InputActionRecord>(*parsed);
  CHECK(r.step == InputActionRecord::Step::kBegin);
  CHECK(r.input == begin.input);
  CHECK(r.path == begin.path);
  CHECK(r.dev == 2049);
  CHECK(r.ino == 123456789);
  CHECK(r.sha256 == begin.sha256);
  const std::string end = InputActionRecord::finished("/in/x", "delete", false, "why").to_json();
  CHECK(end == R"({"intent":"input_action","step":"failed","input":"/in/x","action":"delete",)"
               R"("error":"why"})");
  Result<JournalRecord> ended = parse_journal_record(end);
  REQUIRE(ended);
  CHECK(std::get<InputActionRecord>(*ended).step == InputActionRecord::Step::kFailed);
  // A commit intent is still one.
  Result<JournalRecord> commit = parse_journal_record(R"({"intent":"commit","input":"/a"})");
  REQUIRE(commit);
  CHECK(std::holds_alternative<IntentRecord>(*commit));
}

}  // namespace
}  // namespace docpipe
