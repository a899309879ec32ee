// The count behind "max_queued_jobs" (daemon/quota_ledger.h): reservations against a cap,
// releases, jobs held whatever the cap (resumed), and many threads reserving at once never
// passing it.

#include "daemon/quota_ledger.h"

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace docpipe {
namespace {

using Reserve = QuotaLedger::Reserve;

TEST_CASE("quota ledger: reservations stop at the cap and a release makes room") {
  QuotaLedger ledger;
  CHECK(ledger.reserve("a", 1000, 2) == Reserve::kReserved);
  CHECK(ledger.reserve("b", 1000, 2) == Reserve::kReserved);
  int64_t counted = -1;
  CHECK(ledger.reserve("c", 1000, 2, &counted) == Reserve::kOverCap);
  CHECK(counted == 2);
  CHECK(ledger.count(1000) == 2);
  // Another submitter has a count of its own.
  CHECK(ledger.reserve("d", 1001, 2) == Reserve::kReserved);
  CHECK(ledger.count(1001) == 1);
  ledger.release("a");
  CHECK(ledger.count(1000) == 1);
  CHECK(ledger.reserve("c", 1000, 2) == Reserve::kReserved);
  // Releasing what is not counted (twice, or never) changes nothing.
  ledger.release("a");
  ledger.release("never");
  CHECK(ledger.count(1000) == 2);
  CHECK(ledger.size() == 3);
}

TEST_CASE("quota ledger: no cap counts without limit and a cap of 0 refuses all") {
  QuotaLedger ledger;
  for (int i = 0; i < 100; ++i) {
    CHECK(ledger.reserve("j" + std::to_string(i), 0, std::nullopt) == Reserve::kReserved);
  }
  CHECK(ledger.count(0) == 100);
  CHECK(ledger.reserve("x", 5, 0) == Reserve::kOverCap);
  CHECK(ledger.count(5) == 0);
}

TEST_CASE("quota ledger: one id is counted once - a second reservation of it is refused") {
  QuotaLedger ledger;
  CHECK(ledger.reserve("same", 1000, 5) == Reserve::kReserved);
  CHECK(ledger.reserve("same", 1000, 5) == Reserve::kIdTaken);
  // Another submitter's job of that id neither steals nor frees the first one's count.
  CHECK(ledger.reserve("same", 1001, 5) == Reserve::kIdTaken);
  CHECK(ledger.count(1000) == 1);
  CHECK(ledger.count(1001) == 0);
  // The refused one's release (the loser's clean-up) would free the winner: callers release only
  // what they reserved; hold of a counted id is a no-op.
  ledger.hold("same", 1001);
  CHECK(ledger.count(1000) == 1);
  CHECK(ledger.count(1001) == 0);
}

TEST_CASE("quota ledger: held jobs count whatever the cap and only once") {
  QuotaLedger ledger;
  // Three jobs resumed from active/ for a submitter whose cap is now 1.
  ledger.hold("r1", 1000);
  ledger.hold("r2", 1000);
  ledger.hold("r3", 1000);
  ledger.hold("r3", 1000);
  CHECK(ledger.count(1000) == 3);
  CHECK(ledger.reserve("new", 1000, 1) == Reserve::kOverCap);
  // Reserved at submit, then held when the table queues it: still one.
  CHECK(ledger.reserve("n2", 1001, 1) == Reserve::kReserved);
  ledger.hold("n2", 1001);
  CHECK(ledger.count(1001) == 1);
  ledger.release("r1");
  ledger.release("r2");
  CHECK(ledger.reserve("new", 1000, 1) == Reserve::kOverCap);  // r3 still runs
  ledger.release("r3");
  CHECK(ledger.reserve("new", 1000, 1) == Reserve::kReserved);
}

TEST_CASE("quota ledger: threads reserving at once never pass the cap") {
  QuotaLedger ledger;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 2000;
  constexpr int64_t kCap = 3;
  std::atomic<int> over{0};
  std::atomic<int64_t> peak{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < kPerThread; ++i) {
        const std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        if (ledger.reserve(id, 1000, kCap) != Reserve::kReserved) continue;
        int64_t now = ledger.count(1000);
        if (now > kCap) over.fetch_add(1);
        int64_t seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::yield();  // held a while, so that reservations overlap
        ledger.release(id);
      }
    });
  }
  go = true;
  for (auto& th : threads) th.join();
  CHECK(over.load() == 0);
  CHECK(peak.load() <= kCap);
  CHECK(peak.load() >= 1);
  CHECK(ledger.count(1000) == 0);
  CHECK(ledger.size() == 0);
}

}  // namespace
}  // namespace docpipe
