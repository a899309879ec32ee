#include "pipeline/pipeline.h"

#include <pthread.h>

#include <algorithm>
#include <mutex>
#include <thread>
#include <vector>

#include "pipeline/stages.h"

namespace docpipe {

const char* document_state_name(DocumentState s) {
  switch (s) {
    case DocumentState::kSucceeded:
      return "succeeded";
    case DocumentState::kFailed:
      return "failed";
    case DocumentState::kSkipped:
      return "skipped";
    case DocumentState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

namespace {

PipelineOptions normalized(PipelineOptions o) {
  o.readers = std::max(o.readers, 1);
  o.workers = std::max(o.workers, 1);
  o.writers = std::max(o.writers, 1);
  o.max_in_flight_documents = std::max<size_t>(o.max_in_flight_documents, 1);
  o.queue_capacity = std::max<size_t>(o.queue_capacity, 1);
  o.chunk_bytes = std::max<size_t>(o.chunk_bytes, 1);
  if (o.clock == nullptr) o.clock = &system_clock();
  return o;
}

}  // namespace

class Pipeline::Impl {
 public:
  Impl(const PipelineOptions& options, PipelineMetrics* metrics)
      : shared_(normalized(options), metrics) {
    try {
      start(readers_, shared_.options.readers, "dp-read", run_reader);
      set_workers(shared_.options.workers);
      start(writers_, shared_.options.writers, "dp-write", run_writer);
    } catch (...) {
      // Join the threads already started, or their destructors would terminate().
      stop(std::chrono::milliseconds::max());
      throw;
    }
  }

  ~Impl() { stop(std::chrono::milliseconds::max()); }

  void add_job(std::shared_ptr<PipelineJob> job) { shared_.scheduler.add_job(std::move(job)); }
  bool cancel_job(const std::string& id) { return shared_.scheduler.cancel(id); }

  // Drains stage by stage: once no reader can produce, the transform queue is closed; once no
  // transformer can produce, the write queue is. Every admitted document thus reaches an outcome.
  void stop(std::chrono::milliseconds grace) {
    std::lock_guard lock(stop_mu_);
    if (stopped_) return;
    stopped_ = true;
    shared_.scheduler.stop();
    if (grace != std::chrono::milliseconds::max()) {
      // By the pipeline's clock; woken by the last completion, not polled.
      const Clock::time_point now = shared_.clock.now();
      // In milliseconds: a huge grace would overflow in the clock's nanoseconds.
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::time_point::max() - now);
      const Clock::time_point deadline = grace >= left ? Clock::time_point::max() : now + grace;
      if (!shared_.scheduler.wait_drained(deadline)) shared_.scheduler.interrupt();
    }
    join(readers_);
    shared_.transform_queue.close();
    for (auto& w : workers_) w.thread.join();
    workers_.clear();
    shared_.write_queue.close();
    join(writers_);
  }

  // Grows or shrinks the transformer pool. A retired thread finishes its document, then exits
  // (within ~100 ms when idle); it is joined at stop().
  void set_workers(int count) {
    std::lock_guard lock(workers_mu_);
    int live = 0;
    for (auto& w : workers_) {
      if (w.retire->load()) continue;
      if (live >= count) {
        w.retire->store(true);
      } else {
        ++live;
      }
    }
    for (; live < count; ++live) {
      auto retire = std::make_shared<std::atomic<bool>>(false);
      std::thread t([this, retire] { run_transformer(shared_, *retire); });
      std::string name = "dp-transform-" + std::to_string(next_worker_++);
      pthread_setname_np(t.native_handle(), name.substr(0, 15).c_str());
      workers_.push_back(Worker{std::move(t), std::move(retire)});
    }
  }

  void set_limits(size_t max_in_flight_documents, size_t memory_budget_bytes) {
    shared_.slots.set_capacity(std::max<size_t>(max_in_flight_documents, 1));
    shared_.budget.set_budget(memory_budget_bytes);
    if (shared_.metrics != nullptr) {
      shared_.metrics->memory_budget_bytes().Set(static_cast<double>(memory_budget_bytes));
    }
  }

  size_t documents_in_flight() const { return shared_.scheduler.documents_in_flight(); }
  size_t buffer_bytes_in_use() const { return shared_.budget.in_use(); }
  size_t buffer_bytes_peak() const { return shared_.budget.peak(); }

 private:
  void start(std::vector<std::thread>& threads, int count, const char* name,
             void (*loop)(StageShared&)) {
    for (int i = 0; i < count; ++i) {
      threads.emplace_back(loop, std::ref(shared_));
      // Names show in top/perf/gdb; at most 15 characters.
      std::string thread_name = std::string(name) + "-" + std::to_string(i);
      pthread_setname_np(threads.back().native_handle(), thread_name.substr(0, 15).c_str());
    }
  }

  static void join(std::vector<std::thread>& threads) {
    for (auto& t : threads) t.join();
    threads.clear();
  }

  StageShared shared_;
  std::vector<std::thread> readers_;
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> retire;
  };
  std::mutex workers_mu_;
  std::vector<Worker> workers_;
  int next_worker_ = 0;
  std::vector<std::thread> writers_;
  std::mutex stop_mu_;
  bool stopped_ = false;
};

Pipeline::Pipeline(PipelineOptions options, PipelineMetrics* metrics)
    : impl_(std::make_unique<Impl>(options, metrics)) {}

Pipeline::~Pipeline() { stop(); }

void Pipeline::add_job(std::shared_ptr<PipelineJob> job) { impl_->add_job(std::move(job)); }

bool Pipeline::cancel_job(const std::string& id) { return impl_->cancel_job(id); }

void Pipeline::reconfigure(int workers, size_t max_in_flight_documents,
                           size_t memory_budget_bytes) {
  impl_->set_workers(std::max(workers, 1));
  impl_->set_limits(max_in_flight_documents, memory_budget_bytes);
}

void Pipeline::stop(std::chrono::milliseconds grace) { impl_->stop(grace); }

size_t Pipeline::documents_in_flight() const { return impl_->documents_in_flight(); }

size_t Pipeline::buffer_bytes_in_use() const { return impl_->buffer_bytes_in_use(); }

size_t Pipeline::buffer_bytes_peak() const { return impl_->buffer_bytes_peak(); }

}  // namespace docpipe
