#include "core/compute_pool.h"

#include <algorithm>

namespace docpipe {

// ---- ComputeTask --------------------------------------------------------------------------------

bool ComputeTask::try_claim() {
  int expected = kPending;
  return state_.compare_exchange_strong(expected, kRunning, std::memory_order_acq_rel);
}

void ComputeTask::complete() {
  state_.store(kDone, std::memory_order_release);
  state_.notify_all();
}

void ComputeTask::wait_while_running() const {
  for (;;) {
    const int s = state_.load(std::memory_order_acquire);
    if (s != kRunning) return;
    state_.wait(s, std::memory_order_acquire);
  }
}

bool ComputeTask::run_or_wait() {
  if (try_claim()) {
    run();
    complete();
    return true;
  }
  wait_while_running();
  return false;
}

void ComputeTask::cancel_or_wait() {
  int expected = kPending;
  if (state_.compare_exchange_strong(expected, kCancelled, std::memory_order_acq_rel)) return;
  wait_while_running();
}

bool ComputeTask::in_flight() const {
  const int s = state_.load(std::memory_order_acquire);
  return s == kPending || s == kRunning;
}

// ---- ComputePool --------------------------------------------------------------------------------

ComputePool::ComputePool(size_t threads) {
  threads_.reserve(std::max<size_t>(threads, 1));
  for (size_t i = 0; i < std::max<size_t>(threads, 1); ++i)
    threads_.emplace_back([this] { work(); });
}

ComputePool::~ComputePool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

ComputePool& ComputePool::instance() {
  static ComputePool pool(std::max(1u, std::thread::hardware_concurrency()));
  return pool;
}

void ComputePool::submit(const std::shared_ptr<ComputeTask>& task) {
  task->state_.store(ComputeTask::kPending, std::memory_order_release);
  // An entry still queued from an earlier round (its task was run by its owner) serves this one.
  if (task->queued_.exchange(true, std::memory_order_acq_rel)) return;
  {
    std::lock_guard lock(mu_);
    queue_.push_back(task);
  }
  cv_.notify_one();
}

void ComputePool::work() {
  for (;;) {
    std::shared_ptr<ComputeTask> task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    // Cleared before the claim, as a read-modify-write: a resubmission either finds the flag
    // clear and queues anew, or set its task pending before its exchange, which this exchange
    // reads (acquire), so the claim below sees it pending.
    task->queued_.exchange(false, std::memory_order_acq_rel);
    if (task->try_claim()) {
      task->run();
      tasks_run_.fetch_add(1, std::memory_order_relaxed);
      task->complete();
    }
  }
}

}  // namespace docpipe
