#include "pipeline/local_work_queue.h"

namespace docpipe {

LocalWorkQueue::LocalWorkQueue(PipelineOptions options, PipelineMetrics* metrics)
    : pipeline_(std::move(options), metrics) {}

LocalWorkQueue::~LocalWorkQueue() = default;

void LocalWorkQueue::add_job(std::shared_ptr<PipelineJob> job) {
  pipeline_.add_job(std::move(job));
}

bool LocalWorkQueue::cancel_job(const std::string& id) { return pipeline_.cancel_job(id); }

void LocalWorkQueue::stop(std::chrono::milliseconds grace) { pipeline_.stop(grace); }

void LocalWorkQueue::reconfigure(const WorkQueueLimits& limits) {
  pipeline_.reconfigure(limits.workers, limits.max_in_flight_documents, limits.memory_budget_bytes);
}

size_t LocalWorkQueue::documents_in_flight() const { return pipeline_.documents_in_flight(); }

size_t LocalWorkQueue::buffer_bytes_in_use() const { return pipeline_.buffer_bytes_in_use(); }

}  // namespace docpipe
