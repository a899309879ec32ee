#include "daemon/service_notifier.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "daemon/log.h"

namespace docpipe {

ServiceNotifier::ServiceNotifier(uv_loop_t* loop, HealthFn health, const Clock& clock)
    : loop_(loop), health_(std::move(health)), clock_(clock), last_progress_(clock.now()) {}

ServiceNotifier::~ServiceNotifier() {
  if (fd_ >= 0) ::close(fd_);
}

bool ServiceNotifier::send(const std::string& message) {
  const char* target = std::getenv("NOTIFY_SOCKET");
  if (target == nullptr || target[0] == '\0') return true;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t len = std::strlen(target);
  // A path, or '@' for an abstract name (sd_notify(3)); anything else can never be sent to.
  if ((target[0] != '/' && target[0] != '@') || len >= sizeof addr.sun_path) return true;
  std::memcpy(addr.sun_path, target, len);
  if (target[0] == '@') addr.sun_path[0] = '\0';
  // An abstract name's length is exact; a path's includes its terminating NUL.
  auto addr_len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len + (target[0] == '/' ? 1 : 0));
  if (fd_ < 0) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0) return false;
  }
  for (;;) {
    ssize_t n = ::sendto(fd_, message.data(), message.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                         reinterpret_cast<const sockaddr*>(&addr), addr_len);
    if (n >= 0) {
      drop_logged_ = false;
      return true;
    }
    if (errno != EINTR) break;
  }
  if (!drop_logged_) {
    // EAGAIN: systemd has not read the last 10 or so messages; the loop must not wait for it.
    log_warn("cannot send to the service manager now; not waiting for it",
             {{"notify_socket", target}, {"error", std::strerror(errno)}});
    drop_logged_ = true;
  }
  return false;
}

void ServiceNotifier::send_state(std::string message) {
  // A newer state replaces one still waiting: READY after RELOADING says all that matters.
  pending_state_ = std::move(message);
  if (send(pending_state_)) pending_state_.clear();
}

void ServiceNotifier::start() {
  if (timer_.state() != UvHandle<uv_timer_t>::State::kUnopened) return;
  uint64_t usec = 0;
  watchdog_ = sd_watchdog_enabled(0, &usec) > 0 && usec > 0;
  // Half the watchdog period, as sd_watchdog_enabled(3) advises; otherwise refresh STATUS= at 5 s.
  uint64_t period_ms = watchdog_ ? std::max<uint64_t>(usec / 2000, 1) : 5000;
  if (timer_.open(this, [this](uv_timer_t* t) { return uv_timer_init(loop_, t); }) != 0) return;
  last_progress_ = clock_.now();
  uv_timer_start(
      timer_.get(),
      [](uv_timer_t* t) { UvHandle<uv_timer_t>::owner_of<ServiceNotifier>(t)->tick(); }, period_ms,
      period_ms);
  // A timer alone must not keep the loop alive once everything else has closed.
  uv_unref(timer_.base());
}

void ServiceNotifier::close(std::function<void()> on_closed) {
  if (timer_.state() == UvHandle<uv_timer_t>::State::kUnopened) {
    if (on_closed) on_closed();  // nothing was opened: closed already
    return;
  }
  timer_.close(std::move(on_closed));
}

void ServiceNotifier::ready() { send_state("READY=1"); }

void ServiceNotifier::reloading() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t usec =
      static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
  // MONOTONIC_USEC is what Type=notify-reload expects; plain Type=notify ignores it.
  send_state("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void ServiceNotifier::stopping() { send_state("STOPPING=1"); }

void ServiceNotifier::tick() {
  if (!pending_state_.empty() && send(pending_state_)) pending_state_.clear();
  Health h = health_();
  Clock::time_point now = clock_.now();
  if (!h.busy || h.documents_finished != last_finished_) {
    last_finished_ = h.documents_finished;
    last_progress_ = now;
  }
  auto quiet_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now - last_progress_).count();
  bool stalled = h.busy && h.stall_after_ms > 0 && quiet_ms > h.stall_after_ms;
  if (stalled && !stalled_logged_) {
    log_error("pipeline stalled: work is queued but no document finished; withholding watchdog",
              {{"seconds", std::to_string(quiet_ms / 1000)}});
  }
  stalled_logged_ = stalled;
  std::string msg = "STATUS=" + h.status;
  if (watchdog_ && !stalled) msg += "\nWATCHDOG=1";
  (void)send(msg);  // a ping that does not fit is dropped; the next tick sends a fresh one
}

}  // namespace docpipe
