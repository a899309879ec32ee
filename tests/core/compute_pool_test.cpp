// The compute pool: tasks run on its threads or, caller-runs, on their owner's; cancelled ones
// never run.

#include "core/compute_pool.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

using docpipe::ComputePool;
using docpipe::ComputeTask;

namespace {

class CountingTask : public ComputeTask {
 public:
  std::atomic<int> runs{0};
  std::atomic<std::thread::id> ran_on{};

 protected:
  void run() override {
    ran_on = std::this_thread::get_id();
    ++runs;
  }
};

// Occupies a pool thread until released.
class BlockingTask : public ComputeTask {
 public:
  std::atomic<bool> started{false};
  std::atomic<bool> release{false};

 protected:
  void run() override {
    started = true;
    started.notify_all();
    while (!release.load()) release.wait(false);
  }
};

void wait_started(BlockingTask& t) {
  while (!t.started.load()) t.started.wait(false);
}

void unblock(BlockingTask& t) {
  t.release = true;
  t.release.notify_all();
}

}  // namespace

TEST_CASE("compute pool: a submitted task runs on a pool thread while its owner waits") {
  ComputePool pool(2);
  auto task = std::make_shared<CountingTask>();
  pool.submit(task);
  // Either the pool ran it or the owner does now; both count once.
  task->run_or_wait();
  CHECK(task->runs == 1);
  CHECK_FALSE(task->in_flight());
  // With the pool idle, most of many tasks run there (not all need to).
  const uint64_t before = pool.tasks_run();
  auto blocker = std::make_shared<BlockingTask>();
  pool.submit(blocker);
  wait_started(*blocker);
  CHECK(pool.tasks_run() == before);  // counted once it finishes
  unblock(*blocker);
  blocker->run_or_wait();
  CHECK(pool.tasks_run() == before + 1);
}

TEST_CASE("compute pool: with every pool thread busy the owner runs its task itself") {
  ComputePool pool(1);
  auto blocker = std::make_shared<BlockingTask>();
  pool.submit(blocker);
  wait_started(*blocker);
  auto task = std::make_shared<CountingTask>();
  pool.submit(task);
  CHECK(task->pending());
  CHECK(task->run_or_wait());  // no deadlock: the caller runs it
  CHECK(task->runs == 1);
  CHECK(task->ran_on.load() == std::this_thread::get_id());
  // Resubmitted while its first queue entry still waits: one entry serves both rounds.
  task->cancel_or_wait();
  pool.submit(task);
  CHECK(task->run_or_wait());
  CHECK(task->runs == 2);
  unblock(*blocker);
  blocker->run_or_wait();
}

TEST_CASE("compute pool: a cancelled task never runs, even when its queue entry comes up") {
  auto task = std::make_shared<CountingTask>();
  {
    ComputePool pool(1);
    auto blocker = std::make_shared<BlockingTask>();
    pool.submit(blocker);
    wait_started(*blocker);
    pool.submit(task);
    task->cancel_or_wait();
    CHECK_FALSE(task->in_flight());
    unblock(*blocker);
    blocker->run_or_wait();
    // The pool's thread pops the cancelled entry and drops it; a task queued after it runs.
    auto later = std::make_shared<CountingTask>();
    pool.submit(later);
    while (pool.tasks_run() < 2 && later->pending()) std::this_thread::yield();
    later->run_or_wait();
    CHECK(later->runs == 1);
  }
  CHECK(task->runs == 0);
}
