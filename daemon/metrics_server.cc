#include "daemon/metrics_server.h"

#include <CivetServer.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
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

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

void send_reply(mg_connection* conn, const HttpReply& reply) {
  std::string head = "HTTP/1.1 " + std::to_string(reply.status) + " " +
                     reason_phrase(reply.status) + "\r\nContent-Type: " + reply.content_type +
                     "\r\nContent-Length: " + std::to_string(reply.body.size()) +
                     "\r\nCache-Control: no-store\r\n";
  for (const auto& [name, value] : reply.headers) head += name + ": " + value + "\r\n";
  head += "\r\n";
  mg_write(conn, head.data(), head.size());
  const mg_request_info* info = mg_get_request_info(conn);
  if (info == nullptr || std::string_view(info->request_method) != "HEAD") {
    mg_write(conn, reply.body.data(), reply.body.size());
  }
}

// GET (and HEAD) through `route`; any other method is refused, since every route is read-only.
class RouteHandler : public CivetHandler {
 public:
  explicit RouteHandler(HttpRoute route) : route_(std::move(route)) {}
  bool handleGet(CivetServer*, mg_connection* conn) override { return serve(conn); }
  bool handleHead(CivetServer*, mg_connection* conn) override { return serve(conn); }
  bool handlePost(CivetServer*, mg_connection* conn) override { return refuse(conn); }
  bool handlePut(CivetServer*, mg_connection* conn) override { return refuse(conn); }
  bool handleDelete(CivetServer*, mg_connection* conn) override { return refuse(conn); }
  bool handlePatch(CivetServer*, mg_connection* conn) override { return refuse(conn); }
  bool handleOptions(CivetServer*, mg_connection* conn) override { return refuse(conn); }

 private:
  bool serve(mg_connection* conn) {
    const mg_request_info* info = mg_get_request_info(conn);
    HttpRequest request;
    if (info != nullptr && info->local_uri != nullptr) request.path = info->local_uri;
    if (const char* auth = mg_get_header(conn, "Authorization")) request.authorization = auth;
    if (info != nullptr) request.remote_addr = info->remote_addr;
    HttpReply reply;
    try {
      reply = route_(request);
    } catch (const std::exception& e) {
      reply = HttpReply::text(500, std::string("internal error: ") + e.what() + "\n");
    }
    send_reply(conn, reply);
    return true;
  }
  static bool refuse(mg_connection* conn) {
    HttpReply reply = HttpReply::text(405, "read-only: only GET is served here\n");
    reply.headers = {{"Allow", "GET, HEAD"}};
    send_reply(conn, reply);
    return true;
  }
  HttpRoute route_;
};

}  // namespace

MetricsServer::MetricsServer(const std::string& listen)
    : listen_(listen), registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::BuildGauge()
      .Name("docpipe_build_info")
      .Help("docpipe version; always 1")
      .Register(*registry_)
      .Add({{"version", DOCPIPE_VERSION}})
      .Set(1);
  collectables_ = {registry_, make_process_collector(), make_command_pool_collector()};
  try {
    // civetweb holds a worker per connection until its request arrives: with the default 2
    // workers and 30 s request timeout, two idle connections stalled every scrape for 30 s.
    // More workers than a scraper needs, and an idle connection dropped after 1 s.
    server_ = std::make_unique<CivetServer>(std::vector<std::string>{
        "listening_ports", listen_, "num_threads", "8", "request_timeout_ms", "1000"});
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot serve metrics on " + listen_ + ": " + e.what() +
                             " (is the port in use? set metrics_listen)");
  }
  add_route("/metrics", [collectables = collectables_](const HttpRequest&) {
    std::vector<prometheus::MetricFamily> families;
    for (const auto& c : collectables) {
      auto part = c->Collect();
      families.insert(families.end(), std::make_move_iterator(part.begin()),
                      std::make_move_iterator(part.end()));
    }
    HttpReply reply = HttpReply::text(200, prometheus::TextSerializer().Serialize(families));
    reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return reply;
  });
}

MetricsServer::~MetricsServer() { stop(); }

void MetricsServer::add_route(const std::string& uri, HttpRoute route) {
  if (!server_) return;
  handlers_.push_back(std::make_unique<RouteHandler>(std::move(route)));
  server_->addHandler(uri, handlers_.back().get());
}

int MetricsServer::port() const {
  if (!server_) return 0;
  std::vector<int> ports = server_->getListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

std::string MetricsServer::address() const {
  return listen_host(listen_) + ":" + std::to_string(port());
}

// civetweb's listener thread notices the stop request only when its poll() returns, which without
// traffic takes its full 2 s quantum; connecting to it now and then wakes it at once.
void MetricsServer::stop() {
  if (!server_) return;
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
  server_.reset();
  stopped = true;
  if (waker.joinable()) waker.join();
}

}  // namespace docpipe
