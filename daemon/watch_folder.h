#pragma once
// Watches incoming/ and reports job files that are ready to take. inotify (through uv_fs_event)
// says only that a name changed, and can overflow silently, so events just trigger a stat, and a
// scan at start and a periodic rescan are the safety net.
//
// A file is ready when it was renamed (or linked, or had its times set) after its last write:
// its ctime is later than its mtime, so it is taken at once. A file written in place has
// ctime == mtime; it is taken once its size and mtime have been stable for settle_ms.
// Stats run through uv_fs_stat, so the loop thread never blocks on the disk.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

#include "daemon/daemon_metrics.h"

namespace docpipe {

class WatchFolder {
 public:
  using ReadyFn = std::function<void(const std::string& name)>;

  WatchFolder(uv_loop_t* loop, std::string dir, int64_t settle_ms, int64_t rescan_interval_ms,
              DaemonMetrics* metrics, ReadyFn on_ready);
  WatchFolder(const WatchFolder&) = delete;
  WatchFolder& operator=(const WatchFolder&) = delete;

  // Starts the watch and the rescan timer, and scans once. Returns a libuv error code (0 = ok).
  int start();
  // Closes every handle; the loop finishes the closes. Nothing is reported after this.
  void close();
  // The intake is done with `name` (claimed, rejected or failed to read): forget its state, so
  // that a new file with the same name is seen afresh.
  void forget(const std::string& name);
  void rescan();
  // A reloaded config's settle_ms and rescan_interval_ms.
  void set_timing(int64_t settle_ms, int64_t rescan_interval_ms);

 private:
  struct Candidate {
    bool seen = false;         // size/mtime below are from a stat
    bool stat_pending = false;
    bool restat = false;       // another event came while a stat was pending
    bool taken = false;        // handed to on_ready, until forget()
    int64_t size = -1;
    int64_t mtime_ns = 0;
    uint64_t stable_since_ms = 0;
  };
  struct StatReq;
  struct ScanReq;

  void on_name(const std::string& name, IntakeSource source);
  void stat(const std::string& name);
  void on_stat(const std::string& name, int result, const uv_stat_t* st);
  void on_settle_timer();
  void arm_settle_timer();

  uv_loop_t* loop_;
  std::string dir_;
  int64_t settle_ms_;
  int64_t rescan_interval_ms_;
  DaemonMetrics* metrics_;
  ReadyFn on_ready_;
  bool closed_ = false;
  uv_fs_event_t event_{};
  uv_timer_t rescan_timer_{};
  uv_timer_t settle_timer_{};
  std::unordered_map<std::string, Candidate> candidates_;
};

}  // namespace docpipe
