// The metrics server on an ephemeral port: /metrics serves docpipe_build_info, the process
// metrics and what is registered on its registry; stop() closes the port promptly.

#include "daemon/metrics_server.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>

namespace {

int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// GET /metrics with HTTP/1.0: the server closes the connection after the response, so reading
// to the end blocks only until the whole response is in.
std::string get_metrics(int port) {
  int fd = connect_to(port);
  REQUIRE(fd >= 0);
  std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  REQUIRE(::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size()));
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) response.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return response;
}

}  // namespace

TEST_CASE("metrics server: serves build info, process metrics and its registry on /metrics") {
  docpipe::MetricsServer server("127.0.0.1:0");
  int port = server.port();
  REQUIRE(port > 0);
  CHECK(server.address() == "127.0.0.1:" + std::to_string(port));
  prometheus::BuildCounter()
      .Name("docpipe_test_things_total")
      .Help("a test counter")
      .Register(server.registry())
      .Add({})
      .Increment(3);
  std::string body = get_metrics(port);
  CHECK(body.find("200 OK") != std::string::npos);
  CHECK(body.find("docpipe_build_info{version=\"" DOCPIPE_VERSION "\"} 1") != std::string::npos);
  CHECK(body.find("docpipe_test_things_total 3") != std::string::npos);
  CHECK(body.find("process_open_fds ") != std::string::npos);
  CHECK(body.find("process_resident_memory_bytes ") != std::string::npos);
}

TEST_CASE("metrics server: stop closes the port and can be called twice") {
  docpipe::MetricsServer server("127.0.0.1:0");
  int port = server.port();
  REQUIRE(port > 0);
  server.stop();
  CHECK(server.port() == 0);
  CHECK(connect_to(port) == -1);
  server.stop();
}

TEST_CASE("metrics server: a port in use is a clear start-up error") {
  docpipe::MetricsServer first("127.0.0.1:0");
  std::string taken = "127.0.0.1:" + std::to_string(first.port());
  CHECK_THROWS_WITH_AS(docpipe::MetricsServer{taken},
                       doctest::Contains("is the port in use? set metrics_listen"),
                       std::runtime_error);
}
