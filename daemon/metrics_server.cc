#include "daemon/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "daemon/command_pool_metrics.h"
#include "daemon/daemon_metrics.h"

namespace docpipe {

namespace {

std::string listen_host(const std::string& listen) { return listen.substr(0, listen.rfind(':')); }

}  // namespace

MetricsServer::MetricsServer(const std::string& listen)
    : listen_(listen), registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::BuildGauge()
      .Name("docpipe_build_info")
      .Help("docpipe version; always 1")
      .Register(*registry_)
      .Add({{"version", DOCPIPE_VERSION}})
      .Set(1);
  try {
    // civetweb holds a worker per connection until its request arrives: with the default 2
    // workers and 30 s request timeout, two idle connections stalled every scrape for 30 s.
    // More workers than a scraper needs, and an idle connection dropped after 1 s.
    exposer_ = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", listen_, "num_threads", "8", "request_timeout_ms", "1000"});
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot serve metrics on " + listen_ + ": " + e.what() +
                             " (is the port in use? set metrics_listen)");
  }
  exposer_->RegisterCollectable(registry_);
  process_collector_ = make_process_collector();
  exposer_->RegisterCollectable(process_collector_);
  pool_collector_ = make_command_pool_collector();
  exposer_->RegisterCollectable(pool_collector_);
}

MetricsServer::~MetricsServer() { stop(); }

int MetricsServer::port() const {
  if (!exposer_) return 0;
  std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

std::string MetricsServer::address() const {
  return listen_host(listen_) + ":" + std::to_string(port());
}

// civetweb's listener thread notices the stop request only when its poll() returns, which without
// traffic takes its full 2 s quantum; connecting to it now and then wakes it at once.
void MetricsServer::stop() {
  if (!exposer_) return;
  int bound = port();
  std::string host = listen_host(listen_);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  std::atomic<bool> stopped{false};
  std::thread waker;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  if (bound != 0) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
    if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons(static_cast<uint16_t>(bound));
      addr_len = sizeof *v4;
    } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(static_cast<uint16_t>(bound));
      addr_len = sizeof *v6;
    }
  }
  if (addr_len != 0) {
    waker = std::thread([&] {
      while (!stopped.load()) {
        int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
          ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), addr_len);
          ::close(fd);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
  }
  exposer_.reset();
  stopped = true;
  if (waker.joinable()) waker.join();
}

}  // namespace docpipe
