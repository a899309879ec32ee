#include "daemon/inotify_watch.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "daemon/log.h"

namespace docpipe {

namespace {

// What the events below the folder are about. IN_MOVE_SELF, IN_DELETE_SELF and IN_IGNORED say
// the watched folder itself went away (the watch then follows the old inode, or nothing).
constexpr uint32_t kWatchMask = IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO |
                                IN_MOVE_SELF | IN_DELETE_SELF | IN_ONLYDIR;
constexpr uint32_t kLostMask = IN_MOVE_SELF | IN_DELETE_SELF | IN_IGNORED | IN_UNMOUNT;
// Reads of the inotify descriptor per poll callback: the poll is level-triggered, so the rest
// waits for the next loop iteration instead of starving timers and other handles in a flood.
constexpr int kReadsPerCallback = 16;

}  // namespace

InotifyWatch::InotifyWatch(uv_loop_t* loop, std::string dir, EventFn on_event,
                           OverflowFn on_overflow)
    : loop_(loop),
      dir_(std::move(dir)),
      on_event_(std::move(on_event)),
      on_overflow_(std::move(on_overflow)) {}

int InotifyWatch::open() {
  fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd_ < 0) return -errno;
  int rc = poll_.open(this, [this](uv_poll_t* p) { return uv_poll_init(loop_, p, fd_); });
  if (rc != 0) {
    ::close(fd_);  // no handle watches it
    fd_ = -1;
    return rc;
  }
  rc = uv_poll_start(poll_.get(), UV_READABLE, [](uv_poll_t* h, int status, int) {
    auto* self = UvHandle<uv_poll_t>::owner_of<InotifyWatch>(h);
    if (status < 0) {
      log_error("watch folder error", {{"dir", self->dir_}, {"error", uv_strerror(status)}});
      return;
    }
    self->on_readable();
  });
  return rc != 0 ? rc : add_watch();
}

int InotifyWatch::add_watch() {
  wd_ = ::inotify_add_watch(fd_, dir_.c_str(), kWatchMask);
  return wd_ < 0 ? -errno : 0;
}

bool InotifyWatch::rewatch() { return wd_ < 0 && fd_ >= 0 && poll_.is_open() && add_watch() == 0; }

void InotifyWatch::close(std::function<void()> on_closed) {
  poll_.close([this, on_closed = std::move(on_closed)] {
    ::close(fd_);
    fd_ = -1;
    wd_ = -1;
    if (on_closed) on_closed();  // last: it may free this watch
  });
}

void InotifyWatch::on_readable() {
  // Aligned for struct inotify_event; one read returns whole events only.
  alignas(struct inotify_event) char buf[65536];
  for (int i = 0; i < kReadsPerCallback && poll_.is_open(); ++i) {
    ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) {
        log_error("cannot read inotify events", {{"dir", dir_}, {"error", std::strerror(errno)}});
      }
      return;
    }
    if (n == 0) return;
    // A callback may close the watch: then the rest of the buffer is dropped.
    for (const char* p = buf; p < buf + n && poll_.is_open();) {
      const auto* ev = reinterpret_cast<const struct inotify_event*>(p);
      p += sizeof(struct inotify_event) + ev->len;
      on_inotify_event(*ev);
    }
  }
}

void InotifyWatch::on_inotify_event(const struct inotify_event& ev) {
  if (ev.mask & IN_Q_OVERFLOW) {
    on_overflow_();
    return;
  }
  if (ev.mask & kLostMask) {
    if (wd_ < 0 || ev.wd != wd_) return;  // already handled (IN_IGNORED follows IN_DELETE_SELF)
    log_warn("the watched folder was moved or removed; rescans look for it again", {{"dir", dir_}});
    // A moved folder is still watched under its new name: stop that (IN_IGNORED follows).
    if (!(ev.mask & IN_IGNORED)) ::inotify_rm_watch(fd_, wd_);
    wd_ = -1;
    return;
  }
  if (ev.len == 0) return;
  on_event_(std::string(ev.name, ::strnlen(ev.name, ev.len)),
            (ev.mask & IN_MOVED_TO) ? Kind::kRenamedIn : Kind::kWritten);
}

}  // namespace docpipe
