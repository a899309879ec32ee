#pragma once
// Watches incoming/ and reports job files that are ready to take. It reads raw inotify events on
// the loop (uv_poll on the inotify descriptor): libuv's uv_fs_event says only "rename" or
// "change" and hides a queue overflow, while these events tell a finished file from one being
// written:
//
// - IN_MOVED_TO: the file was renamed into place, whole (the hand-over DESIGN.md recommends); it
//   is reported at once.
// - IN_CREATE, IN_MODIFY, IN_CLOSE_WRITE: the file is written in place; it is reported once no
//   write event came and its size and mtime stayed the same for settle_ms. IN_CLOSE_WRITE does
//   not shorten the wait: a producer may append through several open/write/close rounds
//   (`echo >> job.json`), and nothing says which close is the last.
// - A name that is not a regular file (symlink, FIFO, socket, device, folder named *.json) is
//   reported at once, never followed, so that the intake records it in rejected/ once.
// - IN_Q_OVERFLOW (events were lost): an immediate rescan, a log line and
//   docpipe_intake_overflows_total. A scan at start and the periodic rescan stay the safety net;
//   a file found only by a scan takes the settle path, since nothing says it is complete.
//
// Stats run through uv_fs_lstat, so the loop thread never blocks on the disk. The handles and
// requests live in a heap State freed once its handles are closed and its requests done
// (STYLE.md), so this object may be destroyed at any time; destroying it closes the watch.
//
// The rules live in SettleTracker, the inotify decoding in InotifyWatch; this class wires them
// to the loop. Settling is measured on the Clock it is given: the timers only decide when to
// look, so a unit test on a FakeClock calls check_settled() after advancing it.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>

#include "core/clock.h"
#include "daemon/daemon_metrics.h"

namespace docpipe {

class WatchFolder {
 public:
  using ReadyFn = std::function<void(const std::string& name)>;

  // `metrics` may be null (unit tests).
  WatchFolder(uv_loop_t* loop, std::string dir, int64_t settle_ms, int64_t rescan_interval_ms,
              DaemonMetrics* metrics, ReadyFn on_ready, const Clock& clock = system_clock());
  ~WatchFolder();
  WatchFolder(const WatchFolder&) = delete;
  WatchFolder& operator=(const WatchFolder&) = delete;

  // Starts the rescan timer and scans once, then watches with inotify. Returns 0, or the negative
  // errno (libuv style) of a watch that could not be set up: the rescans still run then.
  int start();
  // Closes every handle; the loop finishes the closes. Nothing is reported after this. The first
  // close() calls `on_closed` once every handle is closed and every request done (at once when
  // nothing was open); a later close() calls nothing back.
  void close(std::function<void()> on_closed = nullptr);
  // The intake is done with `name` (claimed, rejected or failed to read): forget its state, so
  // that a new file with the same name is seen afresh. An event for the name that came while the
  // intake held it is handled now.
  void forget(const std::string& name);
  void rescan();
  // A reloaded config's settle_ms and rescan_interval_ms.
  void set_timing(int64_t settle_ms, int64_t rescan_interval_ms);
  // Stats again the files that have been quiet for settle_ms by the clock, and takes those still
  // unchanged (what the settle timer does).
  void check_settled();
  // No scan or stat in flight: every event read so far has been decided (for tests).
  bool idle() const;

 private:
  struct State;
  State* state_;  // null once closed; the State frees itself once libuv is done with it
};

}  // namespace docpipe
