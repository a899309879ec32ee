// exec: real commands (tr, cat, sed, sh, sleep) through the transform, including the ways they
// can go wrong: non-zero exit, signals, hangs, cancellation, early exit, descendants left behind.

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/core/transform_test_util.h"
#include "tests/support/processes.h"

using docpipe::CommandSpec;
using docpipe::DocumentContext;
using docpipe::ErrorCode;
using docpipe::FieldErrors;
using docpipe::Result;
using docpipe::Status;
using docpipe::TransformEnv;
using docpipe::TransformStep;
using docpipe::test::errors_text;
using docpipe::test::process_running;
using docpipe::test::run_chunked;
using docpipe::test::run_ok;
using docpipe::test::zombies_of;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// Unique to this process: ctest runs tests in parallel.
const std::string& started_fifo() {
  static const std::string path = "/tmp/docpipe-exec-test-" + std::to_string(::getpid()) + ".fifo";
  return path;
}

TransformEnv exec_env() {
  TransformEnv env;
  env.commands["upper"] = CommandSpec{{"tr", "a-z", "A-Z"}, 10000};
  env.commands["cat"] = CommandSpec{{"cat"}, 30000};
  env.commands["double"] = CommandSpec{{"sed", "p"}, 30000};
  env.commands["fail"] = CommandSpec{{"sh", "-c", "echo oops >&2; echo partial; exit 3"}, 10000};
  env.commands["crash"] = CommandSpec{{"sh", "-c", "kill -9 $$"}, 10000};
  env.commands["hang"] = CommandSpec{{"sleep", "600.456"}, 300};
  env.commands["hang-long"] = CommandSpec{{"sleep", "600.457"}, 60000};
  // Each test that looks for its command in /proc has its own: ctest runs tests in parallel.
  // Copies its input into a FIFO that the test reads: data there shows the command runs.
  env.commands["hang-destroyed"] = CommandSpec{{"tee", started_fifo()}, 60000};
  env.commands["straggler"] = CommandSpec{{"sh", "-c", "sleep 600.789 & exec cat"}, 10000};
  // A grandchild in its own session: out of the command's process group, so the group kill
  // misses it.
  env.commands["escape"] = CommandSpec{
      {"sh", "-c", "setsid sleep 600.6161 </dev/null >/dev/null 2>&1 & sleep 600.6162"}, 300};
  env.commands["escape-ok"] = CommandSpec{
      {"sh", "-c", "setsid sleep 600.6163 </dev/null >/dev/null 2>&1 & exec cat"}, 10000};
  env.commands["head"] = CommandSpec{{"head", "-c", "5"}, 10000};
  env.commands["env"] = CommandSpec{{"env"}, 10000};
  env.commands["ghost"] = CommandSpec{{"/nonexistent/docpipe-ghost"}, 10000};
  env.commands["noisy"] = CommandSpec{
      {"sh", "-c", "head -c 20000 /dev/zero | tr '\\0' x >&2; echo END >&2; exit 1"}, 10000};
  return env;
}

std::shared_ptr<const TransformStep> exec_step(const std::string& command) {
  FieldErrors errors;
  auto step = docpipe::test::transform_info("exec").configure(json{{"command", command}},
                                                              exec_env(), errors);
  REQUIRE_MESSAGE(errors.empty(), errors_text(errors));
  REQUIRE(step != nullptr);
  return step;
}

Result<std::string> exec_run(const std::string& command, const std::string& input,
                             size_t chunk = 0) {
  return run_chunked(*exec_step(command), input, chunk);
}

// Killed descendants are reparented and reaped by init (or swept by us), so they vanish a moment
// later: each one found is waited for on a pidfd.
bool gone_within(const std::string& needle, std::chrono::milliseconds timeout) {
  return docpipe::test::exited_within(needle, timeout);
}

std::string sample_lines(size_t bytes) {
  std::string s;
  for (int i = 0; s.size() < bytes; ++i) s += "line " + std::to_string(i) + " of the document\n";
  return s;
}

}  // namespace

TEST_CASE("exec: pipes the document through an allow-listed command, whatever the chunking") {
  for (size_t chunk : {1, 5, 0}) {
    CAPTURE(chunk);
    CHECK(exec_run("upper", "hello, docpipe\nsecond line\n", chunk).value() ==
          "HELLO, DOCPIPE\nSECOND LINE\n");
  }
  CHECK(exec_run("upper", "").value() == "");
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec: large documents stream both ways without deadlock, expanding ones included") {
  const std::string text = sample_lines(8 << 20);
  Result<std::string> copied = exec_run("cat", text, 65536);
  REQUIRE(copied.has_value());
  CHECK(*copied == text);
  // sed p writes every line twice: the output outgrows the input while it is still being fed.
  std::string doubled;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) doubled += line + "\n" + line + "\n";
  Result<std::string> twice = exec_run("double", text, 1 << 20);
  REQUIRE(twice.has_value());
  CHECK(*twice == doubled);
}

TEST_CASE("exec: runs the command with only PATH and LANG in its environment") {
  const char* path = std::getenv("PATH");
  CHECK(exec_run("env", "").value() ==
        "PATH=" + std::string(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin") +
            "\nLANG=C.UTF-8\n");
}

TEST_CASE("exec: a non-zero exit fails the document with the status and the stderr tail") {
  Result<std::string> r = exec_run("fail", "input\n");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kCorruptInput);
  CHECK(r.error().message == "exec: command \"fail\" exited with status 3; stderr: oops");

  r = exec_run("noisy", "");
  REQUIRE_FALSE(r.has_value());
  // Only the last 8 KiB of stderr are kept.
  CHECK(r.error().message == "exec: command \"noisy\" exited with status 1; stderr: ..." +
                                 std::string(8192 - 4, 'x') + "END");
}

TEST_CASE("exec: a command killed by a signal fails the document naming the signal") {
  Result<std::string> r = exec_run("crash", "x");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kInternal);
  CHECK(r.error().message == "exec: command \"crash\" was killed by signal 9 (Killed)");
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec: a hanging command is killed at its timeout and leaves no process behind") {
  const auto start = Clock::now();
  Result<std::string> r = exec_run("hang", "some input\n");
  const auto took = Clock::now() - start;
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kTimeout);
  CHECK(r.error().message == "exec: command \"hang\" timed out after 300 ms and was killed");
  CHECK(took >= std::chrono::milliseconds(300));
  CHECK(took < std::chrono::milliseconds(5000));
  // The child itself is reaped before the error returns.
  CHECK_FALSE(process_running("sleep 600.456"));
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec: an interrupted document kills the command within one poll interval") {
  auto step = exec_step("hang-long");
  int asked = 0;
  Clock::time_point interrupted_at{};
  DocumentContext doc{"a.txt", "a.txt", [&]() -> Status {
                        if (++asked < 4) return docpipe::ok();
                        if (interrupted_at == Clock::time_point{}) interrupted_at = Clock::now();
                        return docpipe::make_error(ErrorCode::kCancelled, "job cancelled");
                      }};
  auto t = step->begin(doc);
  std::string out;
  REQUIRE(t->update("input", out).has_value());
  docpipe::Status st = t->finish(out);
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().code == ErrorCode::kCancelled);
  CHECK(st.error().message == "job cancelled");
  CHECK(Clock::now() - interrupted_at < std::chrono::milliseconds(1000));
  CHECK_FALSE(process_running("sleep 600.457"));
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec: destroying a document mid-way kills and reaps its command") {
  const std::string& fifo = started_fifo();
  ::unlink(fifo.c_str());
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // Opened first, without blocking, so that the command's open for writing does not block.
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  REQUIRE(reader >= 0);
  {
    auto t = exec_step("hang-destroyed")->begin({"a.txt", "a.txt"});
    std::string out;
    REQUIRE(t->update("input", out).has_value());
    // The input coming out of the FIFO shows the command running (posix_spawn returns while the
    // child is still in execve, before /proc shows its argv).
    pollfd p{reader, POLLIN, 0};
    CHECK(::poll(&p, 1, 5000) == 1);
    CHECK(process_running("tee " + fifo));
  }
  CHECK_FALSE(process_running("tee " + fifo));
  CHECK(zombies_of(::getpid()) == 0);
  ::close(reader);
  ::unlink(fifo.c_str());
}

TEST_CASE("exec: descendants a command leaves running are killed when it exits") {
  Result<std::string> r = exec_run("straggler", "passed through\n");
  REQUIRE(r.has_value());
  CHECK(*r == "passed through\n");
  CHECK(gone_within("sleep 600.789", std::chrono::milliseconds(5000)));
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec: a grandchild that escaped into its own session is killed at the timeout") {
  Result<std::string> r = exec_run("escape", "input\n");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kTimeout);
  CHECK(gone_within("sleep 600.6161", std::chrono::milliseconds(5000)));
  CHECK_FALSE(process_running("sleep 600.6162"));
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec: a grandchild that escaped into its own session is killed when the command ends") {
  Result<std::string> r = exec_run("escape-ok", "passed through\n");
  REQUIRE(r.has_value());
  CHECK(*r == "passed through\n");
  CHECK(gone_within("sleep 600.6163", std::chrono::milliseconds(5000)));
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec: a command that stops reading early succeeds and the rest is dropped") {
  // head exits after 5 bytes; writing more must not raise SIGPIPE in the daemon.
  Result<std::string> r = exec_run("head", sample_lines(4 << 20), 65536);
  REQUIRE(r.has_value());
  CHECK(*r == "line ");
}

TEST_CASE("exec: a command that cannot be started fails the document naming it") {
  Result<std::string> r = exec_run("ghost", "x");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kNotFound);
  CHECK(r.error().message ==
        "exec: command \"ghost\": cannot start /nonexistent/docpipe-ghost: No such file or "
        "directory");
}

TEST_CASE("exec: only allow-listed commands are accepted, by name") {
  auto errors_for = [](const json& params, const TransformEnv& env) {
    FieldErrors errors;
    CHECK(docpipe::test::transform_info("exec").configure(params, env, errors) == nullptr);
    return errors_text(errors);
  };
  TransformEnv two;
  two.commands["tr"] = CommandSpec{{"tr", "a-z", "A-Z"}, 1000};
  two.commands["sed"] = CommandSpec{{"sed", "s/a/b/"}, 1000};
  CHECK(errors_for(json{{"command", "rm"}}, two) ==
        "command: \"rm\" is not an allowed command (allowed: sed, tr)\n");
  CHECK(errors_for(json{{"command", "tr"}}, TransformEnv{}) ==
        "command: \"tr\" is not an allowed command (allowed: none)\n");
  CHECK(errors_for(json::object(), two) == "command: required parameter is missing\n");
  CHECK(errors_for(json{{"command", {"rm", "-rf"}}}, two) ==
        "command: expected string, got array\n");
  CHECK(errors_for(json{{"command", "tr"}, {"argv", {"rm"}}}, two) == "argv: unknown parameter\n");
}
