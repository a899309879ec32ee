// Isolated transforms (core/transforms/isolated_worker.h): the worker's sandbox seen from outside
// (/proc), and each way a worker can end, through a probe transform registered here. This test
// binary is its own worker (tests/doctest_main.cpp), so the probe exists on both sides.

#include "core/transforms/isolated_worker.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/transforms/worker_pool.h"
#include "tests/core/transform_test_util.h"
#include "tests/support/hostile_documents.h"
#include "tests/support/processes.h"

using docpipe::DocumentContext;
using docpipe::ErrorCode;
using docpipe::Result;
using docpipe::Status;
using docpipe::WorkerKey;
using docpipe::WorkerLimits;
using docpipe::WorkerPool;
using docpipe::test::AddressSpaceCap;
using docpipe::test::run_chunked;
using docpipe::test::zombies_of;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

// Does what its document says: "echo TEXT", "alloc MIB" (touches that much memory), "open",
// "socket", "fork", "segv", "spin" (burns CPU until killed), "fail".
class ProbeTransform : public docpipe::DocumentTransform {
 public:
  Status update(std::string_view in, std::string&) override {
    text_.append(in);
    return docpipe::ok();
  }
  Status finish(std::string& out) override {
    if (text_.rfind("echo ", 0) == 0) {
      out = text_.substr(5) + " pid " + std::to_string(::getpid());
    } else if (text_.rfind("alloc ", 0) == 0) {
      const size_t bytes = std::stoul(text_.substr(6)) << 20;
      std::string big(bytes, 'x');  // bad_alloc past the limit: the worker reports it
      out = std::to_string(big.size());
    } else if (text_ == "open") {
      const int fd = ::open("/etc/hostname", O_RDONLY);
      out = "open returned " + std::to_string(fd);
    } else if (text_ == "socket") {
      out = "socket returned " + std::to_string(::socket(AF_INET, SOCK_STREAM, 0));
    } else if (text_ == "fork") {
      out = "fork returned " + std::to_string(::fork());
    } else if (text_ == "segv") {
      ::raise(SIGSEGV);
    } else if (text_ == "spin") {
      volatile uint64_t spins = 0;
      for (;;) spins = spins + 1;
    } else if (text_ == "fail") {
      return docpipe::make_error(ErrorCode::kCorruptInput, "test.isolated_probe: told to fail");
    }
    return docpipe::ok();
  }

 private:
  std::string text_;
};

class ProbeStep : public docpipe::TransformStep {
 public:
  std::unique_ptr<docpipe::DocumentTransform> begin(const DocumentContext&) const override {
    return std::make_unique<ProbeTransform>();
  }
};

const docpipe::ParamSchema& probe_schema() {
  static const docpipe::ParamSchema s = docpipe::add_worker_params(docpipe::ParamSchema());
  return s;
}

const docpipe::TransformRegistration kProbe(docpipe::TransformInfo{
    .op = "test.isolated_probe",
    .description = "test only: does what the document says, in an isolated worker",
    .streaming = false,
    .params = probe_schema().specs(),
    .configure = [](const json& params, const docpipe::TransformEnv&,
                    docpipe::FieldErrors& errors) -> std::shared_ptr<const docpipe::TransformStep> {
      docpipe::ParamReader reader(probe_schema(), params, errors);
      WorkerLimits limits = docpipe::read_worker_limits(reader);
      if (!reader.ok()) return nullptr;
      return docpipe::isolated_step("test.isolated_probe", params, limits,
                                    std::make_shared<ProbeStep>());
    },
    .isolated = true});

Result<std::string> probe(const std::string& text, const json& params = json::object()) {
  AddressSpaceCap cap(rlim_t{4} << 30);
  return run_chunked(*docpipe::test::make_step("test.isolated_probe", params), text, 0);
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

// The line of /proc/PID/limits or /proc/PID/status that starts with `name`.
std::string proc_line(pid_t pid, const std::string& file, const std::string& name) {
  std::string text = read_text("/proc/" + std::to_string(pid) + "/" + file);
  size_t at = text.find(name);
  if (at == std::string::npos) return "";
  std::string line = text.substr(at, text.find('\n', at) - at);
  // Collapse runs of spaces, for readable comparisons.
  std::string out;
  for (char c : line)
    if (!(c == ' ' && !out.empty() && out.back() == ' ')) out += c;
  return out;
}

}  // namespace

TEST_CASE("isolation: a document is transformed in a worker process, which is reused") {
  Result<std::string> first = probe("echo hello");
  REQUIRE(first.has_value());
  CHECK(first->rfind("hello pid ", 0) == 0);
  const std::string worker_pid = first->substr(10);
  CHECK(worker_pid != std::to_string(::getpid()));
  Result<std::string> second = probe("echo again");
  REQUIRE(second.has_value());
  CHECK(*second == "again pid " + worker_pid);  // the idle worker served it
}

TEST_CASE("isolation: the worker runs with its rlimits, no new privileges and a seccomp filter") {
  WorkerKey key{"test.isolated_probe", WorkerLimits{.memory_bytes = 200u << 20, .cpu_seconds = 7},
                ""};
  Result<std::unique_ptr<docpipe::WorkerProcess>> w = docpipe::WorkerProcess::start(key);
  REQUIRE(w.has_value());
  const pid_t pid = (*w)->pid();
  // RLIMIT_AS: the worker's own mappings when its sandbox closed, plus the 200 MiB a document may
  // use. Its size now is at least what it was then.
  const std::string as_line = proc_line(pid, "limits", "Max address space");
  unsigned long long soft = 0, hard = 0;
  REQUIRE(std::sscanf(as_line.c_str(), "Max address space %llu %llu bytes", &soft, &hard) == 2);
  CHECK(soft == hard);
  unsigned long long vm_kib = 0;
  REQUIRE(std::sscanf(proc_line(pid, "status", "VmSize:").c_str(), "VmSize: %llu kB", &vm_kib) ==
          1);
  const unsigned long long own = soft - (200ull << 20);
  CHECK(soft > (200ull << 20) + (4ull << 20));  // the binary alone maps more than 4 MiB
  CHECK(own <= vm_kib * 1024);
  INFO("own mappings at sandbox entry: " << own << " bytes; now " << vm_kib * 1024);
  CHECK(own > vm_kib * 1024 / 2);
  CHECK(proc_line(pid, "limits", "Max cpu time") == "Max cpu time 7 12 seconds ");
  CHECK(proc_line(pid, "limits", "Max open files") == "Max open files 4 4 files ");
  CHECK(proc_line(pid, "limits", "Max core file size") == "Max core file size 0 0 bytes ");
  CHECK(proc_line(pid, "status", "NoNewPrivs") == "NoNewPrivs:\t1");
  CHECK(proc_line(pid, "status", "Seccomp:") == "Seccomp:\t2");
  // Only its pipes and stderr are open.
  CHECK(docpipe::test::process_running("__transform-worker test.isolated_probe"));
  int fds = 0;
  for (int fd = 0; fd < 64; ++fd) {
    if (::access(("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd)).c_str(), F_OK) == 0)
      ++fds;
  }
  CHECK(fds == 3);
}

TEST_CASE("isolation: a worker past its memory limit fails the document with the limit named") {
  Result<std::string> r = probe("alloc 300", json{{"worker_memory_bytes", 128 << 20}});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kTooLarge);
  CHECK(r.error().message ==
        "test.isolated_probe: worker exceeded its memory limit (128 MiB, worker_memory_bytes)");
  // Within the limit the same document succeeds, in a fresh worker.
  Result<std::string> fits = probe("alloc 30", json{{"worker_memory_bytes", 128 << 20}});
  REQUIRE(fits.has_value());
  CHECK(*fits == std::to_string(30u << 20));
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("isolation: system calls outside the worker's filter kill it, naming the cause") {
  for (const char* what : {"open", "socket", "fork"}) {
    CAPTURE(what);
    Result<std::string> r = probe(what);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == ErrorCode::kInternal);
    CHECK(r.error().message ==
          "test.isolated_probe: worker was killed for a forbidden system call (signal 31, Bad "
          "system call)");
  }
  CHECK(zombies_of(::getpid()) == 0);
}

TEST_CASE("isolation: a crashing worker fails only its document, with the signal") {
  Result<std::string> r = probe("segv");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kInternal);
  CHECK(r.error().message == "test.isolated_probe: worker crashed (signal 11, Segmentation fault)");
  Result<std::string> next = probe("echo fine");
  REQUIRE(next.has_value());
  CHECK(next->rfind("fine pid ", 0) == 0);
}

TEST_CASE("isolation: the transform's own error comes back as it is, and the worker is reused") {
  Result<std::string> before = probe("echo a");
  REQUIRE(before.has_value());
  Result<std::string> r = probe("fail");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::kCorruptInput);
  CHECK(r.error().message == "test.isolated_probe: told to fail");
  Result<std::string> after = probe("echo b");
  REQUIRE(after.has_value());
  CHECK(after->substr(2) == before->substr(2));
}

TEST_CASE("isolation: a worker past its CPU time limit is stopped, naming the limit") {
  AddressSpaceCap cap(rlim_t{4} << 30);
  auto step = docpipe::make_worker_step("test.isolated_probe", json::object(),
                                        WorkerLimits{.memory_bytes = 256u << 20, .cpu_seconds = 1},
                                        docpipe::WorkerOptions{});
  const auto start = Clock::now();
  Result<std::string> r = run_chunked(*step, "spin", 0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message == "test.isolated_probe: worker exceeded its CPU time limit (1 s)");
  CHECK(Clock::now() - start < std::chrono::seconds(10));
}

TEST_CASE("isolation: a timeout or cancel kills a busy worker within a poll interval") {
  AddressSpaceCap cap(rlim_t{4} << 30);
  auto step = docpipe::test::make_step("test.isolated_probe", json::object());
  for (ErrorCode code : {ErrorCode::kTimeout, ErrorCode::kCancelled}) {
    CAPTURE(static_cast<int>(code));
    const auto deadline = Clock::now() + milliseconds(300);
    Clock::time_point interrupted_at{};
    DocumentContext doc{"a/spin.txt", "spin.txt", [&]() -> Status {
                          if (Clock::now() < deadline) return docpipe::ok();
                          if (interrupted_at == Clock::time_point{}) interrupted_at = Clock::now();
                          return docpipe::make_error(
                              code, code == ErrorCode::kTimeout
                                        ? "a/spin.txt: timed out after 300 ms (document_timeout_ms)"
                                        : "cancelled");
                        }};
    auto t = step->begin(doc);
    std::string out;
    REQUIRE(t->update("spin", out).has_value());
    Status st = t->finish(out);
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().code == code);
    CHECK(st.error().message ==
          (code == ErrorCode::kTimeout
               ? "a/spin.txt: timed out after 300 ms (document_timeout_ms); test.isolated_probe: "
                 "worker killed"
               : "cancelled"));
    CHECK(Clock::now() - interrupted_at < milliseconds(1000));
    CHECK(zombies_of(::getpid()) == 0);
  }
}

TEST_CASE("isolation: an idle worker that died is replaced without failing a document") {
  Result<std::string> first = probe("echo one");
  REQUIRE(first.has_value());
  const pid_t pid = std::stoi(first->substr(first->rfind(' ') + 1));
  REQUIRE(::kill(pid, SIGKILL) == 0);
  // Dead (a zombie, not reaped yet) before the next document comes: waited for on a pidfd.
  REQUIRE(docpipe::test::exited_within(pid, milliseconds(5000)));
  REQUIRE(zombies_of(::getpid()) == 1);
  Result<std::string> second = probe("echo two");
  REQUIRE(second.has_value());
  CHECK(second->rfind("two pid ", 0) == 0);
  CHECK(*second != "two pid " + std::to_string(pid));
}

TEST_CASE("isolation: only a transform declared isolated can be served by a worker") {
  WorkerKey key{"identity", WorkerLimits{}, ""};
  Result<std::unique_ptr<docpipe::WorkerProcess>> w = docpipe::WorkerProcess::start(key);
  REQUIRE_FALSE(w.has_value());
  CHECK(w.error().message ==
        "identity: worker could not set up its sandbox (see the daemon's log)");
}
