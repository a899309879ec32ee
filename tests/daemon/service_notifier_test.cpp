// ServiceNotifier talking to a datagram socket bound by the test: it pings the watchdog while the
// daemon is idle or making progress, withholds the ping once busy work has made no progress for
// stall_after_ms (so systemd restarts a stuck daemon), and resumes when documents finish again.
// The stall is measured on a fake clock with ticks by hand; one test lets the loop's timer tick.

#include "daemon/service_notifier.h"

#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/fake_clock.h"

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

  int fd() const { return fd_; }

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

}  // namespace

TEST_CASE("service notifier: pings while healthy, withholds the ping when stalled, resumes") {
  // A watchdog period far away: the test ticks by hand on a fake clock, the timer never fires.
  NotifyEnvironment env("3600000000");
  uv_loop_t loop;
  uv_loop_init(&loop);
  docpipe::test::FakeClock clock;

  ServiceNotifier::Health health;
  health.status = "0 job(s) running";
  health.stall_after_ms = 60;
  ServiceNotifier notifier(
      &loop, [&health] { return health; }, clock);
  notifier.start();
  const std::string ping = "STATUS=0 job(s) running\nWATCHDOG=1";
  const std::string no_ping = "STATUS=0 job(s) running";

  // Idle counts as healthy, however long it lasts.
  for (int i = 0; i < 3; ++i) {
    clock.advance(std::chrono::minutes(10));
    notifier.tick();
    CHECK(env.take() == std::vector<std::string>{ping});
  }
  // Work arrives and nothing finishes: the ping goes on for stall_after_ms, then stops.
  health.busy = true;
  notifier.tick();
  CHECK(env.take() == std::vector<std::string>{ping});
  clock.advance(std::chrono::milliseconds(60));
  notifier.tick();
  CHECK(env.take() == std::vector<std::string>{ping});
  clock.advance(std::chrono::milliseconds(1));
  for (int i = 0; i < 5; ++i) {
    notifier.tick();
    CHECK(env.take() == std::vector<std::string>{no_ping});  // the status goes on, the ping not
    clock.advance(std::chrono::milliseconds(10));
  }
  // A finished document is progress: the ping resumes at once, and the wait starts again.
  health.documents_finished += 1;
  notifier.tick();
  CHECK(env.take() == std::vector<std::string>{ping});
  clock.advance(std::chrono::milliseconds(61));
  notifier.tick();
  CHECK(env.take() == std::vector<std::string>{no_ping});

  notifier.close();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("service notifier: start() ticks on a loop timer and close() calls back") {
  NotifyEnvironment env("20000");  // a 20 ms watchdog: a tick every 10 ms
  uv_loop_t loop;
  uv_loop_init(&loop);
  ServiceNotifier::Health health;
  health.status = "idle";
  ServiceNotifier notifier(&loop, [&health] { return health; });
  notifier.start();

  // The loop blocks until a datagram arrives on the test's socket (or the deadline passes).
  struct Wait {
    NotifyEnvironment* env;
    std::vector<std::string> got;
    uv_poll_t poll;
    uv_timer_t deadline;
  } wait{&env, {}, {}, {}};
  uv_poll_init(&loop, &wait.poll, env.fd());
  wait.poll.data = &wait;
  uv_poll_start(&wait.poll, UV_READABLE, [](uv_poll_t* p, int, int) {
    auto* w = static_cast<Wait*>(p->data);
    for (std::string& m : w->env->take()) w->got.push_back(std::move(m));
    if (w->got.size() >= 3) uv_stop(p->loop);
  });
  uv_timer_init(&loop, &wait.deadline);
  uv_timer_start(
      &wait.deadline, [](uv_timer_t* t) { uv_stop(t->loop); }, 10000, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  REQUIRE(wait.got.size() >= 3);
  for (const std::string& m : wait.got) CHECK(m == "STATUS=idle\nWATCHDOG=1");

  bool closed = false;
  notifier.close([&] { closed = true; });
  notifier.close([] { FAIL("a second close() calls back"); });
  uv_close(reinterpret_cast<uv_handle_t*>(&wait.poll), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&wait.deadline), nullptr);
  CHECK_FALSE(closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(closed);
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
  // 50 ticks plus READY and STOPPING go far past that. The ticks run on a thread of their own, so
  // that a blocking send (the bug) fails the test instead of hanging it.
  NotifyEnvironment env("3600000000");
  uv_loop_t loop;
  uv_loop_init(&loop);
  ServiceNotifier notifier(&loop, [] {
    ServiceNotifier::Health h;
    h.status = "idle";
    return h;
  });
  notifier.start();

  std::promise<void> finished;
  std::future<void> done = finished.get_future();
  std::thread runner([&] {
    notifier.ready();
    for (int i = 0; i < 50; ++i) notifier.tick();
    notifier.stopping();  // the queue is full: kept for the next tick
    finished.set_value();
  });
  CHECK(done.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
  // A blocked sender (the bug) is released by reading, so that the test ends either way.
  while (done.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    pollfd p{env.fd(), POLLIN, 0};
    ::poll(&p, 1, 100);
    env.take();
  }
  runner.join();

  // Once systemd reads again, the STOPPING that did not fit is delivered by the next tick.
  std::vector<std::string> got = env.take();
  CHECK(got.size() <= 12);  // what the queue held: the rest was dropped, not queued in memory
  CHECK(std::find(got.begin(), got.end(), "STOPPING=1") == got.end());
  notifier.tick();
  got = env.take();
  CHECK(std::find(got.begin(), got.end(), "STOPPING=1") != got.end());

  notifier.close();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}
