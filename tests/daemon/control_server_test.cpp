// ControlServer on a real libuv loop with a real Unix socket: a client that sends requests but
// never reads its replies makes the server stop reading from it (bounded backlog) until it reads
// again, and a backlog over the hard cap closes the connection. Each connection carries its
// peer's credentials. Idleness is measured on a FakeClock; the loop blocks on its events (a guard
// timer fails a wait that would hang), and no test waits on the wall clock.

#include "daemon/control_server.h"

#include <doctest/doctest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <string>

#include "tests/support/fake_clock.h"
#include "tests/support/uv_run_until.h"

namespace docpipe {
namespace {

class ServerFixture {
 public:
  explicit ServerFixture(ControlLimits limits, size_t reply_bytes) : reply_bytes_(reply_bytes) {
    char tmpl[] = "/tmp/docpipe-control-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    path_ = dir_ + "/control.sock";
    uv_loop_init(&loop_);
    server_ = std::make_unique<ControlServer>(
        &loop_, path_, limits,
        [this](ControlRequest, const Credentials& peer, ControlServer::Reply reply) {
          ++handled_;
          peer_ = peer;
          reply({{"ok", true}, {"pad", std::string(reply_bytes_, 'x')}});
        },
        clock_);
    REQUIRE(server_->start().empty());
  }
  ~ServerFixture() {
    if (client_ >= 0) ::close(client_);
    server_->close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop_) == 0);
    ::rmdir(dir_.c_str());
  }

  void connect() {
    client_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    REQUIRE(client_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(::connect(client_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }

  // Sends all of `data`, turning the loop while the socket is full.
  void send_all(std::string data) {
    size_t off = 0;
    REQUIRE(run_until([&] {
      ssize_t n = ::send(client_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n > 0) off += static_cast<size_t>(n);
      return off == data.size();
    }));
  }

  // Turns the loop `turns` times without blocking: the server has that many turns to do what it
  // will with what the client sent (a Unix socket delivers at once).
  void run_turns(int turns) {
    for (int i = 0; i < turns; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  }

  // Reads whatever is there; returns the byte count (0 also on EOF, see `eof`).
  size_t drain(bool* eof = nullptr) {
    size_t total = 0;
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(client_, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        total += static_cast<size_t>(n);
        continue;
      }
      if (n == 0 && eof != nullptr) *eof = true;
      return total;
    }
  }

  // Turns the loop until `done()` holds (see uv_run_until); a wait that would hang fails.
  bool run_until(const std::function<bool()>& done) {
    bool ok = test::uv_run_until(&loop_, done);
    CHECK(ok);
    return ok;
  }

  test::FakeClock& clock() { return clock_; }
  const std::string& path() const { return path_; }
  ControlServer& server() { return *server_; }
  int handled() const { return handled_; }
  const Credentials& peer() const { return peer_; }

 private:
  size_t reply_bytes_;
  test::FakeClock clock_;
  std::string dir_, path_;
  uv_loop_t loop_{};
  std::unique_ptr<ControlServer> server_;
  int client_ = -1;
  int handled_ = 0;
  Credentials peer_;
};

std::string requests(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += "{\"op\":\"list\"}\n";
  return out;
}

TEST_CASE("control server: a client that does not read pauses its requests until it reads") {
  ControlLimits limits;
  limits.backlog_pause_bytes = 1u << 20;
  ServerFixture f(limits, 256u << 10);
  f.connect();
  f.send_all(requests(100));
  f.run_turns(50);
  // 1 MiB of unread 256 KiB replies (plus what the kernel buffers) stops the taking.
  INFO("handled: " << f.handled());
  CHECK(f.handled() >= 4);
  CHECK(f.handled() <= 20);
  // Reading lets it go on, to the last request.
  CHECK(f.run_until([&] {
    f.drain();
    return f.handled() == 100;
  }));
  CHECK(f.peer().uid == ::geteuid());
  CHECK(f.peer().gid == ::getegid());
}

TEST_CASE("control server: a reply backlog over the hard cap closes the connection") {
  ControlLimits limits;
  limits.backlog_pause_bytes = 1u << 20;
  limits.backlog_max_bytes = 2u << 20;
  ServerFixture f(limits, 3u << 20);
  f.connect();
  f.send_all(requests(1));
  CHECK(f.run_until([&] { return f.server().connection_count() == 0; }));
  CHECK(f.handled() == 1);
}

TEST_CASE("control server: a quiet connection is closed after idle_timeout_ms by the clock") {
  ControlLimits limits;
  limits.idle_timeout_ms = 1000;
  ServerFixture f(limits, 16);
  f.connect();
  REQUIRE(f.run_until([&] { return f.server().connection_count() == 1; }));
  f.send_all(requests(1));
  REQUIRE(f.run_until([&] { return f.handled() == 1 && f.drain() > 0; }));
  // The reply was written at this fake time; the sweep looks at the clock, not at the loop's.
  f.clock().advance(std::chrono::milliseconds(999));
  f.server().close_idle();
  CHECK(f.server().connection_count() == 1);
  f.clock().advance(std::chrono::milliseconds(1));
  f.server().close_idle();
  CHECK(f.server().connection_count() == 0);
  bool eof = false;
  CHECK(f.run_until([&] {
    f.drain(&eof);
    return eof;
  }));
}

TEST_CASE("control server: close() calls back once the listener and every connection closed") {
  ServerFixture f(ControlLimits{}, 16);
  f.connect();
  REQUIRE(f.run_until([&] { return f.server().connection_count() == 1; }));
  int closed = 0;
  f.server().close([&closed] { ++closed; });
  f.server().close([&closed] { closed += 10; });  // the first close() owns the callback
  CHECK(closed == 0);
  CHECK(f.server().connection_count() == 0);
  CHECK(::access(f.path().c_str(), F_OK) != 0);  // the socket file is gone
  CHECK(f.run_until([&] { return closed != 0; }));
  CHECK(closed == 1);
}

}  // namespace
}  // namespace docpipe
