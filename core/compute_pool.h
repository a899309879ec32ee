#pragma once
// One process-wide pool of threads for CPU work that a single document can split into
// independent tasks (the gzip transform's deflate blocks).
//
// Caller-runs: the thread that submitted a task and needs its result runs it itself if no pool
// thread has taken it yet (ComputeTask::run_or_wait). So a document never waits on a pool busy
// with other documents' tasks, and no deadlock can come from the pool's size, even where its
// threads do not exist (a forked child). The pool only adds speed when it has idle threads.
//
// A task belongs to its submitter, which may reuse it for the next task once it is finished
// (kDone) and must call cancel_or_wait() before freeing what it works on. The pool holds
// shared_ptrs, so a task it has queued outlives its owner safely; a cancelled task never runs.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace docpipe {

class ComputeTask {
 public:
  virtual ~ComputeTask() = default;

  // Runs the task on this thread unless a pool thread has taken it; then waits until it is done.
  // Returns true if this thread ran it. The task must have been submitted.
  bool run_or_wait();
  // A task no thread has taken never runs (it counts as finished); one that is running is
  // waited for. Afterwards no pool thread touches the task's data.
  void cancel_or_wait();
  // True if the task was submitted and has not finished (or been cancelled) yet.
  bool in_flight() const;
  // True if it is submitted and no thread has taken it yet.
  bool pending() const { return state_.load(std::memory_order_acquire) == kPending; }

 protected:
  virtual void run() = 0;

 private:
  friend class ComputePool;
  enum State : int { kIdle, kPending, kRunning, kDone, kCancelled };
  bool try_claim();
  void complete();
  void wait_while_running() const;

  std::atomic<int> state_{kIdle};
  // Whether the pool's queue holds an entry for this task, so that a task resubmitted while a
  // stale entry waits is queued once (the queue holds at most one entry per task).
  std::atomic<bool> queued_{false};
};

class ComputePool {
 public:
  // `threads` >= 1.
  explicit ComputePool(size_t threads);
  ~ComputePool();  // stops and joins the threads; queued tasks are left for their owners to run
  ComputePool(const ComputePool&) = delete;
  ComputePool& operator=(const ComputePool&) = delete;

  // The process-wide pool: std::thread::hardware_concurrency() threads (at least 1), created on
  // first use.
  static ComputePool& instance();

  // Queues `task` (which must be idle or finished) for a pool thread; its owner may also run it
  // (run_or_wait). Never blocks on work.
  void submit(const std::shared_ptr<ComputeTask>& task);

  size_t size() const { return threads_.size(); }
  // Tasks run by this pool's threads so far (tests: proof that work ran beside its submitter).
  uint64_t tasks_run() const { return tasks_run_.load(std::memory_order_relaxed); }

 private:
  void work();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<ComputeTask>> queue_;
  bool stopping_ = false;
  std::atomic<uint64_t> tasks_run_{0};
  std::vector<std::thread> threads_;
};

}  // namespace docpipe
