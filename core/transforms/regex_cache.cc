#include "core/transforms/regex_cache.h"

#include <re2/re2.h>

#include <atomic>
#include <list>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace docpipe {
namespace {

RE2::Options regex_options(int64_t max_mem) {
  RE2::Options options;
  options.set_longest_match(true);
  options.set_log_errors(false);
  options.set_max_mem(max_mem);
  return options;
}

class RegexCache {
 public:
  static RegexCache& instance() {
    static RegexCache cache;
    return cache;
  }

  uint64_t compiled() const { return compiled_.load(std::memory_order_relaxed); }

  std::shared_ptr<const RE2> get(const std::string& pattern, int64_t max_mem) {
    std::shared_ptr<Entry> entry;
    {
      std::lock_guard lock(mu_);
      std::string key = std::to_string(max_mem) + ':' + pattern;
      auto it = index_.find(key);
      if (it != index_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second);  // most recently used first
        entry = it->second->second;
      } else {
        entry = std::make_shared<Entry>();
        entry->max_mem = max_mem;
        lru_.emplace_front(key, entry);
        index_.emplace(std::move(key), lru_.begin());
        held_mem_ += max_mem;
        evict_locked();
      }
    }
    // Compiled once per entry; a second caller of the same pattern waits for the first.
    std::lock_guard compile_lock(entry->mu);
    if (!entry->re) {
      entry->re = std::make_shared<const RE2>(pattern, regex_options(max_mem));
      compiled_.fetch_add(1, std::memory_order_relaxed);
    }
    return entry->re;
  }

 private:
  struct Entry {
    std::mutex mu;
    std::shared_ptr<const RE2> re;
    int64_t max_mem = 0;
  };
  using Lru = std::list<std::pair<std::string, std::shared_ptr<Entry>>>;

  void evict_locked() {
    while ((held_mem_ > kRegexCacheMaxMem || lru_.size() > kRegexCacheEntries) && lru_.size() > 1) {
      held_mem_ -= lru_.back().second->max_mem;
      index_.erase(lru_.back().first);
      lru_.pop_back();
    }
  }

  std::atomic<uint64_t> compiled_{0};
  std::mutex mu_;
  Lru lru_;
  std::unordered_map<std::string, Lru::iterator> index_;
  int64_t held_mem_ = 0;
};

}  // namespace

std::shared_ptr<const re2::RE2> cached_regex(const std::string& pattern, int64_t max_mem) {
  return RegexCache::instance().get(pattern, max_mem);
}

uint64_t regex_compilations() { return RegexCache::instance().compiled(); }

}  // namespace docpipe
