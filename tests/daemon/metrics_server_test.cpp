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

// METHOD PATH with HTTP/1.0: the server closes the connection after the response, so reading
// to the end blocks only until the whole response is in.
std::string request_of(int port, const std::string& method, const std::string& path,
                       const std::string& headers = "") {
  int fd = connect_to(port);
  REQUIRE(fd >= 0);
  std::string request = method + " " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n" + headers + "\r\n";
  REQUIRE(::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size()));
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) response.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return response;
}

std::string get_metrics(int port) { return request_of(port, "GET", "/metrics"); }

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

TEST_CASE("metrics server: a route answers GET and HEAD below its path; other methods get 405") {
  docpipe::MetricsServer server("127.0.0.1:0");
  server.add_route("/things", [](const docpipe::HttpRequest& r) {
    docpipe::HttpReply reply = docpipe::HttpReply::json(200, "{\"path\":\"" + r.path + "\"}");
    reply.headers = {{"X-Auth", r.authorization}};
    return reply;
  });
  int port = server.port();
  std::string got = request_of(port, "GET", "/things/a%20b", "Authorization: Bearer t\r\n");
  CHECK(got.find("HTTP/1.1 200 OK") == 0);
  CHECK(got.find("Content-Type: application/json") != std::string::npos);
  CHECK(got.find("X-Auth: Bearer t") != std::string::npos);
  CHECK(got.find("{\"path\":\"/things/a b\"}") != std::string::npos);
  std::string head = request_of(port, "HEAD", "/things");
  CHECK(head.find("HTTP/1.1 200 OK") == 0);
  CHECK(head.find("Content-Length: 18") != std::string::npos);
  CHECK(head.find("{\"path\"") == std::string::npos);  // no body for HEAD
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH"}) {
    CAPTURE(method);
    std::string refused = request_of(port, method, "/things");
    CHECK(refused.find("HTTP/1.1 405") == 0);
    CHECK(refused.find("Allow: GET, HEAD") != std::string::npos);
  }
  // /metrics is itself a route and still serves the registry.
  CHECK(get_metrics(port).find("docpipe_build_info") != std::string::npos);
}
