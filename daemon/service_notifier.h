#pragma once
// systemd integration (sd_notify): READY/RELOADING/STOPPING, a STATUS= line, and WATCHDOG=1 from
// a loop timer at half of WATCHDOG_USEC, sent only while the daemon is healthy: the timer firing
// proves the loop runs, and the pipeline must be idle or have finished a document recently.
// Without NOTIFY_SOCKET every call is a cheap no-op.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>

namespace docpipe {

class ServiceNotifier {
 public:
  struct Health {
    bool busy = false;                 // documents in flight or jobs queued
    uint64_t documents_finished = 0;   // monotonic
    int64_t stall_after_ms = 0;        // no progress this long while busy = unhealthy
    std::string status;                // one-line summary for STATUS=
  };
  using HealthFn = std::function<Health()>;

  ServiceNotifier(uv_loop_t* loop, HealthFn health);
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  void start();  // starts the watchdog/status timer (when systemd asked for a watchdog: its period)
  void close();
  void ready();
  void reloading();
  void stopping();

 private:
  void tick();

  uv_loop_t* loop_;
  HealthFn health_;
  uv_timer_t timer_{};
  bool started_ = false;
  bool closed_ = false;
  bool watchdog_ = false;
  uint64_t last_finished_ = 0;
  uint64_t last_progress_ms_ = 0;
  bool stalled_logged_ = false;
};

}  // namespace docpipe
