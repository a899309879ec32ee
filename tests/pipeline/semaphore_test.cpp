#include "pipeline/semaphore.h"

#include <doctest/doctest.h>
#include <prometheus/gauge.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "tests/pipeline/pipeline_test_support.h"

namespace docpipe {
namespace {

using namespace std::chrono_literals;

TEST_CASE("counting_semaphore: acquire blocks at the limit until a release") {
  CountingSemaphore sem(2);
  REQUIRE(sem.acquire());
  REQUIRE(sem.acquire());
  CHECK(sem.in_use() == 2);
  CHECK_FALSE(sem.try_acquire());
  std::atomic<bool> got{false};
  std::thread t([&] { got = sem.acquire(); });
  REQUIRE(sem.await_waiting(1, 10s));
  CHECK_FALSE(got.load());
  sem.release();
  t.join();
  CHECK(got.load());
  CHECK(sem.in_use() == 2);
  sem.release();
  sem.release();
  CHECK(sem.in_use() == 0);
}

TEST_CASE("counting_semaphore: close wakes waiters, which fail") {
  CountingSemaphore sem(1);
  REQUIRE(sem.acquire());
  std::atomic<int> failed{0};
  std::thread a([&] { failed += sem.acquire() ? 0 : 1; });
  std::thread b([&] { failed += sem.acquire() ? 0 : 1; });
  REQUIRE(sem.await_waiting(2, 10s));
  sem.close();
  a.join();
  b.join();
  CHECK(failed == 2);
  CHECK_FALSE(sem.try_acquire());
  CHECK(sem.in_use() == 1);
}

TEST_CASE("byte_budget: acquire blocks when the bytes do not fit and resumes on release") {
  ByteBudget budget(100);
  REQUIRE(budget.acquire(60));
  CHECK_FALSE(budget.try_acquire(50));
  std::atomic<bool> got{false};
  std::thread t([&] { got = budget.acquire(50); });
  REQUIRE(budget.await_waiting(1, 10s));
  CHECK_FALSE(got.load());
  budget.release(10);  // 50 in use: 50 more fit exactly
  t.join();
  CHECK(got.load());
  CHECK(budget.in_use() == 100);
  budget.release(100);
  CHECK(budget.in_use() == 0);
  CHECK(budget.peak() == 100);
}

TEST_CASE("byte_budget: a request larger than the budget is clamped and proceeds alone") {
  ByteBudget budget(100);
  REQUIRE(budget.acquire(30));
  std::atomic<bool> got{false};
  std::thread t([&] { got = budget.acquire(1000); });
  REQUIRE(budget.await_waiting(1, 10s));
  CHECK_FALSE(got.load());  // waits for the whole budget, not for 1000 bytes that never fit
  budget.release(30);
  t.join();
  CHECK(got.load());
  // It is charged what it really holds, and nothing else fits beside it.
  CHECK(budget.in_use() == 1000);
  CHECK_FALSE(budget.try_acquire(1));
  budget.release(1000);
  CHECK(budget.try_acquire(1));
}

TEST_CASE("byte_budget: waiters are served in order, so small requests cannot starve a big one") {
  ByteBudget budget(100);
  REQUIRE(budget.acquire(60));
  std::atomic<bool> big{false};
  std::atomic<bool> small{false};
  std::thread a([&] { big = budget.acquire(90); });
  REQUIRE(budget.await_waiting(1, 10s));
  std::thread b([&] { small = budget.acquire(10); });  // 10 fits, but the 90 came first
  REQUIRE(budget.await_waiting(2, 10s));
  CHECK_FALSE(budget.try_acquire(10));
  CHECK_FALSE(small.load());
  budget.release(60);
  a.join();
  b.join();
  CHECK(big.load());
  CHECK(small.load());
  CHECK(budget.in_use() == 100);
}

TEST_CASE("byte_budget: force_acquire overdraws without blocking and release returns it") {
  ByteBudget budget(100);
  REQUIRE(budget.acquire(80));
  budget.force_acquire(70);  // a transform output that outgrew its input
  CHECK(budget.in_use() == 150);
  CHECK(budget.peak() == 150);
  CHECK_FALSE(budget.try_acquire(1));
  budget.resize(70, 20);  // the output shrank again
  CHECK(budget.in_use() == 100);
  budget.resize(80, 90);
  CHECK(budget.in_use() == 110);
  budget.release(110);
  CHECK(budget.in_use() == 0);
  CHECK(budget.try_acquire(100));
  CHECK(budget.peak() == 150);
}

TEST_CASE("byte_budget: close wakes a waiting acquire, which fails and charges nothing") {
  ByteBudget budget(10);
  REQUIRE(budget.acquire(10));
  std::atomic<int> result{-1};
  std::thread t([&] { result = budget.acquire(5) ? 1 : 0; });
  REQUIRE(budget.await_waiting(1, 10s));
  budget.close();
  t.join();
  CHECK(result == 0);
  CHECK(budget.in_use() == 10);
}

TEST_CASE("byte_budget: keeps the in-use gauge equal to the bytes held") {
  prometheus::Gauge gauge;
  gauge.Set(12345);
  ByteBudget budget(100, &gauge);
  CHECK(gauge.Value() == 0);
  REQUIRE(budget.acquire(40));
  CHECK(gauge.Value() == 40);
  budget.force_acquire(100);
  CHECK(gauge.Value() == 140);
  budget.release(140);
  CHECK(gauge.Value() == 0);
}

TEST_CASE("byte_budget: concurrent users never exceed the budget without overdraft") {
  ByteBudget budget(1000);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        size_t n = 100 + static_cast<size_t>((i * 37 + t * 11) % 300);
        if (!budget.acquire(n)) return;
        budget.release(n);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(budget.in_use() == 0);
  CHECK(budget.peak() <= 1000);
  CHECK(budget.peak() >= 100);
}

}  // namespace
}  // namespace docpipe
