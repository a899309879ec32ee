#pragma once
// The daemon's HTTP listener (metrics_listen): /metrics serves one prometheus registry (the
// daemon's and the pipeline's stats register on it), the standard process_* metrics, the exec
// pools' docpipe_command_pool_* and docpipe_build_info; other read-only routes (the status
// endpoint's /healthz, /readyz, /jobs/ID: daemon/http_status.h) are added with add_route().
// civetweb serves requests on its own threads. stop() tears the server down promptly; the
// destructor stops it if needed.

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

class CivetServer;
class CivetHandler;

namespace prometheus {
class Collectable;
class Registry;
}  // namespace prometheus

namespace docpipe {

struct HttpRequest {
  std::string path;           // URL-decoded, e.g. "/jobs/nightly-1"
  std::string authorization;  // the Authorization header, "" if absent
  std::string remote_addr;
};

struct HttpReply {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers

  static HttpReply text(int status, std::string body) {
    HttpReply r;
    r.status = status;
    r.body = std::move(body);
    return r;
  }
  static HttpReply json(int status, std::string body) {
    HttpReply r = text(status, std::move(body));
    r.content_type = "application/json";
    return r;
  }
};

// Runs on civetweb's threads, several at once.
using HttpRoute = std::function<HttpReply(const HttpRequest&)>;

class MetricsServer {
 public:
  // Listens on `listen` ("HOST:PORT", port 0: any free). Throws std::runtime_error with a clear
  // message when it cannot (the port is in use).
  explicit MetricsServer(const std::string& listen);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  prometheus::Registry& registry() { return *registry_; }
  // Serves GET `uri` and every path below it ("/jobs" also answers "/jobs/ID") with `route`;
  // other methods get 405. Call before requests may reach it (at start-up).
  void add_route(const std::string& uri, HttpRoute route);
  // "HOST:PORT" actually bound (the port resolved when 0 was asked), for the log.
  std::string address() const;
  int port() const;  // 0 once stopped
  // Stops serving: no request handler runs once this returns. Idempotent.
  void stop();

 private:
  std::string listen_;
  std::shared_ptr<prometheus::Registry> registry_;
  // What /metrics collects: the registry, the process and the pool collectors.
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  // Handlers outlive the server that calls them (stop() destroys the server first).
  std::vector<std::unique_ptr<CivetHandler>> handlers_;
  std::unique_ptr<CivetServer> server_;
};

}  // namespace docpipe
