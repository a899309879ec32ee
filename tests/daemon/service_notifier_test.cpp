// ServiceNotifier on a real libuv loop, talking to a datagram socket bound by the test: it pings
// the watchdog while the daemon is idle or making progress, withholds the ping once busy work has
// made no progress for stall_after_ms (so systemd restarts a stuck daemon), and resumes when
// documents finish again.

#include "daemon/service_notifier.h"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

using docpipe::ServiceNotifier;

namespace {

// NOTIFY_SOCKET for the duration of a test: a bound datagram socket and the environment pointing
// at it (sd_notify reads the environment on every call).
class NotifyEnvironment {
 public:
  // `abstract`: an abstract socket name, given to the notifier as "@NAME".
  explicit NotifyEnvironment(const char* watchdog_usec, bool abstract = false) {
    char tmpl[] = "/tmp/docpipe-notify-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    path_ = dir_ + "/notify.sock";
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    socklen_t len = sizeof addr;
    std::string env = path_;
    if (abstract) {
      // Unique per test folder; the leading NUL makes it abstract.
      std::string name = "docpipe-test" + dir_;
      std::memcpy(addr.sun_path + 1, name.c_str(), name.size());
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
      env = "@" + name;
    } else {
      std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    }
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0);
    ::setenv("NOTIFY_SOCKET", env.c_str(), 1);
    if (watchdog_usec != nullptr) ::setenv("WATCHDOG_USEC", watchdog_usec, 1);
    ::unsetenv("WATCHDOG_PID");
  }
  ~NotifyEnvironment() {
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
    ::close(fd_);
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }

  // The messages received since the last call.
  std::vector<std::string> take() {
    std::vector<std::string> out;
    char buf[1024];
    for (ssize_t n; (n = ::recv(fd_, buf, sizeof buf, 0)) >= 0;) out.emplace_back(buf, n);
    return out;
  }

 private:
  std::string dir_, path_;
  int fd_ = -1;
};

bool has_watchdog(const std::string& message) {
  return message.find("\nWATCHDOG=1") != std::string::npos;
}

}  // namespace

TEST_CASE("service notifier: pings while healthy, withholds the ping when stalled, resumes") {
  NotifyEnvironment env("20000");  // a 20 ms watchdog: a tick every 10 ms
  uv_loop_t loop;
  uv_loop_init(&loop);

  ServiceNotifier::Health health;
  health.status = "0 job(s) running";
  health.stall_after_ms = 60;
  ServiceNotifier notifier(&loop, [&health] { return health; });
  notifier.start();

  // Phases, advanced by a control timer as the messages arrive.
  enum class Phase { kIdle, kStalling, kStalled, kRecovered, kDone } phase = Phase::kIdle;
  std::vector<std::string> idle, stalled, recovered;
  int stalled_ticks = 0;
  struct Control {
    std::function<void()> step;
  } control;
  control.step = [&] {
    for (std::string& m : env.take()) {
      switch (phase) {
        case Phase::kIdle:
          idle.push_back(m);
          if (idle.size() >= 3) {
            // Work arrives and nothing finishes.
            health.busy = true;
            phase = Phase::kStalling;
          }
          break;
        case Phase::kStalling:
          // Until stall_after_ms has passed, the ping goes on; then it stops.
          if (!has_watchdog(m)) {
            stalled.push_back(m);
            phase = Phase::kStalled;
          }
          break;
        case Phase::kStalled:
          stalled.push_back(m);
          if (++stalled_ticks >= 5) {
            health.documents_finished += 1;  // progress again
            phase = Phase::kRecovered;
          }
          break;
        case Phase::kRecovered:
          recovered.push_back(m);
          if (has_watchdog(m)) phase = Phase::kDone;
          break;
        case Phase::kDone:
          break;
      }
    }
  };
  uv_timer_t timer;
  uv_timer_init(&loop, &timer);
  timer.data = &control;
  uv_timer_start(
      &timer,
      [](uv_timer_t* t) {
        auto* c = static_cast<Control*>(t->data);
        c->step();
      },
      2, 2);
  // A deadline, so that a broken notifier fails the test instead of hanging it.
  uv_timer_t deadline;
  uv_timer_init(&loop, &deadline);
  deadline.data = &loop;
  uv_timer_start(
      &deadline, [](uv_timer_t* t) { uv_stop(static_cast<uv_loop_t*>(t->data)); }, 20000, 0);

  while (phase != Phase::kDone && uv_run(&loop, UV_RUN_ONCE) != 0 && uv_loop_alive(&loop)) {
    if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&deadline))) break;
  }
  REQUIRE(phase == Phase::kDone);

  for (const std::string& m : idle) {
    CAPTURE(m);
    CHECK(m == "STATUS=0 job(s) running\nWATCHDOG=1");
  }
  REQUIRE(stalled.size() >= 5);
  for (const std::string& m : stalled) {
    CAPTURE(m);
    CHECK(m == "STATUS=0 job(s) running");  // the status goes on, the ping does not
  }
  CHECK(has_watchdog(recovered.back()));

  uv_timer_stop(&timer);
  uv_timer_stop(&deadline);
  notifier.close();
  uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&deadline), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("service notifier: READY, RELOADING with MONOTONIC_USEC and STOPPING are sent as is") {
  NotifyEnvironment env(nullptr);
  uv_loop_t loop;
  uv_loop_init(&loop);
  ServiceNotifier notifier(&loop, [] { return ServiceNotifier::Health{}; });
  notifier.ready();
  notifier.reloading();
  notifier.ready();
  notifier.stopping();
  const std::vector<std::string> got = env.take();
  REQUIRE(got.size() == 4);
  CHECK(got[0] == "READY=1");
  CHECK(got[1].rfind("RELOADING=1\nMONOTONIC_USEC=", 0) == 0);
  CHECK(std::strtoull(got[1].c_str() + std::strlen("RELOADING=1\nMONOTONIC_USEC="), nullptr, 10) >
        0);
  CHECK(got[2] == "READY=1");
  CHECK(got[3] == "STOPPING=1");
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("service notifier: an abstract NOTIFY_SOCKET (@name) is reached") {
  NotifyEnvironment env(nullptr, /*abstract=*/true);
  uv_loop_t loop;
  uv_loop_init(&loop);
  ServiceNotifier notifier(&loop, [] { return ServiceNotifier::Health{}; });
  notifier.ready();
  CHECK(env.take() == std::vector<std::string>{"READY=1"});
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("service notifier: a notify socket nobody reads never stalls the loop") {
  // The kernel queues about 10 datagrams for a reader that does not read (net.unix.max_dgram_qlen);
  // 50 pings (one a millisecond) plus READY and STOPPING go far past that.
  NotifyEnvironment env("2000");
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::atomic<int> ticks{0};
  ServiceNotifier notifier(&loop, [&ticks] {
    ++ticks;
    ServiceNotifier::Health h;
    h.status = "idle";
    return h;
  });
  notifier.start();

  // A probe timer every 5 ms: the largest gap between two firings shows any stall of the loop.
  struct Probe {
    uint64_t last_ns = 0;
    uint64_t worst_gap_ns = 0;
  } probe;
  uv_timer_t probe_timer;
  uv_timer_init(&loop, &probe_timer);
  probe_timer.data = &probe;
  uv_timer_start(
      &probe_timer,
      [](uv_timer_t* t) {
        auto* p = static_cast<Probe*>(t->data);
        uint64_t now = uv_hrtime();
        if (p->last_ns != 0) p->worst_gap_ns = std::max(p->worst_gap_ns, now - p->last_ns);
        p->last_ns = now;
      },
      5, 5);

  std::atomic<bool> finished{false};
  std::thread runner([&] {
    notifier.ready();
    while (ticks < 50) uv_run(&loop, UV_RUN_ONCE);
    notifier.stopping();  // the queue is full: kept for the next tick
    finished = true;
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!finished && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(finished.load());
  // A blocked sender (the bug) is released by reading, so that the test ends either way.
  while (!finished) {
    env.take();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  runner.join();
  INFO("worst gap between probe firings: " << probe.worst_gap_ns / 1000000 << " ms");
  CHECK(probe.worst_gap_ns < 200u * 1000000u);

  // Once systemd reads again, the STOPPING that did not fit is delivered by a later tick.
  std::vector<std::string> got = env.take();
  CHECK(got.size() <= 12);  // what the queue held: the rest was dropped, not queued in memory
  bool stopping = false;
  for (int i = 0; i < 200 && !stopping; ++i) {
    uv_run(&loop, UV_RUN_ONCE);
    for (const std::string& m : env.take()) stopping |= m == "STOPPING=1";
  }
  CHECK(stopping);

  notifier.close();
  uv_close(reinterpret_cast<uv_handle_t*>(&probe_timer), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}
