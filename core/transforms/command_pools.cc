#include "core/transforms/command_pools.h"

#include <thread>

namespace docpipe {

CommandPools& CommandPools::instance() {
  static CommandPools* pools = new CommandPools;  // never destroyed: its thread outlives main()
  return *pools;
}

namespace {

// What the processes of a pool are: a reload that changes only what is asked of each document
// (timeout_ms, which each document brings) or of the command's breaker keeps them running.
bool same_processes(const CommandSpec& a, const CommandSpec& b) {
  return a.argv == b.argv && a.mode == b.mode && a.pool == b.pool;
}

}  // namespace

PoolCounters& CommandPools::counters_locked(const std::string& name) {
  std::unique_ptr<PoolCounters>& c = counters_[name];
  if (c == nullptr) c = std::make_unique<PoolCounters>();
  return *c;
}

std::shared_ptr<CommandPool> CommandPools::get(const std::string& name, const CommandSpec& spec) {
  std::lock_guard lock(mu_);
  auto it = current_.find(name);
  if (it != current_.end()) {
    if (same_processes(it->second->spec(), spec) && !it->second->stopped()) return it->second;
    retired_.push_back(std::move(it->second));
    current_.erase(it);
  }
  auto pool = std::make_shared<CommandPool>(name, spec, counters_locked(name));
  current_.emplace(name, pool);
  ensure_thread_locked();
  return pool;
}

void CommandPools::retire_unlisted(const std::map<std::string, CommandSpec>& commands) {
  std::lock_guard lock(mu_);
  for (auto it = current_.begin(); it != current_.end();) {
    auto listed = commands.find(it->first);
    if (listed == commands.end() || !same_processes(listed->second, it->second->spec())) {
      retired_.push_back(std::move(it->second));
      it = current_.erase(it);
    } else {
      ++it;
    }
  }
  wake_.notify_all();
}

void CommandPools::stop_all() {
  std::vector<std::shared_ptr<CommandPool>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, pool] : current_) all.push_back(pool);
    all.insert(all.end(), retired_.begin(), retired_.end());
    // Kept until reaped by the thread: a job may still hold a retired pool.
    for (auto& [name, pool] : current_) retired_.push_back(std::move(pool));
    current_.clear();
  }
  for (auto& pool : all) pool->stop(true);
}

std::vector<CommandPoolStats> CommandPools::stats() {
  std::lock_guard lock(mu_);
  std::vector<CommandPoolStats> out;
  for (const auto& [name, c] : counters_) {
    CommandPoolStats s;
    s.command = name;
    auto add = [&s](const CommandPool& pool) {
      PoolStateCounts n = pool.counts();
      s.processes.starting += n.starting;
      s.processes.idle += n.idle;
      s.processes.busy += n.busy;
      s.processes.checking += n.checking;
      s.processes.stopping += n.stopping;
    };
    auto cur = current_.find(name);
    if (cur != current_.end()) add(*cur->second);
    for (const auto& pool : retired_)
      if (pool->name() == name) add(*pool);
    for (int i = 0; i < kRecycleReasons; ++i) s.recycles[i] = c->recycles[i].load();
    for (int i = 0; i < kPoolDocumentOutcomes; ++i) s.documents[i] = c->documents[i].load();
    s.starts = c->starts.load();
    s.start_failures = c->start_failures.load();
    s.pongs = c->pongs.load();
    out.push_back(std::move(s));
  }
  return out;
}

void CommandPools::ensure_thread_locked() {
  if (thread_started_) return;
  thread_started_ = true;
  std::thread([this] { loop(); }).detach();
}

void CommandPools::loop() {
  for (;;) {
    std::vector<std::shared_ptr<CommandPool>> pools;
    {
      std::unique_lock lock(mu_);
      wake_.wait_for(lock, kTick);
      for (auto& [name, pool] : current_) pools.push_back(pool);
      pools.insert(pools.end(), retired_.begin(), retired_.end());
    }
    for (auto& pool : pools) pool->maintain();
    pools.clear();
    // Retired pools that no job holds any more: their processes are told to end, and the pool
    // goes once they all have.
    std::vector<std::shared_ptr<CommandPool>> finished;
    {
      std::lock_guard lock(mu_);
      for (auto it = retired_.begin(); it != retired_.end();) {
        if (it->use_count() == 1) {
          (*it)->stop(false);
          if ((*it)->empty()) {
            finished.push_back(std::move(*it));
            it = retired_.erase(it);
            continue;
          }
        }
        ++it;
      }
    }
  }
}

}  // namespace docpipe
