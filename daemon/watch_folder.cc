#include "daemon/watch_folder.h"

#include <algorithm>

#include "core/spool.h"
#include "daemon/log.h"

namespace docpipe {

struct WatchFolder::StatReq {
  uv_fs_t req;
  WatchFolder* self;
  std::string name;
};

struct WatchFolder::ScanReq {
  uv_fs_t req;
  WatchFolder* self;
};

WatchFolder::WatchFolder(uv_loop_t* loop, std::string dir, int64_t settle_ms,
                         int64_t rescan_interval_ms, DaemonMetrics* metrics, ReadyFn on_ready)
    : loop_(loop),
      dir_(std::move(dir)),
      settle_ms_(settle_ms),
      rescan_interval_ms_(rescan_interval_ms),
      metrics_(metrics),
      on_ready_(std::move(on_ready)) {}

int WatchFolder::start() {
  uv_fs_event_init(loop_, &event_);
  event_.data = this;
  uv_timer_init(loop_, &rescan_timer_);
  rescan_timer_.data = this;
  uv_timer_init(loop_, &settle_timer_);
  settle_timer_.data = this;
  int rc = uv_fs_event_start(
      &event_,
      [](uv_fs_event_t* h, const char* filename, int, int status) {
        auto* self = static_cast<WatchFolder*>(h->data);
        if (status < 0) {
          log_error("watch folder error", {{"dir", self->dir_}, {"error", uv_strerror(status)}});
          return;
        }
        if (filename != nullptr) self->on_name(filename, IntakeSource::kWatch);
      },
      dir_.c_str(), 0);
  if (rc != 0) return rc;
  uint64_t every = static_cast<uint64_t>(std::max<int64_t>(rescan_interval_ms_, 1));
  uv_timer_start(
      &rescan_timer_, [](uv_timer_t* t) { static_cast<WatchFolder*>(t->data)->rescan(); }, every,
      every);
  rescan();
  return 0;
}

void WatchFolder::close() {
  if (closed_) return;
  closed_ = true;
  // Handles are members: the owner keeps this object alive until the loop has run the closes.
  uv_close(reinterpret_cast<uv_handle_t*>(&event_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&rescan_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&settle_timer_), nullptr);
}

void WatchFolder::set_timing(int64_t settle_ms, int64_t rescan_interval_ms) {
  settle_ms_ = settle_ms;
  if (rescan_interval_ms == rescan_interval_ms_ || closed_) return;
  rescan_interval_ms_ = rescan_interval_ms;
  uint64_t every = static_cast<uint64_t>(std::max<int64_t>(rescan_interval_ms_, 1));
  uv_timer_start(
      &rescan_timer_, [](uv_timer_t* t) { static_cast<WatchFolder*>(t->data)->rescan(); }, every,
      every);
}

void WatchFolder::forget(const std::string& name) { candidates_.erase(name); }

void WatchFolder::rescan() {
  if (closed_) return;
  auto* scan = new ScanReq{{}, this};
  scan->req.data = scan;
  int rc = uv_fs_scandir(loop_, &scan->req, dir_.c_str(), 0, [](uv_fs_t* req) {
    auto* scan = static_cast<ScanReq*>(req->data);
    WatchFolder* self = scan->self;
    if (req->result < 0) {
      if (!self->closed_) {
        log_error("cannot scan watch folder",
                  {{"dir", self->dir_}, {"error", uv_strerror(static_cast<int>(req->result))}});
      }
    } else {
      uv_dirent_t ent;
      while (uv_fs_scandir_next(req, &ent) != UV_EOF) {
        if (ent.type == UV_DIRENT_FILE || ent.type == UV_DIRENT_UNKNOWN) {
          self->on_name(ent.name, IntakeSource::kRescan);
        }
      }
    }
    uv_fs_req_cleanup(req);
    delete scan;
  });
  if (rc != 0) {
    // A call that fails never calls back: clean up here.
    log_error("cannot scan watch folder", {{"dir", dir_}, {"error", uv_strerror(rc)}});
    uv_fs_req_cleanup(&scan->req);
    delete scan;
  }
}

void WatchFolder::on_name(const std::string& name, IntakeSource source) {
  if (closed_ || !Spool::is_job_file_name(name)) return;
  if (metrics_ != nullptr) metrics_->intake_event(source);
  Candidate& c = candidates_[name];
  if (c.taken) return;
  if (c.stat_pending) {
    c.restat = true;
    return;
  }
  stat(name);
}

void WatchFolder::stat(const std::string& name) {
  candidates_[name].stat_pending = true;
  auto* sr = new StatReq{{}, this, name};
  sr->req.data = sr;
  std::string path = dir_ + "/" + name;
  int rc = uv_fs_stat(loop_, &sr->req, path.c_str(), [](uv_fs_t* req) {
    auto* sr = static_cast<StatReq*>(req->data);
    sr->self->on_stat(sr->name, static_cast<int>(req->result), &req->statbuf);
    uv_fs_req_cleanup(req);
    delete sr;
  });
  if (rc != 0) {
    uv_fs_req_cleanup(&sr->req);
    delete sr;
    on_stat(name, rc, nullptr);
  }
}

void WatchFolder::on_stat(const std::string& name, int result, const uv_stat_t* st) {
  auto it = candidates_.find(name);
  if (it == candidates_.end()) return;
  Candidate& c = it->second;
  c.stat_pending = false;
  if (closed_) return;
  if (result < 0 || st == nullptr || (st->st_mode & S_IFMT) != S_IFREG) {
    // Gone (taken by someone else, or deleted) or not a regular file: nothing to do.
    if (result < 0 && result != UV_ENOENT) {
      log_warn("cannot stat job file",
               {{"file", dir_ + "/" + name}, {"error", uv_strerror(result)}});
    }
    candidates_.erase(it);
    return;
  }
  if (c.restat) {
    c.restat = false;
    stat(name);
    return;
  }
  int64_t mtime = st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
  int64_t ctime = st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
  int64_t size = static_cast<int64_t>(st->st_size);
  uint64_t now = uv_now(loop_);
  bool renamed_after_write = ctime > mtime;
  bool settled = c.seen && size == c.size && mtime == c.mtime_ns &&
                 now - c.stable_since_ms >= static_cast<uint64_t>(settle_ms_);
  if (renamed_after_write || settled) {
    c.taken = true;
    on_ready_(name);
    return;
  }
  if (!c.seen || size != c.size || mtime != c.mtime_ns) {
    c.seen = true;
    c.size = size;
    c.mtime_ns = mtime;
    c.stable_since_ms = now;
  }
  arm_settle_timer();
}

void WatchFolder::arm_settle_timer() {
  if (closed_ || uv_is_active(reinterpret_cast<uv_handle_t*>(&settle_timer_))) return;
  // Poll at a fraction of settle_ms: a file is taken at most settle_ms/4 after it settles.
  uint64_t tick = static_cast<uint64_t>(std::max<int64_t>(settle_ms_ / 4, 5));
  uv_timer_start(
      &settle_timer_, [](uv_timer_t* t) { static_cast<WatchFolder*>(t->data)->on_settle_timer(); },
      tick, tick);
}

void WatchFolder::on_settle_timer() {
  uint64_t now = uv_now(loop_);
  bool waiting = false;
  std::vector<std::string> due;
  for (auto& [name, c] : candidates_) {
    if (c.taken || !c.seen) continue;
    waiting = true;
    if (!c.stat_pending && now - c.stable_since_ms >= static_cast<uint64_t>(settle_ms_)) {
      due.push_back(name);
    }
  }
  if (!waiting) uv_timer_stop(&settle_timer_);
  for (const auto& name : due) stat(name);
}

}  // namespace docpipe
