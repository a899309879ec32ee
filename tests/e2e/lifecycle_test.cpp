// The daemon's process life cycle: start-up failure on a metrics port that is taken, and a clean
// exit 0 on SIGTERM and SIGINT.

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

// A listening TCP socket on 127.0.0.1 and a port the kernel picked, closed on destruction.
class HeldPort {
 public:
  HeldPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 4) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
  }
  ~HeldPort() { ::close(fd_); }
  HeldPort(const HeldPort&) = delete;
  HeldPort& operator=(const HeldPort&) = delete;

  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_CASE("e2e lifecycle: a metrics port in use stops start-up with an error naming the address") {
  TempDir tmp;
  HeldPort held;
  const std::string address = "127.0.0.1:" + std::to_string(held.port());
  DaemonProcess daemon(tmp / "spool", {});
  daemon.set_metrics_listen(address);
  daemon.spawn();
  int code = daemon.wait_exit();
  std::string log = daemon.log();
  INFO("log:\n" << log);
  CHECK(code == 1);
  CHECK(log.find("cannot serve metrics on " + address) != std::string::npos);
  CHECK(log.find(" docpipe ready ") == std::string::npos);
}

TEST_CASE("e2e lifecycle: SIGTERM stops a running daemon with exit code 0") {
  TempDir tmp;
  DaemonProcess daemon(tmp / "spool", {});
  daemon.start();
  std::vector<MetricSample> metrics = parse_prometheus_text(daemon.scrape());
  bool has_build_info = false;
  for (const MetricSample& s : metrics) {
    if (s.name == "docpipe_build_info" && s.labels.count("version") == 1 && s.value == 1) {
      has_build_info = true;
    }
  }
  CHECK(has_build_info);
  CHECK(metric_value(metrics, "docpipe_jobs_active") == 0);
  CHECK(daemon.terminate() == 0);
  INFO("log:\n" << daemon.log());
  CHECK(daemon.log_lines_with({" stopping ", "signal=SIGTERM"}).size() == 1);
  CHECK(daemon.log_lines_with({" docpipe stopped"}).size() == 1);
}

TEST_CASE("e2e lifecycle: SIGINT stops a running daemon with exit code 0") {
  TempDir tmp;
  DaemonProcess daemon(tmp / "spool", {});
  daemon.start();
  REQUIRE(::kill(daemon.pid(), SIGINT) == 0);
  CHECK(daemon.wait_exit() == 0);
  INFO("log:\n" << daemon.log());
  CHECK(daemon.log_lines_with({" stopping ", "signal=SIGINT"}).size() == 1);
}

}  // namespace
}  // namespace e2e
