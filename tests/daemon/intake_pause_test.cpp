// Intake paused (docpipe pause / resume): the job table admits nothing while paused and lets the
// running jobs go on, the state round-trips through SPOOL/paused.json, and the control requests
// parse. The daemon end to end is in tests/e2e/pause_test.cpp.

#include "daemon/intake_pause.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "core/fs_util.h"
#include "daemon/control_request.h"
#include "tests/daemon/job_table_fixture.h"

using docpipe::ControlRequest;
using docpipe::IntakePause;
using docpipe::parse_control_request;
using docpipe::test::JobTableFixture;

TEST_CASE("intake pause: no queued job starts while paused, running ones go on") {
  JobTableFixture f(/*max_active_jobs=*/2);
  f.table->enqueue(f.make_job("running"));
  CHECK(f.work.added == std::vector<std::string>{"running"});

  f.table->set_pause(IntakePause{1000, 0, "outage"});
  CHECK(f.metrics.intake_paused().Value() == 1);
  f.table->enqueue(f.make_job("a"));
  f.table->enqueue(f.make_job("b"));
  // A free slot, but paused: both wait.
  CHECK(f.work.added == std::vector<std::string>{"running"});
  CHECK(f.table->queued() == 2);

  // The running job is not touched and finishes; its slot is not handed on while paused.
  f.work.finish("running");
  f.drain();
  CHECK(f.exists("done/running.report.json"));
  CHECK(f.table->running() == 0);
  CHECK(f.work.added == std::vector<std::string>{"running"});

  f.table->set_pause(std::nullopt);
  CHECK(f.metrics.intake_paused().Value() == 0);
  CHECK(f.work.added == std::vector<std::string>{"running", "a", "b"});
  CHECK(f.table->queued() == 0);
}

// The watchdog's stall check (JobTable::busy): a job queued on purpose while paused is not work
// the pipeline owes, or a paused daemon with a queued job would be restarted by systemd.
TEST_CASE("intake pause: jobs queued while paused do not count as pending work") {
  JobTableFixture f(/*max_active_jobs=*/1);
  f.table->enqueue(f.make_job("running"));
  f.table->set_pause(IntakePause{1000, 0, ""});
  f.table->enqueue(f.make_job("queued"));
  CHECK(f.table->busy());  // the running job
  f.work.finish("running");
  f.drain();
  CHECK(f.table->queued() == 1);
  CHECK_FALSE(f.table->busy());
  f.table->set_pause(std::nullopt);
  CHECK(f.table->busy());  // now it runs
}

TEST_CASE("intake pause: the state round-trips through paused.json and a damaged file says so") {
  JobTableFixture f(1);
  const std::string path = docpipe::pause_file_path(f.spool->root());
  auto none = docpipe::load_intake_pause(path);
  REQUIRE(none.has_value());
  CHECK_FALSE(none->has_value());

  REQUIRE(docpipe::store_intake_pause(path, IntakePause{1796182674012, 1000, "outage: \"mail\""},
                                      /*durable=*/true));
  auto loaded = docpipe::load_intake_pause(path);
  REQUIRE(loaded.has_value());
  REQUIRE(loaded->has_value());
  CHECK((*loaded)->since_ms == 1796182674012);
  CHECK((*loaded)->by_uid == 1000);
  CHECK((*loaded)->reason == "outage: \"mail\"");
  nlohmann::json shown = docpipe::intake_pause_json(**loaded);
  CHECK(shown["state"] == "paused");
  CHECK(shown["since"] == "2026-12-02T03:37:54.012Z");
  CHECK(docpipe::intake_pause_json(std::nullopt) == nlohmann::json{{"state", "open"}});

  REQUIRE(docpipe::store_intake_pause(path, std::nullopt, true));
  CHECK_FALSE(std::filesystem::exists(path));
  CHECK(docpipe::store_intake_pause(path, std::nullopt, true));  // already gone: fine

  for (const char* damaged :
       {"{", "[]", R"({"since_ms": "x", "by_uid": 0})", R"({"since_ms": 1, "by_uid": -1})",
        R"({"since_ms": 1, "by_uid": 0, "reason": 5})"}) {
    CAPTURE(damaged);
    std::ofstream(path, std::ios::trunc) << damaged;
    auto bad = docpipe::load_intake_pause(path);
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().message.find(path) != std::string::npos);
  }
}

TEST_CASE("intake pause: a reason is cut at 200 bytes on a character boundary") {
  CHECK(docpipe::pause_reason("short") == "short");
  std::string ascii(300, 'a');
  CHECK(docpipe::pause_reason(ascii) == std::string(200, 'a') + "...");
  // 199 ASCII bytes, then a 2-byte character across the limit: cut before it.
  std::string text = std::string(199, 'a') + "\xc3\xa9" + "tail";
  std::string cut = docpipe::pause_reason(text);
  CHECK(cut == std::string(199, 'a') + "...");
  CHECK_NOTHROW((void)nlohmann::json(cut).dump());
}

TEST_CASE("control request: pause with an optional reason, and resume") {
  auto pause = parse_control_request(R"({"op":"pause","reason":"mail server down"})");
  REQUIRE(pause.has_value());
  CHECK(pause->op == ControlRequest::Op::kPause);
  CHECK(pause->reason == "mail server down");
  auto bare = parse_control_request(R"({"op":"pause"})");
  REQUIRE(bare.has_value());
  CHECK(bare->reason.empty());
  auto resume = parse_control_request(R"({"op":"resume"})");
  REQUIRE(resume.has_value());
  CHECK(resume->op == ControlRequest::Op::kResume);

  auto wrong = parse_control_request(R"({"op":"pause","reason":["x"]})");
  REQUIRE_FALSE(wrong.has_value());
  CHECK(wrong.error().message == "pause: \"reason\" must be a string");
  auto long_reason =
      parse_control_request(R"({"op":"pause","reason":")" + std::string(5000, 'r') + "\"}");
  REQUIRE(long_reason.has_value());
  CHECK(long_reason->reason.size() == 203);
  auto unknown = parse_control_request(R"({"op":"halt"})");
  REQUIRE_FALSE(unknown.has_value());
  CHECK(unknown.error().message.find("pause, resume, which or plan") != std::string::npos);
}
