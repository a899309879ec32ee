#pragma once
// The two admission bounds of the pipeline: documents in flight and bytes of buffers in flight.
// Both block the reader that wants to admit more work; the stages downstream only ever release
// (or, for a growing transform output, overdraw), so a blocked reader cannot deadlock them.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "pipeline/blocked_count.h"

namespace prometheus {
class Gauge;
}

namespace docpipe {

// A counting semaphore with close(): acquire() gives up once closed, so shutdown never hangs on it.
class CountingSemaphore {
 public:
  explicit CountingSemaphore(size_t count);
  CountingSemaphore(const CountingSemaphore&) = delete;
  CountingSemaphore& operator=(const CountingSemaphore&) = delete;

  // Blocks until a unit is free; false if the semaphore was closed first.
  bool acquire();
  bool try_acquire();
  void release();
  void close();

  size_t in_use() const;
  size_t capacity() const;
  // Changes the capacity live (config reload); waiters re-check at once. Units in use beyond a
  // lowered capacity are simply not replaced as they are released.
  void set_capacity(size_t capacity);
  size_t waiting() const;  // threads blocked in acquire()
  // Blocks until waiting() >= n (tests: act once a reader is blocked); false after `timeout`.
  bool await_waiting(size_t n, std::chrono::milliseconds timeout) const;

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  size_t in_use_ = 0;
  mutable BlockedCount waiting_;
  bool closed_ = false;
};

// Bytes of document buffers in flight, against memory_budget_bytes.
//
// acquire(n) waits for room for min(n, budget) but charges n: a document larger than the whole
// budget waits until nothing else is held and then proceeds alone, and in_use() still reports
// the memory really held. Waiters are served in arrival order, so a large request is not starved
// by a stream of small ones that keep fitting. force_acquire() overdraws without blocking; a
// transformer whose output
// outgrows its input uses it, because blocking there could deadlock (the bytes it waits for may
// be held by documents queued behind it for the transform stage).
class ByteBudget {
 public:
  // `in_use_gauge` (may be null) is kept equal to in_use().
  explicit ByteBudget(size_t budget, prometheus::Gauge* in_use_gauge = nullptr);
  ByteBudget(const ByteBudget&) = delete;
  ByteBudget& operator=(const ByteBudget&) = delete;

  // Blocks until min(n, budget) bytes fit; false if closed first (nothing charged then).
  bool acquire(size_t n);
  bool try_acquire(size_t n);
  void force_acquire(size_t n);
  void release(size_t n);
  // Changes a charge from `from` to `to` bytes in one step (release or overdraw, never blocks).
  void resize(size_t from, size_t to);
  void close();

  size_t budget() const;
  // Changes the budget live (config reload); waiters re-check at once.
  void set_budget(size_t budget);
  size_t in_use() const;
  size_t peak() const;     // highest in_use() so far
  size_t waiting() const;  // threads blocked in acquire()
  // Blocks until waiting() >= n (tests: act once a reader is blocked); false after `timeout`.
  bool await_waiting(size_t n, std::chrono::milliseconds timeout) const;

 private:
  bool fits(size_t n) const;
  void set_in_use(size_t v);  // mu_ held

  size_t budget_;
  prometheus::Gauge* const gauge_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  size_t in_use_ = 0;
  size_t peak_ = 0;
  mutable BlockedCount waiting_;
  uint64_t next_ticket_ = 0;  // acquire() calls, in arrival order
  uint64_t serving_ = 0;      // the ticket allowed to take bytes next
  bool closed_ = false;
};

}  // namespace docpipe
