#include "daemon/watch_folder.h"

#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "core/spool.h"
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

struct WatchFolder::State {
  enum class Kind { kRenamedIn, kWritten };

  struct Candidate {
    bool seen = false;  // size/mtime below are from a stat
    bool stat_pending = false;
    bool restat = false;  // another event came while a stat was pending
    bool taken = false;   // handed to on_ready, until forget()
    bool event_while_taken = false;
    bool renamed_while_taken = false;
    int64_t size = -1;
    int64_t mtime_ns = 0;
    uint64_t stable_since_ms = 0;
  };
  struct StatReq {
    uv_fs_t req;
    State* self;
    std::string name;
  };
  struct ScanReq {
    uv_fs_t req;
    State* self;
  };

  State(uv_loop_t* loop, std::string dir, int64_t settle_ms, int64_t rescan_interval_ms,
        DaemonMetrics* metrics, ReadyFn on_ready)
      : loop(loop),
        dir(std::move(dir)),
        settle_ms(settle_ms),
        rescan_interval_ms(rescan_interval_ms),
        metrics(metrics),
        on_ready(std::move(on_ready)) {}

  int start();
  void close();
  void release();  // one handle closed or one request done; frees the State after the last
  int add_watch();
  void on_readable();
  void on_inotify_event(const struct inotify_event& ev);
  void on_overflow();
  void on_event(const std::string& name, Kind kind);
  void handle(const std::string& name, Kind kind);
  void forget(const std::string& name);
  void rescan();
  void on_scan_entry(const std::string& name);
  void take(const std::string& name, Candidate& c);
  void stat(const std::string& name);
  void on_stat(const std::string& name, int result, const uv_stat_t* st);
  void on_settle_timer();
  void arm_settle_timer();
  void start_rescan_timer();

  uv_loop_t* loop;
  std::string dir;
  int64_t settle_ms;
  int64_t rescan_interval_ms;
  DaemonMetrics* metrics;
  ReadyFn on_ready;
  bool started = false;
  bool closed = false;
  int refs = 0;  // initialised handles not yet closed + requests in flight
  int inotify_fd = -1;
  int wd = -1;  // -1: no watch on dir (lost or never set up); the next rescan tries again
  bool poll_open = false;
  uv_poll_t poll{};
  uv_timer_t rescan_timer{};
  uv_timer_t settle_timer{};
  std::unordered_map<std::string, Candidate> candidates;
};

WatchFolder::WatchFolder(uv_loop_t* loop, std::string dir, int64_t settle_ms,
                         int64_t rescan_interval_ms, DaemonMetrics* metrics, ReadyFn on_ready)
    : state_(new State(loop, std::move(dir), settle_ms, rescan_interval_ms, metrics,
                       std::move(on_ready))) {}

WatchFolder::~WatchFolder() { close(); }

int WatchFolder::start() { return state_ != nullptr ? state_->start() : UV_EINVAL; }

void WatchFolder::close() {
  if (state_ == nullptr) return;
  state_->close();
  state_ = nullptr;  // may be freed by the loop from now on
}

void WatchFolder::forget(const std::string& name) {
  if (state_ != nullptr) state_->forget(name);
}

void WatchFolder::rescan() {
  if (state_ != nullptr) state_->rescan();
}

void WatchFolder::set_timing(int64_t settle_ms, int64_t rescan_interval_ms) {
  if (state_ == nullptr) return;
  state_->settle_ms = settle_ms;
  if (rescan_interval_ms == state_->rescan_interval_ms || state_->closed || !state_->started) {
    return;
  }
  state_->rescan_interval_ms = rescan_interval_ms;
  state_->start_rescan_timer();
}

int WatchFolder::State::start() {
  if (started || closed) return 0;
  started = true;
  uv_timer_init(loop, &rescan_timer);
  rescan_timer.data = this;
  uv_timer_init(loop, &settle_timer);
  settle_timer.data = this;
  refs += 2;
  start_rescan_timer();

  int rc = 0;
  inotify_fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd < 0) {
    rc = -errno;
  } else {
    rc = uv_poll_init(loop, &poll, inotify_fd);
    if (rc == 0) {
      poll.data = this;
      poll_open = true;
      ++refs;
      rc = uv_poll_start(&poll, UV_READABLE, [](uv_poll_t* h, int status, int) {
        auto* self = static_cast<State*>(h->data);
        if (status < 0) {
          log_error("watch folder error", {{"dir", self->dir}, {"error", uv_strerror(status)}});
          return;
        }
        self->on_readable();
      });
    } else {
      ::close(inotify_fd);
      inotify_fd = -1;
    }
    if (rc == 0) rc = add_watch();
  }
  // The watch first, then the scan: a file dropped in between is seen by one or the other.
  rescan();
  return rc;
}

int WatchFolder::State::add_watch() {
  wd = ::inotify_add_watch(inotify_fd, dir.c_str(), kWatchMask);
  return wd < 0 ? -errno : 0;
}

void WatchFolder::State::start_rescan_timer() {
  uint64_t every = static_cast<uint64_t>(std::max<int64_t>(rescan_interval_ms, 1));
  uv_timer_start(
      &rescan_timer, [](uv_timer_t* t) { static_cast<State*>(t->data)->rescan(); }, every, every);
}

void WatchFolder::State::close() {
  if (closed) return;
  closed = true;
  if (started) {
    auto done = [](uv_handle_t* h) { static_cast<State*>(h->data)->release(); };
    if (poll_open) {
      uv_close(reinterpret_cast<uv_handle_t*>(&poll), [](uv_handle_t* h) {
        auto* self = static_cast<State*>(h->data);
        // Only now: a descriptor must not be closed while a poll handle may still watch it.
        ::close(self->inotify_fd);
        self->inotify_fd = -1;
        self->release();
      });
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&rescan_timer), done);
    uv_close(reinterpret_cast<uv_handle_t*>(&settle_timer), done);
  }
  if (refs == 0) delete this;
}

void WatchFolder::State::release() {
  if (--refs == 0 && closed) delete this;
}

void WatchFolder::State::on_readable() {
  // Aligned for struct inotify_event; one read returns whole events only.
  alignas(struct inotify_event) char buf[65536];
  for (int i = 0; i < kReadsPerCallback && !closed; ++i) {
    ssize_t n = ::read(inotify_fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) {
        log_error("cannot read inotify events", {{"dir", dir}, {"error", std::strerror(errno)}});
      }
      return;
    }
    if (n == 0) return;
    for (const char* p = buf; p < buf + n && !closed;) {
      const auto* ev = reinterpret_cast<const struct inotify_event*>(p);
      p += sizeof(struct inotify_event) + ev->len;
      on_inotify_event(*ev);
    }
  }
}

void WatchFolder::State::on_inotify_event(const struct inotify_event& ev) {
  if (ev.mask & IN_Q_OVERFLOW) {
    on_overflow();
    return;
  }
  if (ev.mask & kLostMask) {
    if (wd < 0 || ev.wd != wd) return;  // already handled (IN_IGNORED follows IN_DELETE_SELF)
    log_warn("the watched folder was moved or removed; rescans look for it again", {{"dir", dir}});
    // A moved folder is still watched under its new name: stop that (IN_IGNORED follows).
    if (!(ev.mask & IN_IGNORED)) ::inotify_rm_watch(inotify_fd, wd);
    wd = -1;
    return;
  }
  if (ev.len == 0) return;
  on_event(std::string(ev.name, ::strnlen(ev.name, ev.len)),
           (ev.mask & IN_MOVED_TO) ? Kind::kRenamedIn : Kind::kWritten);
}

void WatchFolder::State::on_overflow() {
  log_warn("inotify queue overflowed: events were lost; rescanning the watch folder now",
           {{"dir", dir}});
  if (metrics != nullptr) metrics->intake_overflow();
  uint64_t now = uv_now(loop);
  for (auto& [name, c] : candidates) {
    // A lost write may have come: settle again. A lost rename over a name the intake holds is
    // looked at again when the intake lets go of the name.
    if (c.taken) {
      c.event_while_taken = true;
    } else {
      c.stable_since_ms = now;
    }
  }
  rescan();
}

void WatchFolder::State::on_event(const std::string& name, Kind kind) {
  if (closed || !Spool::is_job_file_name(name)) return;
  if (metrics != nullptr) metrics->intake_event(IntakeSource::kWatch);
  handle(name, kind);
}

void WatchFolder::State::handle(const std::string& name, Kind kind) {
  Candidate& c = candidates[name];
  if (c.taken) {
    // The intake holds the name (reading, claiming or rejecting the file): see to it afterwards.
    c.event_while_taken = true;
    c.renamed_while_taken |= kind == Kind::kRenamedIn;
    return;
  }
  if (kind == Kind::kRenamedIn) {
    take(name, c);
    return;
  }
  // A write: the file changed just now, whatever its mtime's granularity says.
  c.stable_since_ms = uv_now(loop);
  if (c.stat_pending) {
    c.restat = true;
    return;
  }
  stat(name);
}

void WatchFolder::State::forget(const std::string& name) {
  auto it = candidates.find(name);
  if (it == candidates.end()) return;
  bool again = it->second.event_while_taken;
  Kind kind = it->second.renamed_while_taken ? Kind::kRenamedIn : Kind::kWritten;
  candidates.erase(it);
  if (again && !closed) handle(name, kind);
}

void WatchFolder::State::rescan() {
  if (closed || !started) return;
  if (wd < 0 && inotify_fd >= 0 && add_watch() == 0) {
    log_info("watching the folder again", {{"dir", dir}});
  }
  auto* scan = new ScanReq{{}, this};
  scan->req.data = scan;
  int rc = uv_fs_scandir(loop, &scan->req, dir.c_str(), 0, [](uv_fs_t* req) {
    auto* scan = static_cast<ScanReq*>(req->data);
    State* self = scan->self;
    if (req->result < 0) {
      if (!self->closed) {
        log_error("cannot scan watch folder",
                  {{"dir", self->dir}, {"error", uv_strerror(static_cast<int>(req->result))}});
      }
    } else {
      uv_dirent_t ent;
      // Every type: a symlink or FIFO named *.json is reported too, to be recorded in rejected/.
      while (uv_fs_scandir_next(req, &ent) != UV_EOF) self->on_scan_entry(ent.name);
    }
    uv_fs_req_cleanup(req);
    delete scan;
    self->release();
  });
  if (rc != 0) {
    // A call that fails never calls back: clean up here.
    log_error("cannot scan watch folder", {{"dir", dir}, {"error", uv_strerror(rc)}});
    uv_fs_req_cleanup(&scan->req);
    delete scan;
    return;
  }
  ++refs;
}

void WatchFolder::State::on_scan_entry(const std::string& name) {
  if (closed || !Spool::is_job_file_name(name)) return;
  if (metrics != nullptr) metrics->intake_event(IntakeSource::kRescan);
  Candidate& c = candidates[name];
  if (c.taken) return;
  if (c.stat_pending) {
    c.restat = true;
    return;
  }
  stat(name);
}

void WatchFolder::State::take(const std::string& name, Candidate& c) {
  c.taken = true;
  c.event_while_taken = false;
  c.renamed_while_taken = false;
  on_ready(name);
}

void WatchFolder::State::stat(const std::string& name) {
  candidates[name].stat_pending = true;
  auto* sr = new StatReq{{}, this, name};
  sr->req.data = sr;
  std::string path = dir + "/" + name;
  // lstat: a symlink is reported as what it is, never followed.
  int rc = uv_fs_lstat(loop, &sr->req, path.c_str(), [](uv_fs_t* req) {
    auto* sr = static_cast<StatReq*>(req->data);
    State* self = sr->self;
    self->on_stat(sr->name, static_cast<int>(req->result), &req->statbuf);
    uv_fs_req_cleanup(req);
    delete sr;
    self->release();
  });
  if (rc != 0) {
    uv_fs_req_cleanup(&sr->req);
    delete sr;
    on_stat(name, rc, nullptr);
    return;
  }
  ++refs;
}

void WatchFolder::State::on_stat(const std::string& name, int result, const uv_stat_t* st) {
  auto it = candidates.find(name);
  if (it == candidates.end()) return;
  Candidate& c = it->second;
  c.stat_pending = false;
  if (closed || c.taken) return;  // taken meanwhile: renamed over while the stat ran
  if (result < 0 || st == nullptr) {
    // Gone (taken by someone else, or deleted): nothing to do.
    if (result != UV_ENOENT) {
      log_warn("cannot stat job file",
               {{"file", dir + "/" + name}, {"error", uv_strerror(result)}});
    }
    candidates.erase(it);
    return;
  }
  if (c.restat) {
    c.restat = false;
    stat(name);
    return;
  }
  if ((st->st_mode & S_IFMT) != S_IFREG) {
    // Nothing to wait for: the intake records it in rejected/ without following or reading it.
    take(name, c);
    return;
  }
  int64_t mtime = st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
  int64_t size = static_cast<int64_t>(st->st_size);
  uint64_t now = uv_now(loop);
  if (!c.seen || size != c.size || mtime != c.mtime_ns) {
    c.seen = true;
    c.size = size;
    c.mtime_ns = mtime;
    c.stable_since_ms = now;
  } else if (now - c.stable_since_ms >= static_cast<uint64_t>(settle_ms)) {
    take(name, c);
    return;
  }
  arm_settle_timer();
}

void WatchFolder::State::arm_settle_timer() {
  if (closed || uv_is_active(reinterpret_cast<uv_handle_t*>(&settle_timer))) return;
  // Poll at a fraction of settle_ms: a file is taken at most settle_ms/4 after it settles.
  uint64_t tick = static_cast<uint64_t>(std::max<int64_t>(settle_ms / 4, 5));
  uv_timer_start(
      &settle_timer, [](uv_timer_t* t) { static_cast<State*>(t->data)->on_settle_timer(); }, tick,
      tick);
}

void WatchFolder::State::on_settle_timer() {
  uint64_t now = uv_now(loop);
  bool waiting = false;
  std::vector<std::string> due;
  for (auto& [name, c] : candidates) {
    if (c.taken || !c.seen) continue;
    waiting = true;
    if (!c.stat_pending && now - c.stable_since_ms >= static_cast<uint64_t>(settle_ms)) {
      due.push_back(name);
    }
  }
  if (!waiting) uv_timer_stop(&settle_timer);
  for (const auto& name : due) stat(name);
}

}  // namespace docpipe
