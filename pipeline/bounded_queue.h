#pragma once
// BoundedQueue<T>: the queue between two pipeline stages. A full queue blocks the producer, which
// is how back-pressure travels from a slow writer back to the readers and on to admission.
// close() wakes every waiter: producers fail from then on, consumers drain what is left and then
// get nullopt, so a stage shuts down by draining its input rather than dropping it.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <utility>

#include "pipeline/blocked_count.h"

namespace docpipe {

template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  // Blocks while the queue is full. Returns false (and leaves `item` untouched) once closed.
  bool push(T& item) {
    std::unique_lock lock(mu_);
    if (!closed_ && items_.size() >= capacity_) {
      blocked_producers_.enter();
      not_full_.wait(lock, [&] { return closed_ || items_.size() < capacity_; });
      blocked_producers_.leave();
    }
    if (closed_) return false;
    items_.push_back(std::move(item));
    lock.unlock();
    not_empty_.notify_one();
    return true;
  }
  bool push(T&& item) { return push(item); }

  // Blocks while the queue is empty and open. nullopt once closed and drained.
  std::optional<T> pop() {
    std::unique_lock lock(mu_);
    if (!closed_ && items_.empty()) {
      blocked_consumers_.enter();
      not_empty_.wait(lock, [&] { return closed_ || !items_.empty(); });
      blocked_consumers_.leave();
    }
    return take(lock);
  }

  // Like pop(), but gives up after `timeout` (nullopt; closed() tells the two apart).
  template <typename Rep, typename Period>
  std::optional<T> pop_for(std::chrono::duration<Rep, Period> timeout) {
    std::unique_lock lock(mu_);
    if (!closed_ && items_.empty()) {
      blocked_consumers_.enter();
      not_empty_.wait_for(lock, timeout, [&] { return closed_ || !items_.empty(); });
      blocked_consumers_.leave();
    }
    return take(lock);
  }

  // Never blocks: nullopt when empty.
  std::optional<T> try_pop() {
    std::unique_lock lock(mu_);
    return take(lock);
  }

  // Wakes every blocked producer and consumer; idempotent.
  void close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    not_full_.notify_all();
    not_empty_.notify_all();
  }

  size_t size() const {
    std::lock_guard lock(mu_);
    return items_.size();
  }
  size_t capacity() const { return capacity_; }
  bool closed() const {
    std::lock_guard lock(mu_);
    return closed_;
  }
  // Threads blocked in push() / pop() right now (tests observe back-pressure with these).
  size_t blocked_producers() const {
    std::lock_guard lock(mu_);
    return blocked_producers_.count();
  }
  size_t blocked_consumers() const {
    std::lock_guard lock(mu_);
    return blocked_consumers_.count();
  }
  // Each blocks until that many are (tests: act once a stage is blocked); false after `timeout`.
  bool await_blocked_producers(size_t n, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mu_);
    return blocked_producers_.await(lock, n, timeout);
  }
  bool await_blocked_consumers(size_t n, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mu_);
    return blocked_consumers_.await(lock, n, timeout);
  }

 private:
  std::optional<T> take(std::unique_lock<std::mutex>& lock) {
    if (items_.empty()) return std::nullopt;
    std::optional<T> item(std::move(items_.front()));
    items_.pop_front();
    // Blocked producers are woken together once the queue has drained to half, not one per pop:
    // a consumer that is the bottleneck would otherwise pay a wake-up and a context switch for
    // every item. The consumers still have half a queue of work meanwhile, so nothing idles.
    const bool wake = blocked_producers_.count() > 0 && items_.size() <= capacity_ / 2;
    lock.unlock();
    if (wake) not_full_.notify_all();
    return item;
  }

  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::deque<T> items_;
  mutable BlockedCount blocked_producers_;
  mutable BlockedCount blocked_consumers_;
  bool closed_ = false;
};

}  // namespace docpipe
