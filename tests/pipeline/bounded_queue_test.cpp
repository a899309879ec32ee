#include "pipeline/bounded_queue.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "tests/pipeline/pipeline_test_support.h"

namespace docpipe {
namespace {

using namespace std::chrono_literals;

TEST_CASE("bounded_queue: items come out in the order they went in") {
  BoundedQueue<int> q(3);
  CHECK(q.push(1));
  CHECK(q.push(2));
  CHECK(q.push(3));
  CHECK(q.size() == 3);
  CHECK(q.pop() == 1);
  CHECK(q.try_pop() == 2);
  CHECK(q.pop() == 3);
  CHECK(q.try_pop() == std::nullopt);
  CHECK(q.size() == 0);
}

TEST_CASE("bounded_queue: a full queue blocks the producer until the consumer pops") {
  BoundedQueue<int> q(2);
  REQUIRE(q.push(1));
  REQUIRE(q.push(2));
  std::atomic<bool> pushed{false};
  std::thread producer([&] {
    q.push(3);
    pushed = true;
  });
  // The producer cannot finish while the queue is full: it is blocked, not failed.
  REQUIRE(q.await_blocked_producers(1, 10s));
  CHECK_FALSE(pushed.load());
  CHECK(q.pop() == 1);
  producer.join();
  CHECK(pushed.load());
  CHECK(q.size() == 2);
  CHECK(q.pop() == 2);
  CHECK(q.pop() == 3);
}

TEST_CASE("bounded_queue: close wakes a blocked consumer with nullopt") {
  BoundedQueue<int> q(2);
  std::atomic<int> results{0};
  std::vector<std::thread> consumers;
  for (int i = 0; i < 3; ++i) {
    consumers.emplace_back([&] {
      if (q.pop() == std::nullopt) ++results;
    });
  }
  REQUIRE(q.await_blocked_consumers(3, 10s));
  q.close();
  for (auto& t : consumers) t.join();
  CHECK(results == 3);
  CHECK(q.closed());
}

TEST_CASE("bounded_queue: close wakes a blocked producer, which fails and keeps its item") {
  BoundedQueue<std::unique_ptr<int>> q(1);
  REQUIRE(q.push(std::make_unique<int>(1)));
  std::atomic<bool> returned{false};
  bool ok = true;
  std::unique_ptr<int> kept = std::make_unique<int>(7);
  std::thread producer([&] {
    ok = q.push(kept);
    returned = true;
  });
  REQUIRE(q.await_blocked_producers(1, 10s));
  CHECK_FALSE(returned.load());
  q.close();
  producer.join();
  CHECK_FALSE(ok);
  REQUIRE(kept != nullptr);
  CHECK(*kept == 7);
}

TEST_CASE("bounded_queue: a closed queue is drained before pop reports the end") {
  BoundedQueue<int> q(4);
  q.push(1);
  q.push(2);
  q.close();
  CHECK_FALSE(q.push(3));
  CHECK(q.pop() == 1);
  CHECK(q.pop() == 2);
  CHECK(q.pop() == std::nullopt);
}

TEST_CASE("bounded_queue: many producers and consumers pass every item exactly once") {
  BoundedQueue<int> q(8);
  constexpr int kPerProducer = 5000;
  std::vector<std::thread> threads;
  std::atomic<long> sum{0};
  std::atomic<int> count{0};
  for (int p = 0; p < 3; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 1; i <= kPerProducer; ++i) q.push(p * kPerProducer + i);
    });
  }
  std::vector<std::thread> consumers;
  for (int c = 0; c < 3; ++c) {
    consumers.emplace_back([&] {
      while (auto v = q.pop()) {
        sum += *v;
        ++count;
      }
    });
  }
  for (auto& t : threads) t.join();
  q.close();
  for (auto& t : consumers) t.join();
  const long n = 3L * kPerProducer;
  CHECK(count == n);
  CHECK(sum == n * (n + 1) / 2);
}

}  // namespace
}  // namespace docpipe
