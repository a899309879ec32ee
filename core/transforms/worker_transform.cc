// The DocumentTransform of an isolated transform in the daemon: streams the document to a worker
// from the pool as it comes, then reads the answer back in pieces of at most
// kMaxCallOutputBytes. Every wait polls the document's check_interrupted, so a cancellation or
// document_timeout_ms kills the worker within one poll interval.

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/transforms/worker_pool.h"
#include "core/transforms/worker_protocol.h"

namespace docpipe {
namespace {

using std::chrono::milliseconds;
namespace wp = worker_protocol;

// check_interrupted() is asked at least this often while a worker works.
constexpr milliseconds kPollInterval{50};
// The document goes to the worker in frames of at most this size.
constexpr size_t kFrameBytes = 256u << 10;

struct WorkerConfig {
  WorkerKey key;
  std::string params;             // the job's parameters, as JSON text
  std::string concurrency_group;  // "" or WorkerOptions::concurrency_group
};

// Process-wide slots per concurrency group. A document takes one before it takes a worker and
// gives it back once its answer is read (or it failed), so a limit of N means at most N documents
// of the group computing at once, whatever the transformer threads.
class ConcurrencyGroups {
 public:
  static ConcurrencyGroups& instance() {
    static ConcurrencyGroups* groups = new ConcurrencyGroups;  // never destroyed: worker threads
    return *groups;                                            // may outlive static destructors
  }

  void set_limit(const std::string& group, int limit) {
    std::lock_guard lock(mu_);
    groups_[group].limit = std::max(limit, 0);  // 0: not limited
    cv_.notify_all();
  }

  int in_use(const std::string& group) {
    std::lock_guard lock(mu_);
    auto it = groups_.find(group);
    return it == groups_.end() ? 0 : it->second.in_use;
  }

  // Waits for a slot of `group`, asking `interrupted` every kPollInterval.
  Status acquire(const std::string& group, const std::function<Status()>& interrupted) {
    std::unique_lock lock(mu_);
    Group& g = groups_[group];
    while (g.limit > 0 && g.in_use >= g.limit) {
      if (interrupted) {
        lock.unlock();
        Status st = interrupted();
        lock.lock();
        if (!st) return st;
      }
      cv_.wait_for(lock, kPollInterval);
    }
    ++g.in_use;
    return ok();
  }

  void release(const std::string& group) {
    std::lock_guard lock(mu_);
    --groups_[group].in_use;
    cv_.notify_one();
  }

 private:
  struct Group {
    int limit = 0;  // 0: not limited
    int in_use = 0;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Group> groups_;
};

class WorkerTransform : public DocumentTransform {
 public:
  WorkerTransform(std::shared_ptr<const WorkerConfig> config, const DocumentContext& doc)
      : config_(std::move(config)),
        path_(doc.relative_path),
        name_(doc.name),
        interrupted_(doc.check_interrupted) {}
  ~WorkerTransform() override { release_slot(); }
  WorkerTransform(const WorkerTransform&) = delete;
  WorkerTransform& operator=(const WorkerTransform&) = delete;

  Status update(std::string_view in, std::string&) override {
    Status st = start();
    while (st && !in.empty()) {
      const size_t n = std::min(in.size(), kFrameBytes);
      const wp::Chunk chunk{static_cast<uint32_t>(n)};
      st = send({reinterpret_cast<const char*>(&chunk), sizeof chunk});
      if (st) st = send(in.substr(0, n));
      in.remove_prefix(n);
    }
    return st;
  }

  Status finish(std::string& out) override {
    Status st = start();
    if (st && !answered_) st = await_answer();
    if (!st) return st;
    if (remaining_ == 0) return ok();
    const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, kMaxCallOutputBytes));
    const size_t at = out.size();
    out.resize(at + n);
    st = receive(out.data() + at, n);
    if (!st) {
      out.resize(at);
      return st;
    }
    remaining_ -= n;
    if (remaining_ == 0) give_back();
    return ok();
  }

  bool has_more() const override { return answered_ && remaining_ > 0; }
  std::string metadata() const override { return metadata_; }

 private:
  const std::string& op() const { return config_->key.op; }

  Status start() {
    if (failed_) return *failed_;
    if (worker_ != nullptr || answered_) return ok();
    if (!config_->concurrency_group.empty() && !holds_slot_) {
      Status st = ConcurrencyGroups::instance().acquire(config_->concurrency_group, interrupted_);
      if (!st) return st;
      holds_slot_ = true;
    }
    Result<std::unique_ptr<WorkerProcess>> w = WorkerPool::instance().take(config_->key);
    if (!w) {
      release_slot();
      return w.error();
    }
    worker_ = std::move(w).value();
    nlohmann::json header{
        {"params", nlohmann::json::parse(config_->params)}, {"path", path_}, {"name", name_}};
    const std::string text = header.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    const wp::Request request{wp::kMagic, static_cast<uint32_t>(text.size())};
    Status st = send({reinterpret_cast<const char*>(&request), sizeof request});
    if (st) st = send(text);
    return st;
  }

  Status await_answer() {
    const wp::Chunk end{0};
    Status st = send({reinterpret_cast<const char*>(&end), sizeof end});
    wp::Response response;
    if (st) st = receive(reinterpret_cast<char*>(&response), sizeof response);
    if (!st) return st;
    if (response.magic != wp::kMagic) return fail(protocol_error());
    worker_->cpu_usec = response.cpu_usec;
    answered_ = true;
    if (response.metadata_bytes > wp::kMaxMetadataBytes ||
        (response.code != 0 && response.metadata_bytes != 0)) {
      return fail(protocol_error());
    }
    if (response.metadata_bytes > 0) {
      metadata_.resize(response.metadata_bytes);
      st = receive(metadata_.data(), metadata_.size());
      if (!st) return st;
    }
    if (response.code == 0) {
      remaining_ = response.length;
      if (remaining_ == 0) give_back();
      return ok();
    }
    if (response.length > wp::kMaxErrorBytes ||
        response.code > static_cast<uint32_t>(ErrorCode::kInternal) + 1) {
      return fail(protocol_error());
    }
    std::string message(response.length, '\0');
    st = receive(message.data(), message.size());
    if (!st) return st;
    give_back();
    // The transform's own error, as it would have been in-process ("markdown.html: ...").
    return make_error(static_cast<ErrorCode>(response.code - 1), std::move(message));
  }

  // Writes all of `data` to the worker, waiting as needed.
  Status send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t w = ::write(worker_->to_worker(), data.data(), data.size());
      if (w > 0) {
        data.remove_prefix(static_cast<size_t>(w));
        continue;
      }
      if (w < 0 && errno == EPIPE) return fail(died());
      if (w < 0 && errno != EAGAIN && errno != EINTR) {
        return fail(errno_error(op() + ": write to its worker", errno));
      }
      Status st = wait(POLLOUT);
      if (!st) return st;
    }
    return ok();
  }

  // Reads exactly `n` bytes from the worker, waiting as needed.
  Status receive(char* buf, size_t n) {
    while (n > 0) {
      const ssize_t r = ::read(worker_->from_worker(), buf, n);
      if (r > 0) {
        buf += r;
        n -= static_cast<size_t>(r);
        continue;
      }
      if (r == 0) return fail(died());
      if (errno != EAGAIN && errno != EINTR) {
        return fail(errno_error(op() + ": read from its worker", errno));
      }
      Status st = wait(POLLIN);
      if (!st) return st;
    }
    return ok();
  }

  // One poll interval waiting for the pipe, the worker's exit, or an interruption.
  Status wait(short events) {
    if (interrupted_) {
      Status st = interrupted_();
      if (!st) {
        worker_->kill_and_reap();
        worker_.reset();
        Error e = st.error();
        if (e.code == ErrorCode::kTimeout) e.message += "; " + op() + ": worker killed";
        return fail(std::move(e));
      }
    }
    const int fd = events == POLLIN ? worker_->from_worker() : worker_->to_worker();
    pollfd fds[2] = {{fd, events, 0}, {worker_->pidfd(), POLLIN, 0}};
    const nfds_t n = worker_->pidfd() >= 0 ? 2 : 1;
    if (::poll(fds, n, static_cast<int>(kPollInterval.count())) < 0 && errno != EINTR) {
      return fail(errno_error(op() + ": poll", errno));
    }
    // Exited: what it wrote before is still readable, and its death shows as EOF after that.
    if (n == 2 && fds[1].revents != 0 && fds[0].revents == 0) return fail(died());
    return ok();
  }

  // Why the worker is gone (it is reaped here).
  Error died() {
    const int status = worker_->reap(milliseconds(1000));
    return worker_death_error(config_->key, status);
  }

  Error protocol_error() const {
    return make_error(ErrorCode::kInternal, op() + ": its worker answered out of protocol");
  }

  // The answer is read whole: the worker serves the next document.
  void give_back() {
    WorkerPool::instance().give_back(std::move(worker_));
    release_slot();
  }

  void release_slot() {
    if (!holds_slot_) return;
    holds_slot_ = false;
    ConcurrencyGroups::instance().release(config_->concurrency_group);
  }

  // The worker cannot be reused after a failure in the middle of a document.
  Error fail(Error e) {
    if (worker_ != nullptr) worker_->kill_and_reap();
    worker_.reset();
    release_slot();
    failed_ = e;
    return e;
  }

  std::shared_ptr<const WorkerConfig> config_;
  std::string path_;
  std::string name_;
  std::function<Status()> interrupted_;
  std::unique_ptr<WorkerProcess> worker_;  // held from the first call to the end of the answer
  bool answered_ = false;
  uint64_t remaining_ = 0;  // output bytes still to read
  std::optional<Error> failed_;
  bool holds_slot_ = false;  // one of config_->concurrency_group's slots
  std::string metadata_;     // what the worker's transform said about the document
};

class WorkerStep : public TransformStep {
 public:
  explicit WorkerStep(WorkerConfig config)
      : config_(std::make_shared<const WorkerConfig>(std::move(config))) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext& doc) const override {
    return std::make_unique<WorkerTransform>(config_, doc);
  }

 private:
  std::shared_ptr<const WorkerConfig> config_;
};

}  // namespace

std::shared_ptr<const TransformStep> make_worker_step(const std::string& op,
                                                      const nlohmann::json& params,
                                                      const WorkerLimits& limits,
                                                      const WorkerOptions& options) {
  return std::make_shared<WorkerStep>(WorkerConfig{WorkerKey{op, limits, options.variant},
                                                   params.dump(), options.concurrency_group});
}

void set_worker_concurrency(const std::string& group, int limit) {
  ConcurrencyGroups::instance().set_limit(group, limit);
}

int worker_concurrency_in_use(const std::string& group) {
  return ConcurrencyGroups::instance().in_use(group);
}

}  // namespace docpipe
