#pragma once
// The work queue of one process: documents go to this process's Pipeline (pipeline/pipeline.h),
// whose threads call the job back directly. Nothing is acknowledged or redelivered: a crash
// loses only what the job's journal had not recorded, and resume does those documents again.

#include <memory>

#include "pipeline/pipeline.h"
#include "pipeline/work_queue.h"

namespace docpipe {

class LocalWorkQueue final : public WorkQueue {
 public:
  // Starts the pipeline's threads. `metrics` may be null and must outlive the queue.
  LocalWorkQueue(PipelineOptions options, PipelineMetrics* metrics);
  ~LocalWorkQueue() override;  // stops the pipeline if stop() was not called

  void add_job(std::shared_ptr<PipelineJob> job) override;
  bool cancel_job(const std::string& id) override;
  void stop(std::chrono::milliseconds grace) override;
  void reconfigure(const WorkQueueLimits& limits) override;
  size_t documents_in_flight() const override;
  size_t buffer_bytes_in_use() const override;

 private:
  Pipeline pipeline_;
};

}  // namespace docpipe
