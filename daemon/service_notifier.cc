#include "daemon/service_notifier.h"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <algorithm>

#include "daemon/log.h"

namespace docpipe {

ServiceNotifier::ServiceNotifier(uv_loop_t* loop, HealthFn health)
    : loop_(loop), health_(std::move(health)) {}

void ServiceNotifier::start() {
  uint64_t usec = 0;
  watchdog_ = sd_watchdog_enabled(0, &usec) > 0 && usec > 0;
  // Half the watchdog period, as sd_watchdog_enabled(3) advises; otherwise refresh STATUS= at 5 s.
  uint64_t period_ms = watchdog_ ? std::max<uint64_t>(usec / 2000, 1) : 5000;
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  started_ = true;
  last_progress_ms_ = uv_now(loop_);
  uv_timer_start(
      &timer_, [](uv_timer_t* t) { static_cast<ServiceNotifier*>(t->data)->tick(); }, period_ms,
      period_ms);
  // A timer alone must not keep the loop alive once everything else has closed.
  uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));
}

void ServiceNotifier::close() {
  if (closed_ || !started_) return;
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

void ServiceNotifier::ready() { sd_notify(0, "READY=1"); }

void ServiceNotifier::reloading() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t usec =
      static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
  // MONOTONIC_USEC is what Type=notify-reload expects; plain Type=notify ignores it.
  sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", static_cast<unsigned long long>(usec));
}

void ServiceNotifier::stopping() { sd_notify(0, "STOPPING=1"); }

void ServiceNotifier::tick() {
  Health h = health_();
  uint64_t now = uv_now(loop_);
  if (!h.busy || h.documents_finished != last_finished_) {
    last_finished_ = h.documents_finished;
    last_progress_ms_ = now;
  }
  bool stalled = h.busy && h.stall_after_ms > 0 &&
                 now - last_progress_ms_ > static_cast<uint64_t>(h.stall_after_ms);
  if (stalled && !stalled_logged_) {
    log_error("pipeline stalled: work is queued but no document finished; withholding watchdog",
              {{"seconds", std::to_string((now - last_progress_ms_) / 1000)}});
  }
  stalled_logged_ = stalled;
  std::string msg = "STATUS=" + h.status;
  if (watchdog_ && !stalled) msg += "\nWATCHDOG=1";
  sd_notify(0, msg.c_str());
}

}  // namespace docpipe
