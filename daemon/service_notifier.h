#pragma once
// systemd integration (sd_notify): READY/RELOADING/STOPPING, a STATUS= line, and WATCHDOG=1 from
// a loop timer at half of WATCHDOG_USEC, sent only while the daemon is healthy: the timer firing
// proves the loop runs, and the pipeline must be idle or have finished a document recently.
// Without NOTIFY_SOCKET every call is a cheap no-op.
//
// Messages go out through the notifier's own non-blocking datagram socket (MSG_DONTWAIT), never
// libsystemd's sd_notify, which blocks its caller while the socket's queue is full (10 datagrams
// by default) and would stall the loop. A ping that does not fit is dropped: the next tick sends a
// fresh one. A state change (READY, RELOADING, STOPPING) that does not fit is kept and retried at
// each tick until it is sent or replaced by a newer one.
//
// The stall is measured on the Clock it is given (a FakeClock in unit tests, which then call
// tick() by hand); the timer only decides when to look.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>

#include "core/clock.h"
#include "daemon/uv_handle.h"

namespace docpipe {

class ServiceNotifier {
 public:
  struct Health {
    bool busy = false;                // documents in flight or jobs queued
    uint64_t documents_finished = 0;  // monotonic
    int64_t stall_after_ms = 0;       // no progress this long while busy = unhealthy
    std::string status;               // one-line summary for STATUS=
  };
  using HealthFn = std::function<Health()>;

  ServiceNotifier(uv_loop_t* loop, HealthFn health, const Clock& clock = system_clock());
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  // Its timer must be closed (close() and a loop turn) before it is destroyed.
  ~ServiceNotifier();
  void start();  // starts the watchdog/status timer (when systemd asked for a watchdog: its period)
  // Closes the timer. The first close() calls `on_closed` once the loop is done with it (at once
  // if it was never started); a later close() calls nothing back.
  void close(std::function<void()> on_closed = nullptr);
  void ready();
  void reloading();
  void stopping();
  // What the timer does each period: retries a pending state, sends STATUS= and, while healthy,
  // WATCHDOG=1. Public so that a test on a fake clock can tick by hand.
  void tick();

 private:
  // Sends one datagram to $NOTIFY_SOCKET without blocking. True if sent, or if there is nowhere
  // to send it (no NOTIFY_SOCKET, or an address that can never work); false if it should be
  // retried (queue full, or the socket is missing for now).
  bool send(const std::string& message);
  void send_state(std::string message);

  uv_loop_t* loop_;
  HealthFn health_;
  const Clock& clock_;
  UvHandle<uv_timer_t> timer_;
  bool watchdog_ = false;
  uint64_t last_finished_ = 0;
  Clock::time_point last_progress_;
  bool stalled_logged_ = false;
  int fd_ = -1;                // our datagram socket, opened at the first send
  std::string pending_state_;  // a state message still to send, retried at each tick
  bool drop_logged_ = false;   // one log line per run of dropped messages
};

}  // namespace docpipe
