#pragma once
// The rules by which WatchFolder decides that a job file in incoming/ is ready to take, apart
// from libuv and the disk (as ninja's Plan sits apart from its Builder), so that a unit test can
// drive them with a FakeClock:
//
// - a name renamed into the folder is taken at once: the producer renamed it whole;
// - a name written in place (or found by a scan, which says nothing about completeness) is
//   stat'ed; once its size and mtime stayed the same, with no write event, for settle_ms by the
//   clock, it is taken;
// - a name that is not a regular file is taken at once (the intake rejects it unread);
// - a taken name is held until forget(); an event for it meanwhile is handled after forget().
//
// The caller does the stats: an Action of kStat asks it to stat the name and report the result
// through on_stat(). Loop thread only.

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/clock.h"

namespace docpipe {

class SettleTracker {
 public:
  enum class Event {
    kRenamedIn,  // IN_MOVED_TO
    kWritten,    // IN_CREATE, IN_MODIFY, IN_CLOSE_WRITE: changed just now
    kScanned,    // found by a scan of the folder: changed at some time
  };
  enum class Action {
    kNone,  // nothing to do now (settling, held by the intake, gone)
    kStat,  // stat the name and call on_stat()
    kTake,  // hand the name to the intake now; it is held until forget()
  };
  // What a stat found.
  struct Facts {
    bool regular = true;
    int64_t size = 0;
    int64_t mtime_ns = 0;
  };

  SettleTracker(const Clock& clock, int64_t settle_ms) : clock_(clock), settle_ms_(settle_ms) {}

  void set_settle_ms(int64_t settle_ms) { settle_ms_ = settle_ms; }

  Action on_event(const std::string& name, Event event);
  // The stat asked for finished: `facts`, or nullopt when the name is gone or cannot be stat'ed.
  Action on_stat(const std::string& name, const std::optional<Facts>& facts);
  // Events were lost: every settling name waits settle_ms again, and names the intake holds are
  // looked at again when it lets go of them.
  void on_overflow();
  // The intake is done with `name`: forgets it, then handles an event that came while it was held.
  Action forget(const std::string& name);
  // Names whose settle_ms of quiet has passed and that are not being stat'ed: to stat again, to
  // see that they are still unchanged. Each is marked as being stat'ed.
  std::vector<std::string> due();
  // Whether some name is settling (a timer should call due() now and then).
  bool settling() const;

 private:
  struct Candidate {
    bool seen = false;  // size/mtime below are from a stat
    bool stat_pending = false;
    bool restat = false;  // another event came while a stat was pending
    bool taken = false;   // handed to the intake, until forget()
    bool event_while_taken = false;
    bool renamed_while_taken = false;
    int64_t size = -1;
    int64_t mtime_ns = 0;
    Clock::time_point stable_since{};
  };

  Action take(Candidate& c);
  Action stat(Candidate& c);
  bool quiet_long_enough(const Candidate& c, Clock::time_point now) const;

  const Clock& clock_;
  int64_t settle_ms_;
  std::unordered_map<std::string, Candidate> candidates_;
};

}  // namespace docpipe
