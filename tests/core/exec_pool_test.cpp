// exec in "mode": "pool": real converter processes (deploy/examples/pool_upper.py and the
// misbehaving ones of tests/support/pool_faulty.py) through the transform and the pool, including
// every way a pool process can go wrong: crashes, hangs, protocol violations, failed starts,
// failed health checks, and the end of the daemon.

#include "core/transforms/exec_pool.h"

#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/transforms/command_pools.h"
#include "tests/core/exec_pool_test_util.h"
#include "tests/core/transform_test_util.h"
#include "tests/support/processes.h"

using docpipe::DocumentContext;
using docpipe::ErrorCode;
using docpipe::Status;
using docpipe::test::exited_within;
using docpipe::test::zombies_of;

using namespace exec_pool_test;

TEST_CASE("pool protocol: frames decode the same whatever the pieces they arrive in") {
  namespace pp = docpipe::pool_protocol;
  std::string wire;
  pp::append_header(wire, pp::kData, 5);
  wire += "hello";
  pp::append_header(wire, pp::kData, 0);
  pp::append_header(wire, pp::kFailed, 3);
  wire += "bad";
  struct Collect : pp::FrameDecoder::Sink {
    std::string bytes, controls;
    Status data(std::string_view p) override {
      bytes.append(p);
      return docpipe::ok();
    }
    Status control(char type, std::string_view payload) override {
      controls += std::string(1, type) + ":" + std::string(payload) + ";";
      return docpipe::ok();
    }
  };
  for (size_t piece : {1, 2, 5, 7, 100}) {
    CAPTURE(piece);
    pp::FrameDecoder decoder;
    Collect sink;
    for (size_t i = 0; i < wire.size(); i += piece) {
      REQUIRE(decoder.feed(std::string_view(wire).substr(i, piece), sink).has_value());
    }
    CHECK(sink.bytes == "hello");
    CHECK(sink.controls == "F:bad;");
    CHECK(decoder.at_boundary());
  }
  CHECK(wire.substr(0, 5) == std::string("D\0\0\0\5", 5));
}

TEST_CASE("pool protocol: unknown types and oversized frames are violations that stick") {
  namespace pp = docpipe::pool_protocol;
  struct Ignore : pp::FrameDecoder::Sink {
    Status data(std::string_view) override { return docpipe::ok(); }
    Status control(char, std::string_view) override { return docpipe::ok(); }
  } sink;
  pp::FrameDecoder a;
  Status st = a.feed(std::string("Z\0\0\0\0", 5), sink);
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().message == "protocol violation: unknown frame type 0x5a ('Z')");
  CHECK_FALSE(a.feed("", sink).has_value());

  std::string big;
  pp::append_header(big, pp::kData, (1u << 20) + 1);
  pp::FrameDecoder b;
  st = b.feed(big, sink);
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().message ==
        "protocol violation: frame type 0x44 ('D') with 1048577 payload bytes (at most 1048576)");
  std::string long_failure;
  pp::append_header(long_failure, pp::kFailed, 4097);
  pp::FrameDecoder c;
  CHECK_FALSE(c.feed(long_failure, sink).has_value());
  std::string end;  // only the daemon sends E
  pp::append_header(end, pp::kEnd, 0);
  pp::FrameDecoder d;
  CHECK_FALSE(d.feed(end, sink).has_value());
}

TEST_CASE("pool start backoff: doubles from 100 ms to 30 s and resets on success") {
  docpipe::StartBackoff b;
  const Clock::time_point t0{};
  CHECK(b.allows(t0));
  b.failed(t0);
  CHECK_FALSE(b.allows(t0 + milliseconds(99)));
  CHECK(b.allows(t0 + milliseconds(100)));
  b.failed(t0);
  CHECK(b.next_attempt() == t0 + milliseconds(200));
  for (int i = 0; i < 20; ++i) b.failed(t0);
  CHECK(b.next_attempt() == t0 + milliseconds(30000));
  CHECK(b.failures() == 22);
  b.succeeded();
  CHECK(b.allows(t0));
}

TEST_CASE("exec pool: documents stream through one process of the example converter") {
  auto step = pool_step("pool-upper", upper_spec());
  for (size_t chunk : {1, 5, 0}) {
    CAPTURE(chunk);
    CHECK(run(*step, "hello, docpipe\nsecond line\n", chunk).value() ==
          "HELLO, DOCPIPE\nSECOND LINE\n");
  }
  CHECK(run(*step, "").value() == "");
  const CommandPoolStats s = stats_of("pool-upper");
  CHECK(s.starts == 1);  // one process served all four documents
  CHECK(s.processes.idle == 1);
  CHECK(s.documents[int(docpipe::PoolDocumentOutcome::kSucceeded)] == 4);
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec pool: large documents stream both ways, output in bounded calls") {
  std::string text;
  for (int i = 0; text.size() < (8u << 20); ++i) text += "line " + std::to_string(i) + " abc\n";
  std::string upper = text;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto step = pool_step("pool-upper-large", upper_spec());
  Result<std::string> r = run(*step, text, 1 << 20);
  REQUIRE(r.has_value());
  CHECK(*r == upper);

  // Each input byte comes back 8 times: 16 MiB out for 2 MiB in, at most ~2 MiB per call.
  auto expand = pool_step("pool-expand", faulty_spec("expand", "8"));
  auto t = expand->begin({"a.txt", "a.txt"});
  const std::string input(2u << 20, 'x');
  std::string out;
  size_t calls = 0, biggest = 0, total = 0;
  auto take = [&](Status st) {
    REQUIRE(st.has_value());
    ++calls;
    biggest = std::max(biggest, out.size());
    total += out.size();
    out.clear();
  };
  take(t->update(input, out));
  while (t->has_more()) take(t->update({}, out));
  take(t->finish(out));
  while (t->has_more()) take(t->finish(out));
  CHECK(total == input.size() * 8);
  CHECK(biggest <= docpipe::kMaxCallOutputBytes + (2u << 20));
  CHECK(calls >= 8);
}

TEST_CASE("exec pool: a document the converter refuses fails with its message, the process lives") {
  auto step = pool_step("pool-refuse", upper_spec());
  Result<std::string> r = run(*step, std::string("abc\0def", 7));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kCorruptInput);
  CHECK(r.error().message ==
        "exec: command \"pool-refuse\" failed the document: binary document (NUL byte at offset "
        "3)");
  CHECK_FALSE(docpipe::is_transient(r.error()));
  // Refused in the first of many frames: the converter skips the rest up to the end frame.
  std::string big(3u << 20, 'a');
  big[10] = '\0';
  r = run(*step, big, 1 << 20);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("NUL byte at offset 10") != std::string::npos);
  CHECK(run(*step, "still here").value() == "STILL HERE");
  CHECK(stats_of("pool-refuse").starts == 1);
}

TEST_CASE("exec pool: an answer before the end of the document skips the rest, in sync") {
  auto step = pool_step("pool-early", faulty_spec("early-done"));
  for (int i = 0; i < 3; ++i) CHECK(run(*step, std::string(1u << 20, 'q'), 4096).value() == "");
  CHECK(stats_of("pool-early").starts == 1);
}

TEST_CASE("exec pool: a slow start-up is paid once, outside the document's timeout_ms") {
  CommandSpec spec = pool_spec({kPython, kUpper, "--start-delay-ms", "400"});
  spec.timeout_ms = 200;  // shorter than the start-up: it runs from the check-out
  auto step = pool_step("pool-slow-start", spec);
  const auto start = Clock::now();
  CHECK(run(*step, "first").value() == "FIRST");
  CHECK(Clock::now() - start >= milliseconds(400));
  for (int i = 0; i < 5; ++i) CHECK(run(*step, "again").value() == "AGAIN");
  CHECK(stats_of("pool-slow-start").starts == 1);
}

TEST_CASE("exec pool: a process is replaced after max_documents") {
  CommandSpec spec = upper_spec();
  spec.pool.max_documents = 2;
  auto step = pool_step("pool-max-docs", spec);
  for (int i = 0; i < 5; ++i) CHECK(run(*step, "doc").value() == "DOC");
  const CommandPoolStats s = stats_of("pool-max-docs");
  CHECK(s.starts == 3);
  CHECK(s.recycles[int(RecycleReason::kMaxDocuments)] == 2);
  CHECK(eventually([] { return stats_of("pool-max-docs").processes.stopping == 0; }));
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec pool: a crash mid-document fails it with a transient error naming the signal") {
  auto step = pool_step("pool-crash", faulty_spec("crash-on", "CRASH"));
  CHECK(run(*step, "fine").value() == "FINE");
  Result<std::string> r = run(*step, "about to CRASH here");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kIo);
  CHECK(docpipe::is_transient(r.error()));  // the pipeline retries it
  CHECK(r.error().message.find("exec: command \"pool-crash\": pool process ") == 0);
  CHECK(r.error().message.find(" was killed by signal 9 (Killed) mid-document") !=
        std::string::npos);
  CHECK(recycled("pool-crash", RecycleReason::kCrash) == 1);
  // A fresh process serves the next document.
  CHECK(run(*step, "after").value() == "AFTER");
  CHECK(stats_of("pool-crash").starts == 2);
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec pool: a process that exits mid-document is named with its exit status") {
  auto step = pool_step("pool-exit", faulty_spec("exit-after", "1"));
  CHECK(run(*step, "one").value() == "ONE");
  Result<std::string> r = run(*step, "two");
  REQUIRE_FALSE(r.has_value());
  CHECK(docpipe::is_transient(r.error()));
  CHECK(r.error().message.find(" exited with status 3 mid-document") != std::string::npos);
  CHECK(run(*step, "three").value() == "THREE");
}

TEST_CASE("exec pool: a hanging process is killed at timeout_ms and replaced") {
  CommandSpec spec = faulty_spec("hang");
  spec.timeout_ms = 300;
  auto step = pool_step("pool-hang", spec);
  const auto start = Clock::now();
  Result<std::string> r = run(*step, "input");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kTimeout);
  CHECK(r.error().message.find("exec: command \"pool-hang\" timed out after 300 ms and was "
                               "killed (pool process ") == 0);
  CHECK(Clock::now() - start < milliseconds(10000));
  CHECK(recycled("pool-hang", RecycleReason::kTimeout) == 1);
  CHECK(live_processes("pool-hang") == 0);
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec pool: protocol violations fail the document and end the process") {
  auto garbage = pool_step("pool-garbage", faulty_spec("garbage"));
  Result<std::string> r = run(*garbage, "x");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kInternal);
  CHECK(r.error().message.find(": protocol violation: unknown frame type 0x5a ('Z')") !=
        std::string::npos);
  CHECK(recycled("pool-garbage", RecycleReason::kProtocol) == 1);

  auto late = pool_step("pool-late", faulty_spec("data-after"));
  r = run(*late, "x");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("protocol violation: a data frame after the document's status "
                               "frame") != std::string::npos);

  auto ready = pool_step("pool-bad-ready", faulty_spec("bad-ready"));
  r = run(*ready, "x");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find(
            "protocol violation: ready frame says \"docpipe-pool 0\" (expected \"docpipe-pool "
            "1\")") != std::string::npos);
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec pool: a converter that cannot start backs off instead of spinning") {
  auto step = pool_step("pool-fail-start", faulty_spec("fail-start"));
  Result<std::string> r = run(*step, "x");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kIo);
  CHECK(r.error().message.find(" exited with status 1 during start-up, before its ready frame; "
                               "stderr: cannot load the model: no such file") != std::string::npos);
  // At once again: no new start, the last error and when the next attempt is.
  r = run(*step, "x");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("(1 failed start(s) in a row; next attempt in ") !=
        std::string::npos);
  CHECK(stats_of("pool-fail-start").start_failures == 1);
  // After the backoff, one more attempt, then a longer wait.
  CHECK(eventually([&] {
    (void)run(*step, "x");
    return stats_of("pool-fail-start").start_failures == 2;
  }));
  r = run(*step, "x");
  CHECK(r.error().message.find("(2 failed start(s) in a row; ") != std::string::npos);

  CommandSpec slow = faulty_spec("no-ready");
  slow.pool.ready_timeout_ms = 300;
  r = run(*pool_step("pool-no-ready", slow), "x");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find(" sent no ready frame within 300 ms (ready_timeout_ms) and was "
                               "killed") != std::string::npos);

  r = run(*pool_step("pool-ghost", pool_spec({"/nonexistent/docpipe-pool-ghost"})), "x");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kNotFound);
  CHECK(r.error().message ==
        "exec: command \"pool-ghost\": cannot start /nonexistent/docpipe-pool-ghost: No such file "
        "or directory");
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec pool: documents wait for a busy process, at most queue_timeout_ms") {
  CommandSpec spec = upper_spec(1);
  spec.pool.queue_timeout_ms = 200;
  auto step = pool_step("pool-queue", spec);
  auto holder = step->begin({"a.txt", "a.txt"});
  std::string out;
  REQUIRE(holder->update("held", out).has_value());  // checks the only process out
  Result<std::string> r = run(*step, "waits");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kIo);
  CHECK(docpipe::is_transient(r.error()));
  CHECK(r.error().message ==
        "exec: command \"pool-queue\": no pool process came free within 200 ms "
        "(queue_timeout_ms; size 1, all busy)");

  // A document that waits gets the process as soon as it comes back.
  std::atomic<bool> waiting{false};
  Result<std::string> second = std::string();
  std::thread t([&] {
    auto other = step->begin({"b.txt", "b.txt", [&]() -> Status {
                                waiting = true;
                                return docpipe::ok();
                              }});
    std::string o;
    Status st = other->update("second", o);
    if (st) st = other->finish(o);
    second = st ? Result<std::string>(o) : Result<std::string>(st.error());
  });
  CHECK(eventually([&] { return waiting.load(); }));
  REQUIRE(holder->finish(out).has_value());
  t.join();
  CHECK(out == "HELD");
  REQUIRE(second.has_value());
  CHECK(*second == "SECOND");
  CHECK(stats_of("pool-queue").starts == 1);
}

TEST_CASE("exec pool: a document waiting for a process is interruptible") {
  auto step = pool_step("pool-interrupt", upper_spec(1));
  auto holder = step->begin({"a.txt", "a.txt"});
  std::string out;
  REQUIRE(holder->update("held", out).has_value());
  int asked = 0;
  auto waiting = step->begin({"b.txt", "b.txt", [&]() -> Status {
                                if (++asked < 3) return docpipe::ok();
                                return docpipe::make_error(ErrorCode::kCancelled, "job cancelled");
                              }});
  const auto start = Clock::now();
  Status st = waiting->update("x", out);
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().message == "job cancelled");
  CHECK(Clock::now() - start < milliseconds(5000));
  // An abandoned document's process is in mid-document: it is ended, not reused.
  holder.reset();
  CHECK(recycled("pool-interrupt", RecycleReason::kCancelled) == 1);
  CHECK(run(*step, "next").value() == "NEXT");
}

TEST_CASE("exec pool: an idle process that stops answering pings is replaced") {
  CommandSpec spec = faulty_spec("no-pong");
  spec.pool.health_interval_ms = 100;
  spec.pool.health_timeout_ms = 200;
  std::mutex mu;
  std::vector<std::string> events;
  docpipe::set_pool_event_sink([&](const std::string& command, const std::string& what) {
    std::lock_guard lock(mu);
    events.push_back(command + ": " + what);
  });
  struct ResetSink {  // before `events` goes, whatever fails
    ~ResetSink() { docpipe::set_pool_event_sink(nullptr); }
  } reset_sink;
  auto step = pool_step("pool-no-pong", spec);
  CHECK(run(*step, "x").value() == "X");
  CHECK(eventually([] { return recycled("pool-no-pong", RecycleReason::kHealth) >= 1; }));
  // The daemon logs these: no document's report shows them. Reported just after it is counted.
  REQUIRE(eventually([&] {
    std::lock_guard lock(mu);
    return !events.empty();
  }));
  {
    std::lock_guard lock(mu);
    CHECK(events.front().find("pool-no-pong: pool process ") == 0);
    CHECK(events.front().find(" sent no pong within 200 ms (health_timeout_ms); replaced "
                              "(health)") != std::string::npos);
  }
  CHECK(run(*step, "y").value() == "Y");

  // A healthy idle process answers its pings and stays.
  CommandSpec healthy = upper_spec();
  healthy.pool.health_interval_ms = 100;
  auto ok_step = pool_step("pool-pong", healthy);
  CHECK(run(*ok_step, "x").value() == "X");
  CHECK(eventually([] { return stats_of("pool-pong").pongs >= 3; }));  // pinged, and answered
  CHECK(recycled("pool-pong", RecycleReason::kHealth) == 0);
  CHECK(stats_of("pool-pong").starts == 1);
}

TEST_CASE("exec pool: an idle process killed from outside is replaced without failing a document") {
  auto step = pool_step("pool-killed-idle", faulty_spec("crash-on", "never-seen-text"));
  CHECK(run(*step, "x").value() == "X");
  const std::vector<pid_t> pids =
      pool_pids("pool-killed-idle", faulty_spec("crash-on", "never-seen-text"));
  REQUIRE(pids.size() == 1);
  const pid_t pid = pids.front();
  REQUIRE(pid > 0);
  REQUIRE(::kill(pid, SIGKILL) == 0);
  CHECK(eventually([] { return recycled("pool-killed-idle", RecycleReason::kCrash) == 1; }));
  CHECK(run(*step, "y").value() == "Y");
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec pool: processes run with only PATH and LANG, and escaped descendants are killed") {
  const std::string r = run(*pool_step("pool-env", faulty_spec("echo-env")), "").value();
  const char* path = std::getenv("PATH");
  CHECK(r == "LANG=C.UTF-8\nPATH=" +
                 std::string(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin") + "\n");

  CommandSpec spec = pool_spec({kPython, kFaulty, "spawn-escape", "-", "600.7171"});
  spec.pool.max_documents = 1;
  CHECK(run(*pool_step("pool-escape", spec), "x").value() == "X");
  // Retired after its one document: its group and the escaped sleep go with it.
  CHECK(docpipe::test::exited_within("sleep 600.7171", milliseconds(10000)));
  CHECK(eventually([] { return stats_of("pool-escape").processes.stopping == 0; }));
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec pool: stop_all ends every process, SIGKILL after stop_grace_ms") {
  CommandSpec stubborn = pool_spec({"sh", "-c",
                                    "trap '' TERM; printf 'R\\000\\000\\000\\016docpipe-pool 1'; "
                                    "exec sleep 600.8181"});
  stubborn.pool.stop_grace_ms = 300;
  auto s2 = pool_step("pool-stop-upper", upper_spec(2));
  // The stubborn one says ready and then only sleeps: started through its pool directly.
  auto pool = CommandPools::instance().get("pool-stubborn", stubborn);
  auto p = pool->acquire({});
  REQUIRE(p.has_value());
  pool->release(std::move(p).value(), std::nullopt);
  CHECK(run(*s2, "x").value() == "X");
  std::vector<pid_t> pids = pool->pids();
  for (pid_t pid : pool_pids("pool-stop-upper", upper_spec(2))) pids.push_back(pid);
  REQUIRE(pids.size() == 2);
  REQUIRE(docpipe::test::process_running("sleep 600.8181"));
  const auto start = Clock::now();
  CommandPools::instance().stop_all();
  const auto took = Clock::now() - start;
  CHECK(took >= milliseconds(300));
  CHECK(took < milliseconds(5000));
  // Reaped by stop_all: no such process any more (exited_within is true at once).
  for (pid_t pid : pids) CHECK(exited_within(pid, milliseconds(0)));
  CHECK_FALSE(docpipe::test::process_running("sleep 600.8181"));
  CHECK(live_processes("pool-stubborn") == 0);
  CHECK(live_processes("pool-stop-upper") == 0);
  CHECK(recycled("pool-stubborn", RecycleReason::kStopped) == 1);
  // Steps made before the stop refuse documents; a new step gets a new pool.
  Result<std::string> r = run(*s2, "x");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kCancelled);
  CHECK(run(*pool_step("pool-stop-upper", upper_spec(2)), "y").value() == "Y");
  CommandPools::instance().stop_all();
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("exec pool: a reload that drops a command ends its pool once no job holds it") {
  auto step = pool_step("pool-reloaded", upper_spec());
  CHECK(run(*step, "x").value() == "X");
  const std::vector<pid_t> pids = pool_pids("pool-reloaded", upper_spec());
  REQUIRE(pids.size() == 1);
  // The reload's new allow-list no longer has the command: jobs validated before keep their pool.
  CommandPools::instance().retire_unlisted({});
  CHECK(run(*step, "still served").value() == "STILL SERVED");
  CHECK_FALSE(exited_within(pids.front(), milliseconds(300)));
  // The last job holding it is gone: its processes are told to end, and are reaped.
  step.reset();
  CHECK(exited_within(pids.front(), milliseconds(10000)));
  CHECK(eventually([] { return live_processes("pool-reloaded") == 0; }));
  CHECK(eventually([] { return stats_of("pool-reloaded").processes.stopping == 0; }));
  CHECK(recycled("pool-reloaded", RecycleReason::kStopped) == 1);

  // A changed spec under the same name gets a new pool; the old one drains the same way.
  auto before = pool_step("pool-respecced", upper_spec());
  CHECK(run(*before, "a").value() == "A");
  CommandSpec changed = upper_spec();
  changed.pool.max_documents = 5;
  auto after = pool_step("pool-respecced", changed);
  CHECK(run(*after, "b").value() == "B");
  CHECK(stats_of("pool-respecced").starts == 2);
  CHECK(live_processes("pool-respecced") == 2);
  before.reset();
  CHECK(eventually([] { return live_processes("pool-respecced") == 1; }));
}

TEST_CASE("exec pool: what a process wrote on stderr for one document is not in the next's error") {
  auto step = pool_step("pool-stderr", faulty_spec("crash-on", "CRASH"));
  CHECK(run(*step, "fine").value() == "FINE");
  // The crash is named with the stderr of its own document only: the process that served
  // "secret" wrote it there, and the process is reused before it crashes.
  CommandSpec spec = faulty_spec("stderr-then-crash-on", "CRASH");
  auto leaky = pool_step("pool-stderr-leak", spec);
  CHECK(run(*leaky, "secret of another job").value() == "SECRET OF ANOTHER JOB");
  Result<std::string> r = run(*leaky, "CRASH now");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("stderr: ") != std::string::npos);
  CHECK(r.error().message.find("CRASH now") != std::string::npos);
  CHECK(r.error().message.find("secret") == std::string::npos);
}

TEST_CASE("exec pool: a ready frame that is not UTF-8 fails the start cleanly, the pool recovers") {
  auto step = pool_step("pool-ready-bytes", faulty_spec("binary-ready"));
  Result<std::string> r = run(*step, "x");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("protocol violation: ready frame says") != std::string::npos);
  CHECK(stats_of("pool-ready-bytes").processes.starting == 0);  // no start left counted
  CHECK(stats_of("pool-ready-bytes").start_failures == 1);
}

TEST_CASE("exec pool: a reload that changes only timeout_ms or the breaker keeps the processes") {
  CommandSpec spec = upper_spec();
  auto step = pool_step("pool-retuned", spec);
  CHECK(run(*step, "x").value() == "X");
  const std::vector<pid_t> before = pool_pids("pool-retuned", spec);
  CommandSpec retuned = spec;
  retuned.timeout_ms = 1234;
  retuned.breaker.failures = 9;
  CommandPools::instance().retire_unlisted({{"pool-retuned", retuned}});
  auto again = pool_step("pool-retuned", retuned);
  CHECK(run(*again, "y").value() == "Y");
  CHECK(pool_pids("pool-retuned", retuned) == before);
  CHECK(stats_of("pool-retuned").starts == 1);
}
