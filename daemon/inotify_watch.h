#pragma once
// Raw inotify events for one folder, read on the loop (a uv_poll on the inotify descriptor).
// libuv's uv_fs_event says only "rename" or "change" and hides a queue overflow; these events
// tell a file renamed into place (IN_MOVED_TO) from one being written (IN_CREATE, IN_MODIFY,
// IN_CLOSE_WRITE), and report IN_Q_OVERFLOW.
//
// The watch follows the folder's inode: when the folder is moved or removed the watch is dropped
// (logged once), and rewatch() watches the path again (WatchFolder calls it at each rescan).
// The descriptor is closed only after the poll handle's close callback: a descriptor must not be
// closed while a poll handle may still watch it. Loop thread only.

#include <uv.h>

#include <functional>
#include <string>

#include "daemon/uv_handle.h"

struct inotify_event;

namespace docpipe {

class InotifyWatch {
 public:
  enum class Kind { kRenamedIn, kWritten };
  using EventFn = std::function<void(const std::string& name, Kind kind)>;
  using OverflowFn = std::function<void()>;

  InotifyWatch(uv_loop_t* loop, std::string dir, EventFn on_event, OverflowFn on_overflow);
  InotifyWatch(const InotifyWatch&) = delete;
  InotifyWatch& operator=(const InotifyWatch&) = delete;

  // Opens the descriptor and the poll handle and watches the folder. Returns 0, or the negative
  // errno (libuv style) of what failed; a failed descriptor or poll handle leaves nothing open.
  int open();
  // Watches the folder again when the watch was lost; true when it does so now.
  bool rewatch();
  // Closes the poll handle, then the descriptor; `on_closed` as UvHandle::close (nothing back
  // when the handle is not open).
  void close(std::function<void()> on_closed);
  // The poll handle is open or closing (see UvHandle::in_use).
  bool in_use() const { return poll_.in_use(); }

 private:
  int add_watch();
  void on_readable();
  void on_inotify_event(const ::inotify_event& ev);

  uv_loop_t* loop_;
  std::string dir_;
  EventFn on_event_;
  OverflowFn on_overflow_;
  UvHandle<uv_poll_t> poll_;
  int fd_ = -1;
  int wd_ = -1;  // -1: no watch on the folder (lost or never set up)
};

}  // namespace docpipe
