// Confinement (issue 9 items 1, 2, 11, 19): the daemon enforces non-default allowed roots, opens a
// job's folders beneath them when the job starts and every document beneath those folders, so a
// folder swapped for a symlink while the job waits or between two documents cannot lead it out;
// an input folder that vanished before the start fails the job, saying why.

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

namespace fs = std::filesystem;

std::string config_json(const std::string& in_root, const std::string& out_root,
                        nlohmann::json extra = nlohmann::json::object()) {
  extra["allowed_input_roots"] = {in_root};
  extra["allowed_output_roots"] = {out_root};
  return extra.dump();
}

// Every regular file below `dir` with its content.
std::map<std::string, std::string> contents_under(const std::string& dir) {
  std::map<std::string, std::string> out;
  if (!fs::exists(dir)) return out;
  for (const std::string& rel : list_files(dir)) out[rel] = read_file(dir + "/" + rel);
  return out;
}

std::string failed_errors(const nlohmann::json& report) {
  std::string out;
  for (const auto& d : report.value("failed_documents", nlohmann::json::array())) {
    out += d.dump() + "\n";
  }
  return out;
}

// A daemon with roots IN and OUT under `tmp` that runs one job at a time, and a first job ("hold")
// that sleeps until cancelled, so that the next job waits in the queue for as long as the test
// needs.
struct QueueFixture {
  explicit QueueFixture(TempDir& t) : tmp(t), spool(t / "spool") {
    in_root = tmp / "inroot";
    out_root = tmp / "outroot";
    write_file(in_root + "/hold/h.txt", "hold");
    make_dirs(out_root);
    write_file(tmp / "docpipe.json", config_json(in_root, out_root, {{"max_active_jobs", 1}}));
    daemon = std::make_unique<DaemonProcess>(
        spool, std::vector<std::string>{"--config", tmp / "docpipe.json", "--workers", "2"});
    daemon->set_binary(DOCPIPE_TEST_BINARY);
    daemon->start();
    drop_job(spool, "hold.json",
             make_job("hold", in_root + "/hold", out_root + "/hold",
                      {{{"op", "test.sleep"}, {"ms", 600000}}}));
    REQUIRE_FALSE(daemon->wait_for_log_lines({" job started ", "job=hold"}).empty());
  }

  // Drops job `id` and waits until it is accepted (validated, queued behind "hold").
  void queue(const std::string& id, const nlohmann::json& job) {
    drop_job(spool, id + ".json", job);
    REQUIRE_FALSE(daemon->wait_for_log_lines({" job accepted ", "job=" + id}).empty());
  }

  // Ends "hold", so that the queued job starts.
  void release() {
    CommandResult r = docpipe({"cancel", "--spool", spool, "hold"}, tmp.path());
    INFO(r.out << r.err << daemon->log());
    REQUIRE(r.exit_code == 0);
  }

  TempDir& tmp;
  std::string spool, in_root, out_root;
  std::unique_ptr<DaemonProcess> daemon;
};

TEST_CASE(
    "confinement: a symlinked sub-folder in output.dir fails its document, nothing written "
    "outside") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool";
  DaemonProcess daemon(spool, {});
  daemon.start();
  // A first job whose report a hostile second job aims at.
  write_file(tmp / "in1/a.txt", "first");
  drop_job(spool, "victim.json", make_job("victim", tmp / "in1", tmp / "out1"));
  REQUIRE(daemon.wait_for_job("victim").folder == "done");
  const std::string report_path = spool + "/done/victim.report.json";
  const std::string report_before = read_file(report_path);

  write_file(tmp / "in2/ok.txt", "fine");
  write_file(tmp / "in2/sub/victim.report.json", "overwritten");
  write_file(tmp / "in2/sub/new.txt", "planted");
  make_dirs(tmp / "out2");
  fs::create_symlink(spool + "/done", tmp / "out2/sub");
  nlohmann::json hostile = make_job("hostile", tmp / "in2", tmp / "out2");
  hostile["limits"] = {{"max_failed_documents", 10}};
  drop_job(spool, "hostile.json", hostile);
  JobOutcome outcome = daemon.wait_for_job("hostile");
  INFO(outcome.report.dump(2));

  CHECK(read_file(report_path) == report_before);
  CHECK_FALSE(file_exists(spool + "/done/new.txt"));
  CHECK(dot_files_under(spool + "/done").empty());
  CHECK(read_file(tmp / "out2/ok.txt") == "fine");
  CHECK(outcome.report["counts"]["failed"] == 2);
  CHECK(outcome.report["counts"]["succeeded"] == 1);
  const std::string errors = failed_errors(outcome.report);
  CHECK(errors.find(tmp / "out2/sub is a symlink, refusing to write through it") !=
        std::string::npos);
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("confinement: input.dir swapped for a symlink out of the roots while queued is refused") {
  TempDir tmp(scratch_base());
  QueueFixture f(tmp);
  write_file(f.in_root + "/in/a.txt", "public");
  write_file(tmp / "secret/a.txt", "secret");
  f.queue("swapped", make_job("swapped", f.in_root + "/in", f.out_root + "/out"));

  fs::rename(f.in_root + "/in", f.in_root + "/in.orig");
  fs::create_symlink(tmp / "secret", f.in_root + "/in");
  f.release();

  JobOutcome outcome = f.daemon->wait_for_job("swapped");
  INFO(outcome.report.dump(2));
  CHECK(outcome.folder == "failed");
  CHECK(outcome.report["state"] == "failed");
  const std::string reason = outcome.report.value("reason", "");
  CHECK(reason.find("input.dir: " + f.in_root + "/in: leads outside " + f.in_root) !=
        std::string::npos);
  for (const auto& [rel, content] : contents_under(f.out_root)) CHECK(content != "secret");
  CHECK(f.daemon->terminate() == 0);
}

TEST_CASE(
    "confinement: output.dir swapped for a symlink out of the roots while queued is "
    "refused") {
  TempDir tmp(scratch_base());
  QueueFixture f(tmp);
  write_file(f.in_root + "/in/a.txt", "data");
  make_dirs(f.out_root + "/out");
  make_dirs(tmp / "elsewhere");
  f.queue("swapped", make_job("swapped", f.in_root + "/in", f.out_root + "/out"));

  fs::rename(f.out_root + "/out", f.out_root + "/out.orig");
  fs::create_symlink(tmp / "elsewhere", f.out_root + "/out");
  f.release();

  JobOutcome outcome = f.daemon->wait_for_job("swapped");
  INFO(outcome.report.dump(2));
  CHECK(outcome.folder == "failed");
  const std::string reason = outcome.report.value("reason", "");
  CHECK(reason.find("output.dir: " + f.out_root + "/out: leads outside " + f.out_root) !=
        std::string::npos);
  CHECK(list_files(tmp / "elsewhere").empty());
  CHECK(f.daemon->terminate() == 0);
}

TEST_CASE("confinement: an input folder that vanished before the job started fails the job") {
  TempDir tmp(scratch_base());
  QueueFixture f(tmp);
  write_file(f.in_root + "/in/a.txt", "data");
  f.queue("vanished", make_job("vanished", f.in_root + "/in", f.out_root + "/out"));

  fs::remove_all(f.in_root + "/in");
  f.release();

  JobOutcome outcome = f.daemon->wait_for_job("vanished");
  INFO(outcome.report.dump(2));
  CHECK(outcome.folder == "failed");
  CHECK(outcome.report["state"] == "failed");
  CHECK(outcome.report.value("reason", "") ==
        "input.dir: read " + f.in_root + "/in: No such file or directory");
  // The document counted at acceptance was never reached: not done, and said so (a retry takes
  // it again).
  CHECK(outcome.report["counts"]["total"] == 1);
  CHECK(outcome.report["counts"]["succeeded"] == 0);
  CHECK(outcome.report["counts"]["cancelled"] == 1);
  CHECK(outcome.report["all_documents_seen"] == false);
  CHECK(f.daemon->terminate() == 0);
}

TEST_CASE("confinement: sub-folders swapped for symlinks between two documents lead nowhere") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool";
  const std::string in = tmp / "in", out = tmp / "out";
  for (int i = 0; i < 6; ++i) {
    write_file(in + "/sub/" + std::to_string(i) + ".txt", "doc " + std::to_string(i));
    write_file(tmp / "secret_in/" + std::to_string(i) + ".txt", "secret");
  }
  make_dirs(tmp / "elsewhere");
  write_file(tmp / "docpipe.json", R"({"max_in_flight_documents": 1})");
  DaemonProcess daemon(spool, {"--config", tmp / "docpipe.json", "--workers", "1"});
  daemon.set_binary(DOCPIPE_TEST_BINARY);
  daemon.start();
  nlohmann::json job = make_job("j", in, out, {{{"op", "test.sleep"}, {"ms", 300}}});
  job["limits"] = {{"max_failed_documents", 10}};
  drop_job(spool, "j.json", job);

  // After the first document is written, both sub-folders become symlinks leading out.
  REQUIRE(poll_until(
      kJobTimeout, [&] { return fs::exists(out + "/sub") && !list_files(out + "/sub").empty(); }));
  fs::rename(in + "/sub", in + "/sub.orig");
  fs::create_symlink(tmp / "secret_in", in + "/sub");
  fs::rename(out + "/sub", out + "/sub.orig");
  fs::create_symlink(tmp / "elsewhere", out + "/sub");

  JobOutcome outcome = daemon.wait_for_job("j");
  INFO(outcome.report.dump(2));
  CHECK(list_files(tmp / "elsewhere").empty());
  for (const auto& [rel, content] : contents_under(out + "/sub.orig")) {
    CHECK(content.starts_with("doc "));
  }
  const uint64_t failed = outcome.report["counts"]["failed"];
  CHECK(failed >= 1);
  CHECK(outcome.report["counts"]["succeeded"].get<uint64_t>() + failed == 6);
  CHECK(
      failed_errors(outcome.report).find(out + "/sub is a symlink, refusing to write through it") !=
      std::string::npos);
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("confinement: the daemon enforces disjoint input and output roots") {
  TempDir tmp(scratch_base());
  const std::string spool = tmp / "spool";
  const std::string in_root = tmp / "inroot", out_root = tmp / "outroot";
  write_file(in_root + "/in/a.txt", "a");
  write_file(out_root + "/in/b.txt", "b");
  write_file(tmp / "docpipe.json", config_json(in_root, out_root));
  DaemonProcess daemon(spool, {"--config", tmp / "docpipe.json"});
  daemon.start();

  // An output under the input root only, and an input under the output root only.
  drop_job(spool, "out-in-input.json", make_job("oi", in_root + "/in", in_root + "/out"));
  nlohmann::json error = daemon.wait_for_rejection("out-in-input.json");
  INFO(error.dump(2));
  CHECK(error.dump().find(in_root + "/out is outside the allowed output roots (" + out_root +
                          ")") != std::string::npos);
  drop_job(spool, "in-in-output.json", make_job("io", out_root + "/in", out_root + "/out"));
  error = daemon.wait_for_rejection("in-in-output.json");
  INFO(error.dump(2));
  CHECK(error.dump().find(out_root + "/in is outside the allowed input roots (" + in_root + ")") !=
        std::string::npos);

  drop_job(spool, "good.json", make_job("good", in_root + "/in", out_root + "/out"));
  JobOutcome good = daemon.wait_for_job("good");
  CHECK(good.folder == "done");
  CHECK(read_file(out_root + "/out/a.txt") == "a");
  CHECK_FALSE(file_exists(in_root + "/out"));
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
