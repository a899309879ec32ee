#pragma once
// How many threads are blocked in one wait of a synchronisation object (a full queue's push, a
// semaphore's acquire), kept under that object's mutex. A test blocks in await() until a worker
// is really blocked there before it acts, instead of polling the count against the wall clock;
// the condition variable is notified only while someone awaits, so the hot path pays one branch.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>

namespace docpipe {

class BlockedCount {
 public:
  // All three under the owner's mutex.
  void enter() {
    ++count_;
    if (observers_ > 0) changed_.notify_all();
  }
  void leave() { --count_; }
  size_t count() const { return count_; }

  // `lock` holds the owner's mutex. True once count() >= n; false if `timeout` passed first.
  bool await(std::unique_lock<std::mutex>& lock, size_t n, std::chrono::milliseconds timeout) {
    ++observers_;
    const bool reached = changed_.wait_for(lock, timeout, [&] { return count_ >= n; });
    --observers_;
    return reached;
  }

 private:
  size_t count_ = 0;
  size_t observers_ = 0;
  std::condition_variable changed_;
};

}  // namespace docpipe
