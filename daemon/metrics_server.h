#pragma once
// What /metrics serves: one prometheus registry (the daemon's and the pipeline's stats register
// on it), the standard process_* metrics, the exec pools' docpipe_command_pool_* and
// docpipe_build_info, behind a prometheus-cpp Exposer (civetweb). stop() tears the exposer down
// promptly; the destructor stops it if needed.

#include <memory>
#include <string>

namespace prometheus {
class Collectable;
class Exposer;
class Registry;
}  // namespace prometheus

namespace docpipe {

class MetricsServer {
 public:
  // Listens on `listen` ("HOST:PORT", port 0: any free). Throws std::runtime_error with a clear
  // message when it cannot (the port is in use).
  explicit MetricsServer(const std::string& listen);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  prometheus::Registry& registry() { return *registry_; }
  // "HOST:PORT" actually bound (the port resolved when 0 was asked), for the log.
  std::string address() const;
  int port() const;  // 0 once stopped
  // Stops serving: no scrape runs once this returns. Idempotent.
  void stop();

 private:
  std::string listen_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  // The exposer holds collectables weakly: keep the process and pool collectors alive here.
  std::shared_ptr<prometheus::Collectable> process_collector_;
  std::shared_ptr<prometheus::Collectable> pool_collector_;
};

}  // namespace docpipe
