#include "pipeline/semaphore.h"

#include <prometheus/gauge.h>

#include <algorithm>
#include <cassert>

namespace docpipe {

CountingSemaphore::CountingSemaphore(size_t count) : capacity_(count == 0 ? 1 : count) {}

size_t CountingSemaphore::capacity() const {
  std::lock_guard lock(mu_);
  return capacity_;
}

void CountingSemaphore::set_capacity(size_t capacity) {
  {
    std::lock_guard lock(mu_);
    capacity_ = capacity == 0 ? 1 : capacity;
  }
  cv_.notify_all();
}

size_t ByteBudget::budget() const {
  std::lock_guard lock(mu_);
  return budget_;
}

void ByteBudget::set_budget(size_t budget) {
  {
    std::lock_guard lock(mu_);
    budget_ = budget;
  }
  cv_.notify_all();
}

bool CountingSemaphore::acquire() {
  std::unique_lock lock(mu_);
  waiting_.enter();
  cv_.wait(lock, [&] { return closed_ || in_use_ < capacity_; });
  waiting_.leave();
  if (closed_) return false;
  ++in_use_;
  return true;
}

bool CountingSemaphore::try_acquire() {
  std::lock_guard lock(mu_);
  if (closed_ || in_use_ >= capacity_) return false;
  ++in_use_;
  return true;
}

void CountingSemaphore::release() {
  {
    std::lock_guard lock(mu_);
    assert(in_use_ > 0);
    --in_use_;
  }
  cv_.notify_one();
}

void CountingSemaphore::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

size_t CountingSemaphore::in_use() const {
  std::lock_guard lock(mu_);
  return in_use_;
}

size_t CountingSemaphore::waiting() const {
  std::lock_guard lock(mu_);
  return waiting_.count();
}

bool CountingSemaphore::await_waiting(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return waiting_.await(lock, n, timeout);
}

ByteBudget::ByteBudget(size_t budget, prometheus::Gauge* in_use_gauge)
    : budget_(budget), gauge_(in_use_gauge) {
  if (gauge_ != nullptr) gauge_->Set(0);
}

bool ByteBudget::fits(size_t n) const {
  size_t need = std::min(n, budget_);
  return in_use_ <= budget_ && budget_ - in_use_ >= need;
}

void ByteBudget::set_in_use(size_t v) {
  in_use_ = v;
  peak_ = std::max(peak_, v);
  if (gauge_ != nullptr) gauge_->Set(static_cast<double>(v));
}

bool ByteBudget::acquire(size_t n) {
  std::unique_lock lock(mu_);
  const uint64_t ticket = next_ticket_++;
  waiting_.enter();
  cv_.wait(lock, [&] { return closed_ || (ticket == serving_ && fits(n)); });
  waiting_.leave();
  if (closed_) return false;
  ++serving_;
  set_in_use(in_use_ + n);
  lock.unlock();
  cv_.notify_all();  // the next ticket may fit too
  return true;
}

bool ByteBudget::try_acquire(size_t n) {
  std::lock_guard lock(mu_);
  if (closed_ || next_ticket_ != serving_ || !fits(n)) return false;
  set_in_use(in_use_ + n);
  return true;
}

void ByteBudget::force_acquire(size_t n) {
  std::lock_guard lock(mu_);
  set_in_use(in_use_ + n);
}

void ByteBudget::release(size_t n) {
  if (n == 0) return;
  {
    std::lock_guard lock(mu_);
    assert(in_use_ >= n);
    set_in_use(in_use_ - std::min(n, in_use_));
  }
  // Waiters want different amounts: wake them all so a small request is not stuck behind a big one.
  cv_.notify_all();
}

void ByteBudget::resize(size_t from, size_t to) {
  if (to > from) {
    force_acquire(to - from);
  } else {
    release(from - to);
  }
}

void ByteBudget::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

size_t ByteBudget::in_use() const {
  std::lock_guard lock(mu_);
  return in_use_;
}

size_t ByteBudget::peak() const {
  std::lock_guard lock(mu_);
  return peak_;
}

size_t ByteBudget::waiting() const {
  std::lock_guard lock(mu_);
  return waiting_.count();
}

bool ByteBudget::await_waiting(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return waiting_.await(lock, n, timeout);
}

}  // namespace docpipe
