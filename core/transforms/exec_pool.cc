#include "core/transforms/exec_pool.h"

#include <signal.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <thread>

namespace docpipe {
namespace {

using std::chrono::milliseconds;

// check_interrupted() is asked at least this often while a document waits for a process.
constexpr milliseconds kPollInterval{50};
constexpr int kMaxDefaultSize = 8;
constexpr milliseconds kReapWait{5000};

}  // namespace

const char* pool_outcome_name(PoolDocumentOutcome o) {
  switch (o) {
    case PoolDocumentOutcome::kSucceeded:
      return "succeeded";
    case PoolDocumentOutcome::kFailed:
      return "failed";
    case PoolDocumentOutcome::kCrashed:
      return "crashed";
    case PoolDocumentOutcome::kTimedOut:
      return "timed_out";
    case PoolDocumentOutcome::kProtocol:
      return "protocol";
    case PoolDocumentOutcome::kInterrupted:
      return "interrupted";
    case PoolDocumentOutcome::kUnavailable:
      return "unavailable";
  }
  return "unknown";
}

namespace {

// Never destroyed, like the sink: the pool thread may report while the process exits.
std::mutex& sink_mu() {
  static std::mutex* mu = new std::mutex;
  return *mu;
}
PoolEventSink& sink() {
  static PoolEventSink* s = new PoolEventSink;
  return *s;
}

}  // namespace

void set_pool_event_sink(PoolEventSink s) {
  std::lock_guard lock(sink_mu());
  sink() = std::move(s);
}

void CommandPool::end_idle(std::unique_ptr<PoolProcess> p, RecycleReason reason,
                           const std::string& why) {
  std::string what = why;
  if (what.empty()) {
    const pid_t pid = p->pid();
    p->proc().wait_exit(milliseconds(0));
    p->proc().kill_and_reap();
    what = "pool process " + std::to_string(pid) +
           (reason == RecycleReason::kProtocol ? " wrote to its stdout while idle (protocol "
                                                 "violation) and was killed"
                                               : " " + p->describe_end() + " while idle") +
           p->stderr_note();
  }
  p.reset();
  std::lock_guard lock(sink_mu());
  if (sink()) sink()(name_, what + "; replaced (" + recycle_reason_name(reason) + ")");
}

int default_pool_size() {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(cores, 1, kMaxDefaultSize);
}

void StartBackoff::failed(Clock::time_point now) {
  ++failures_;
  milliseconds delay = kFirst;
  for (int i = 1; i < failures_ && delay < kMax; ++i) delay *= 2;
  next_ = now + std::min(delay, kMax);
}

CommandPool::CommandPool(std::string name, CommandSpec spec, PoolCounters& counters)
    : name_(std::move(name)),
      spec_(std::move(spec)),
      label_("exec: command " + nlohmann::json(name_).dump()),
      size_(spec_.pool.size > 0 ? spec_.pool.size : default_pool_size()),
      counters_(counters) {}

CommandPool::~CommandPool() {
  // Nothing can be busy (a document holds the pool), so this ends every process there is.
  std::lock_guard lock(mu_);
  counters_.recycles[int(RecycleReason::kStopped)] += idle_.size();
  idle_.clear();
  stopping_.clear();
}

Result<std::unique_ptr<PoolProcess>> CommandPool::acquire(
    const std::function<Status()>& interrupted, bool* start_failed) {
  if (start_failed != nullptr) *start_failed = false;
  const auto deadline = Clock::now() + milliseconds(spec_.pool.queue_timeout_ms);
  std::unique_lock lock(mu_);
  for (;;) {
    if (stopped_) {
      return make_error(ErrorCode::kCancelled,
                        label_ +
                            ": its pool is stopped (the daemon is stopping, or a reload "
                            "replaced the command)");
    }
    // The most recently used first: it is warm, and the others can reach their health check.
    while (!idle_.empty()) {
      std::unique_ptr<PoolProcess> p = std::move(idle_.back());
      idle_.pop_back();
      if (std::optional<RecycleReason> gone = p->check_idle()) {
        ++counters_.recycles[int(*gone)];
        lock.unlock();
        end_idle(std::move(p), *gone, "");  // kills and reaps it, outside the lock
        lock.lock();
        continue;
      }
      busy_pids_.push_back(p->pid());
      p->proc().clear_stderr();
      return p;
    }
    const int live = static_cast<int>(busy_pids_.size()) + starting_ + checking_;
    const auto now = Clock::now();
    if (live < size_ && backoff_.allows(now)) {
      ++starting_;
      lock.unlock();
      Result<std::unique_ptr<PoolProcess>> started = make_error(ErrorCode::kInternal, "");
      try {
        started = PoolProcess::start(label_, spec_, interrupted);
      } catch (...) {
        lock.lock();  // never leave a start counted that is not happening
        --starting_;
        freed_.notify_all();
        throw;
      }
      lock.lock();
      --starting_;
      freed_.notify_all();
      if (!started) {
        const Error& e = started.error();
        // The document's own cancellation or timeout says nothing about the command.
        if (e.code != ErrorCode::kCancelled && e.code != ErrorCode::kTimeout) {
          ++counters_.start_failures;
          backoff_.failed(Clock::now());
          last_start_error_ = e.message;
          last_start_code_ = e.code;
          if (start_failed != nullptr) *start_failed = true;
        }
        return e;
      }
      ++counters_.starts;
      backoff_.succeeded();
      std::unique_ptr<PoolProcess> p = std::move(started).value();
      if (stopped_) continue;  // p is killed as it goes; the loop returns the stopped error
      busy_pids_.push_back(p->pid());
      return p;
    }
    if (live == 0 && !backoff_.allows(now)) return unavailable_locked(now);
    if (now >= deadline) {
      return make_error(ErrorCode::kIo, label_ + ": no pool process came free within " +
                                            std::to_string(spec_.pool.queue_timeout_ms) +
                                            " ms (queue_timeout_ms; size " + std::to_string(size_) +
                                            ", all busy)");
    }
    if (interrupted) {
      lock.unlock();
      Status st = interrupted();
      lock.lock();
      if (!st) return st.error();
    }
    auto wake = std::min(now + kPollInterval, deadline);
    if (!backoff_.allows(now)) wake = std::min(wake, backoff_.next_attempt());
    freed_.wait_until(lock, wake);
  }
}

Error CommandPool::unavailable_locked(Clock::time_point now) const {
  const auto wait = std::chrono::ceil<milliseconds>(backoff_.next_attempt() - now);
  return make_error(last_start_code_, last_start_error_ + " (" +
                                          std::to_string(backoff_.failures()) +
                                          " failed start(s) in a row; next attempt in " +
                                          std::to_string(wait.count()) + " ms)");
}

void CommandPool::release(std::unique_ptr<PoolProcess> p, std::optional<RecycleReason> reason) {
  std::unique_lock lock(mu_);
  auto it = std::find(busy_pids_.begin(), busy_pids_.end(), p->pid());
  if (it != busy_pids_.end()) busy_pids_.erase(it);
  ++p->documents;
  if (reason) {
    ++counters_.recycles[int(*reason)];
    freed_.notify_all();
    lock.unlock();
    p.reset();  // SIGKILL to its group and reaped, outside the lock
    return;
  }
  if (stopped_) {
    retire_locked(std::move(p), RecycleReason::kStopped);
  } else if (p->documents >= spec_.pool.max_documents) {
    retire_locked(std::move(p), RecycleReason::kMaxDocuments);
  } else {
    p->idle_since = Clock::now();
    idle_.push_back(std::move(p));
  }
  freed_.notify_all();
}

void CommandPool::retire_locked(std::unique_ptr<PoolProcess> p, RecycleReason reason) {
  ++counters_.recycles[int(reason)];
  // EOF asks it to end; SIGTERM makes sure; SIGKILL after the grace (reap_stopping).
  p->proc().close_stdin();
  p->proc().signal_group(SIGTERM);
  stopping_.push_back({std::move(p), Clock::now() + milliseconds(spec_.pool.stop_grace_ms)});
}

void CommandPool::reap_stopping() {
  std::vector<std::unique_ptr<PoolProcess>> done;
  {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    for (auto it = stopping_.begin(); it != stopping_.end();) {
      if (it->p->proc().wait_exit(milliseconds(0)) || now >= it->kill_at) {
        done.push_back(std::move(it->p));
        it = stopping_.erase(it);
      } else {
        ++it;
      }
    }
    reaping_ += static_cast<int>(done.size());
  }
  // Destroying each one kills what is left of its group and reaps it; until then it still
  // counts as stopping.
  const int n = static_cast<int>(done.size());
  if (n == 0) return;
  done.clear();
  std::lock_guard lock(mu_);
  reaping_ -= n;
  freed_.notify_all();
}

void CommandPool::maintain() {
  reap_stopping();
  std::vector<std::pair<std::unique_ptr<PoolProcess>, RecycleReason>> doomed;
  std::vector<std::unique_ptr<PoolProcess>> to_check;
  {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    const auto interval = milliseconds(spec_.pool.health_interval_ms);
    for (auto it = idle_.begin(); it != idle_.end();) {
      if (std::optional<RecycleReason> gone = (*it)->check_idle()) {
        ++counters_.recycles[int(*gone)];
        doomed.emplace_back(std::move(*it), *gone);
        it = idle_.erase(it);
      } else if (now - (*it)->idle_since >= interval) {
        to_check.push_back(std::move(*it));
        it = idle_.erase(it);
      } else {
        ++it;
      }
    }
    checking_ += static_cast<int>(to_check.size());
    if (!doomed.empty()) freed_.notify_all();
  }
  for (auto& [p, reason] : doomed) end_idle(std::move(p), reason, "");
  for (auto& p : to_check) {
    std::string why;
    std::optional<RecycleReason> gone = p->ping(milliseconds(spec_.pool.health_timeout_ms), &why);
    std::unique_ptr<PoolProcess> dead;
    {
      std::lock_guard lock(mu_);
      --checking_;
      if (gone) {
        ++counters_.recycles[int(*gone)];
        dead = std::move(p);
      } else if (stopped_) {
        ++counters_.pongs;
        retire_locked(std::move(p), RecycleReason::kStopped);
      } else {
        ++counters_.pongs;
        p->idle_since = Clock::now();
        idle_.push_back(std::move(p));
      }
      freed_.notify_all();
    }
    if (dead != nullptr) end_idle(std::move(dead), *gone, why);
  }
}

void CommandPool::stop(bool wait) {
  std::vector<Stopping> ending;
  {
    std::unique_lock lock(mu_);
    stopped_ = true;
    for (auto& p : idle_) retire_locked(std::move(p), RecycleReason::kStopped);
    idle_.clear();
    freed_.notify_all();
    if (!wait) return;
    // A process being started or pinged comes back within its deadline and is retired then.
    const auto bound = Clock::now() + milliseconds(spec_.pool.ready_timeout_ms) +
                       milliseconds(spec_.pool.health_timeout_ms);
    freed_.wait_until(lock, bound, [this] { return starting_ == 0 && checking_ == 0; });
    ending.swap(stopping_);
    reaping_ += static_cast<int>(ending.size());
  }
  // The deadlines are about the same, so waiting for each in turn takes about one grace.
  for (Stopping& s : ending) {
    const auto left = std::chrono::ceil<milliseconds>(s.kill_at - Clock::now());
    s.p->proc().wait_exit(std::max(left, milliseconds(0)));
    s.p.reset();
  }
  std::unique_lock lock(mu_);
  reaping_ -= static_cast<int>(ending.size());
  // Ones the pool thread took to reap meanwhile: a moment (they have exited or been killed).
  freed_.wait_for(lock, kReapWait, [this] { return reaping_ == 0; });
}

bool CommandPool::stopped() const {
  std::lock_guard lock(mu_);
  return stopped_;
}

bool CommandPool::empty() const {
  std::lock_guard lock(mu_);
  return idle_.empty() && stopping_.empty() && busy_pids_.empty() && starting_ == 0 &&
         checking_ == 0 && reaping_ == 0;
}

PoolStateCounts CommandPool::counts() const {
  std::lock_guard lock(mu_);
  return {.starting = starting_,
          .idle = static_cast<int>(idle_.size()),
          .busy = static_cast<int>(busy_pids_.size()),
          .checking = checking_,
          .stopping = static_cast<int>(stopping_.size()) + reaping_};
}

std::vector<pid_t> CommandPool::pids() const {
  std::lock_guard lock(mu_);
  std::vector<pid_t> out = busy_pids_;
  for (const auto& p : idle_) out.push_back(p->pid());
  return out;
}

}  // namespace docpipe
