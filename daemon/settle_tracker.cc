#include "daemon/settle_tracker.h"

#include <chrono>

namespace docpipe {

SettleTracker::Action SettleTracker::on_event(const std::string& name, Event event) {
  Candidate& c = candidates_[name];
  if (c.taken) {
    // The intake holds the name (reading, claiming or rejecting the file): see to it afterwards.
    // A scan says nothing new about a name the intake holds.
    if (event != Event::kScanned) {
      c.event_while_taken = true;
      c.renamed_while_taken |= event == Event::kRenamedIn;
    }
    return Action::kNone;
  }
  if (event == Event::kRenamedIn) return take(c);
  // A write: the file changed just now, whatever its mtime's granularity says.
  if (event == Event::kWritten) c.stable_since = clock_.now();
  if (c.stat_pending) {
    c.restat = true;
    return Action::kNone;
  }
  return stat(c);
}

SettleTracker::Action SettleTracker::on_stat(const std::string& name,
                                             const std::optional<Facts>& facts) {
  auto it = candidates_.find(name);
  if (it == candidates_.end()) return Action::kNone;
  Candidate& c = it->second;
  c.stat_pending = false;
  if (c.taken) return Action::kNone;  // taken meanwhile: renamed over while the stat ran
  if (!facts) {
    // Gone (taken by someone else, or deleted): nothing to do.
    candidates_.erase(it);
    return Action::kNone;
  }
  if (c.restat) {
    c.restat = false;
    return stat(c);
  }
  // Nothing to wait for: the intake records it in rejected/ without following or reading it.
  if (!facts->regular) return take(c);
  Clock::time_point now = clock_.now();
  if (!c.seen || facts->size != c.size || facts->mtime_ns != c.mtime_ns) {
    c.seen = true;
    c.size = facts->size;
    c.mtime_ns = facts->mtime_ns;
    c.stable_since = now;
  } else if (quiet_long_enough(c, now)) {
    return take(c);
  }
  return Action::kNone;
}

void SettleTracker::on_overflow() {
  Clock::time_point now = clock_.now();
  for (auto& [name, c] : candidates_) {
    // A lost write may have come: settle again. A lost rename over a name the intake holds is
    // looked at again when the intake lets go of the name.
    if (c.taken) {
      c.event_while_taken = true;
    } else {
      c.stable_since = now;
    }
  }
}

SettleTracker::Action SettleTracker::forget(const std::string& name) {
  auto it = candidates_.find(name);
  if (it == candidates_.end()) return Action::kNone;
  bool again = it->second.event_while_taken;
  Event event = it->second.renamed_while_taken ? Event::kRenamedIn : Event::kWritten;
  candidates_.erase(it);
  return again ? on_event(name, event) : Action::kNone;
}

std::vector<std::string> SettleTracker::due() {
  Clock::time_point now = clock_.now();
  std::vector<std::string> names;
  for (auto& [name, c] : candidates_) {
    if (c.taken || !c.seen || c.stat_pending || !quiet_long_enough(c, now)) continue;
    c.stat_pending = true;
    names.push_back(name);
  }
  return names;
}

bool SettleTracker::settling() const {
  for (const auto& [name, c] : candidates_) {
    if (!c.taken && c.seen) return true;
  }
  return false;
}

SettleTracker::Action SettleTracker::take(Candidate& c) {
  c.taken = true;
  c.event_while_taken = false;
  c.renamed_while_taken = false;
  return Action::kTake;
}

SettleTracker::Action SettleTracker::stat(Candidate& c) {
  c.stat_pending = true;
  return Action::kStat;
}

bool SettleTracker::quiet_long_enough(const Candidate& c, Clock::time_point now) const {
  return now - c.stable_since >= std::chrono::milliseconds(settle_ms_);
}

}  // namespace docpipe
