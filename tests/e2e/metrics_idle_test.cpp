// /metrics with idle TCP connections open: civetweb serves a connection on one worker until its
// request arrives, so a handful of connections that never send a request (a port scanner, a
// half-open client) stalled every scrape for 30 s with the 2 default workers, and DocpipeDown
// fired falsely. The daemon runs more workers and drops a connection idle for a second.

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

// Connects to HOST:PORT and sends nothing.
int open_idle_connection(const std::string& host_port) {
  size_t colon = host_port.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(host_port.substr(colon + 1))));
  REQUIRE(::inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &addr.sin_addr) == 1);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

// Scrapes once; returns how long the answer took (the scrape fails the test if it times out).
milliseconds timed_scrape(const DaemonProcess& daemon, milliseconds timeout) {
  auto start = Clock::now();
  HttpResponse r = http_get(daemon.metrics_address(), "/metrics", timeout);
  auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  CHECK(r.status == 200);
  CHECK(r.body.find("docpipe_build_info") != std::string::npos);
  return took;
}

TEST_CASE("e2e metrics: /metrics answers within a second while idle connections are open") {
  TempDir tmp;
  DaemonProcess daemon(tmp / "spool", {});
  daemon.start();
  std::vector<int> idle;
  // More than civetweb's default 2 workers, fewer than the daemon runs.
  for (int i = 0; i < 6; ++i) idle.push_back(open_idle_connection(daemon.metrics_address()));
  milliseconds took = timed_scrape(daemon, milliseconds(5000));
  INFO("scrape with 6 idle connections took " << took.count() << " ms");
  CHECK(took < milliseconds(1000));

  // More idle connections (12) than workers (8): the first 8 are dropped after request_timeout_ms
  // (1 s), which frees workers for the rest and the scrape: about 1 s, not 30 s.
  for (int i = 0; i < 6; ++i) idle.push_back(open_idle_connection(daemon.metrics_address()));
  took = timed_scrape(daemon, milliseconds(10000));
  INFO("scrape with 12 idle connections took " << took.count() << " ms");
  CHECK(took < milliseconds(3000));

  for (int fd : idle) ::close(fd);
  // Declared with the daemon's other intake metrics, at 0 until the inotify queue overflows.
  CHECK(daemon.metric("docpipe_intake_overflows_total") == 0);
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
