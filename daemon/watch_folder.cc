#include "daemon/watch_folder.h"

#include <sys/stat.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "core/spool.h"
#include "daemon/inotify_watch.h"
#include "daemon/log.h"
#include "daemon/settle_tracker.h"
#include "daemon/uv_handle.h"

namespace docpipe {

// Everything libuv may still touch after the WatchFolder is gone: the handles, and the requests
// in flight, which point here. Freed by maybe_free() once the WatchFolder let go of it
// (`orphaned`), every handle is closed and no request is in flight.
struct WatchFolder::State {
  using Timer = UvHandle<uv_timer_t>;
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
        DaemonMetrics* metrics, ReadyFn on_ready, const Clock& clock)
      : loop(loop),
        dir(std::move(dir)),
        settle_ms(settle_ms),
        rescan_interval_ms(rescan_interval_ms),
        metrics(metrics),
        on_ready(std::move(on_ready)),
        tracker(clock, settle_ms),
        watch(
            loop, this->dir,
            [this](const std::string& name, InotifyWatch::Kind kind) { on_event(name, kind); },
            [this] { on_overflow(); }) {}

  int start();
  void close(std::function<void()> on_closed);
  void maybe_free();
  bool started() const { return rescan_timer.state() != Timer::State::kUnopened; }
  void start_rescan_timer();
  void rescan();
  void on_event(const std::string& name, InotifyWatch::Kind kind);
  void on_overflow();
  void apply(const std::string& name, SettleTracker::Action action);
  void stat(const std::string& name);
  void on_stat(const std::string& name, int result, const uv_stat_t* st);
  void check_settled();
  void arm_settle_timer();

  uv_loop_t* loop;
  std::string dir;
  int64_t settle_ms;
  int64_t rescan_interval_ms;
  DaemonMetrics* metrics;
  ReadyFn on_ready;
  SettleTracker tracker;
  InotifyWatch watch;
  Timer rescan_timer;
  Timer settle_timer;
  int requests = 0;       // scans and stats in flight
  bool orphaned = false;  // the WatchFolder closed: report nothing, free once libuv is done
  std::function<void()> on_closed;
};

WatchFolder::WatchFolder(uv_loop_t* loop, std::string dir, int64_t settle_ms,
                         int64_t rescan_interval_ms, DaemonMetrics* metrics, ReadyFn on_ready,
                         const Clock& clock)
    : state_(new State(loop, std::move(dir), settle_ms, rescan_interval_ms, metrics,
                       std::move(on_ready), clock)) {}

WatchFolder::~WatchFolder() { close(); }

int WatchFolder::start() { return state_ != nullptr ? state_->start() : UV_EINVAL; }

void WatchFolder::close(std::function<void()> on_closed) {
  if (state_ == nullptr) return;
  State* state = std::exchange(state_, nullptr);  // may be freed by the loop from now on
  state->close(std::move(on_closed));
}

void WatchFolder::forget(const std::string& name) {
  if (state_ != nullptr) state_->apply(name, state_->tracker.forget(name));
}

void WatchFolder::rescan() {
  if (state_ != nullptr) state_->rescan();
}

void WatchFolder::check_settled() {
  if (state_ != nullptr) state_->check_settled();
}

bool WatchFolder::idle() const { return state_ == nullptr || state_->requests == 0; }

void WatchFolder::set_timing(int64_t settle_ms, int64_t rescan_interval_ms) {
  if (state_ == nullptr) return;
  state_->settle_ms = settle_ms;
  state_->tracker.set_settle_ms(settle_ms);
  if (rescan_interval_ms == state_->rescan_interval_ms) return;
  state_->rescan_interval_ms = rescan_interval_ms;
  if (state_->rescan_timer.is_open()) state_->start_rescan_timer();
}

int WatchFolder::State::start() {
  if (started()) return 0;
  auto init = [this](uv_timer_t* t) { return uv_timer_init(loop, t); };
  if (int rc = rescan_timer.open(this, init); rc != 0) return rc;
  if (int rc = settle_timer.open(this, init); rc != 0) return rc;
  start_rescan_timer();
  int rc = watch.open();
  // The watch first, then the scan: a file dropped in between is seen by one or the other.
  rescan();
  return rc;
}

void WatchFolder::State::start_rescan_timer() {
  uint64_t every = static_cast<uint64_t>(std::max<int64_t>(rescan_interval_ms, 1));
  uv_timer_start(
      rescan_timer.get(), [](uv_timer_t* t) { Timer::owner_of<State>(t)->rescan(); }, every, every);
}

void WatchFolder::State::close(std::function<void()> closed) {
  orphaned = true;
  on_closed = std::move(closed);
  auto released = [this] { maybe_free(); };
  watch.close(released);
  rescan_timer.close(released);
  settle_timer.close(released);
  maybe_free();  // nothing was open, or nothing is left
}

void WatchFolder::State::maybe_free() {
  if (!orphaned || requests > 0 || watch.in_use() || rescan_timer.in_use() ||
      settle_timer.in_use()) {
    return;
  }
  std::function<void()> closed = std::move(on_closed);
  delete this;
  if (closed) closed();
}

void WatchFolder::State::on_event(const std::string& name, InotifyWatch::Kind kind) {
  if (orphaned || !Spool::is_job_file_name(name)) return;
  if (metrics != nullptr) metrics->intake_event(IntakeSource::kWatch);
  apply(name, tracker.on_event(name, kind == InotifyWatch::Kind::kRenamedIn
                                         ? SettleTracker::Event::kRenamedIn
                                         : SettleTracker::Event::kWritten));
}

void WatchFolder::State::on_overflow() {
  log_warn("inotify queue overflowed: events were lost; rescanning the watch folder now",
           {{"dir", dir}});
  if (metrics != nullptr) metrics->intake_overflow();
  tracker.on_overflow();
  rescan();
}

void WatchFolder::State::apply(const std::string& name, SettleTracker::Action action) {
  if (orphaned) return;
  switch (action) {
    case SettleTracker::Action::kNone:
      break;
    case SettleTracker::Action::kStat:
      stat(name);
      break;
    case SettleTracker::Action::kTake:
      on_ready(name);
      break;
  }
}

void WatchFolder::State::rescan() {
  if (orphaned || !started()) return;
  if (watch.rewatch()) log_info("watching the folder again", {{"dir", dir}});
  auto* scan = new ScanReq{{}, this};
  scan->req.data = scan;
  int rc = uv_fs_scandir(loop, &scan->req, dir.c_str(), 0, [](uv_fs_t* req) {
    auto* scan = static_cast<ScanReq*>(req->data);
    State* self = scan->self;
    --self->requests;
    if (self->orphaned) {
      // Closed meanwhile: nothing is reported.
    } else if (req->result < 0) {
      log_error("cannot scan watch folder",
                {{"dir", self->dir}, {"error", uv_strerror(static_cast<int>(req->result))}});
    } else {
      uv_dirent_t ent;
      // Every type: a symlink or FIFO named *.json is reported too, to be recorded in rejected/.
      while (uv_fs_scandir_next(req, &ent) != UV_EOF) {
        std::string name = ent.name;
        if (self->orphaned || !Spool::is_job_file_name(name)) continue;
        if (self->metrics != nullptr) self->metrics->intake_event(IntakeSource::kRescan);
        self->apply(name, self->tracker.on_event(name, SettleTracker::Event::kScanned));
      }
    }
    uv_fs_req_cleanup(req);
    delete scan;
    self->maybe_free();
  });
  if (rc != 0) {
    // A call that fails never calls back: clean up here.
    log_error("cannot scan watch folder", {{"dir", dir}, {"error", uv_strerror(rc)}});
    uv_fs_req_cleanup(&scan->req);
    delete scan;
    return;
  }
  ++requests;
}

void WatchFolder::State::stat(const std::string& name) {
  auto* sr = new StatReq{{}, this, name};
  sr->req.data = sr;
  std::string path = dir + "/" + name;
  // lstat: a symlink is reported as what it is, never followed.
  int rc = uv_fs_lstat(loop, &sr->req, path.c_str(), [](uv_fs_t* req) {
    auto* sr = static_cast<StatReq*>(req->data);
    State* self = sr->self;
    --self->requests;
    self->on_stat(sr->name, static_cast<int>(req->result), &req->statbuf);
    uv_fs_req_cleanup(req);
    delete sr;
    self->maybe_free();
  });
  if (rc != 0) {
    uv_fs_req_cleanup(&sr->req);
    delete sr;
    on_stat(name, rc, nullptr);
    return;
  }
  ++requests;
}

void WatchFolder::State::on_stat(const std::string& name, int result, const uv_stat_t* st) {
  if (orphaned) return;
  std::optional<SettleTracker::Facts> facts;
  if (result < 0 || st == nullptr) {
    if (result != UV_ENOENT) {
      log_warn("cannot stat job file",
               {{"file", dir + "/" + name}, {"error", uv_strerror(result)}});
    }
  } else {
    facts = SettleTracker::Facts{
        .regular = (st->st_mode & S_IFMT) == S_IFREG,
        .size = static_cast<int64_t>(st->st_size),
        .mtime_ns = st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec,
    };
  }
  apply(name, tracker.on_stat(name, facts));
  if (tracker.settling()) arm_settle_timer();
}

void WatchFolder::State::arm_settle_timer() {
  if (!settle_timer.is_open() || uv_is_active(settle_timer.base())) return;
  // Poll at a fraction of settle_ms: a file is taken at most settle_ms/4 after it settles.
  uint64_t tick = static_cast<uint64_t>(std::max<int64_t>(settle_ms / 4, 5));
  uv_timer_start(
      settle_timer.get(), [](uv_timer_t* t) { Timer::owner_of<State>(t)->check_settled(); }, tick,
      tick);
}

void WatchFolder::State::check_settled() {
  if (orphaned) return;
  std::vector<std::string> due = tracker.due();
  if (!tracker.settling() && settle_timer.is_open()) uv_timer_stop(settle_timer.get());
  for (const std::string& name : due) stat(name);
}

}  // namespace docpipe
