#pragma once
// The bounded document pipeline:
//
//   reader threads --bounded queue--> transformer threads --bounded queue--> writer threads
//
// Admission is bounded twice: a counting semaphore caps the documents in flight
// (max_in_flight_documents) and a byte semaphore caps document buffer bytes (memory_budget_bytes).
// A full queue blocks the stage before it, back to the readers, so memory stays bounded whatever
// the batch size. Readers pick documents fairly across jobs: highest priority first, round-robin
// among jobs of equal priority. Documents larger than stream_threshold_bytes are not held whole:
// a transformer streams them from input to temp file in chunk_bytes pieces.
//
// Outputs are written to a file in the target folder that has no name until it is complete
// (OutputFile): without fsync an O_TMPFILE file linked into place, with fsync a named temp file
// (".NAME.docpipe-tmp.XXXXXX") fsynced and renamed. if_exists replace replaces what is there;
// skip and fail never clobber a file that appeared meanwhile (a link never replaces; renameat2
// with RENAME_NOREPLACE).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/clock.h"
#include "core/command_breaker.h"
#include "pipeline/pipeline_job.h"
#include "pipeline/pipeline_metrics.h"

namespace docpipe {

struct PipelineOptions {
  int readers = 2;
  int workers = 2;  // transformer threads
  int writers = 2;
  size_t max_in_flight_documents = 256;
  size_t memory_budget_bytes = 256u << 20;
  size_t queue_capacity = 64;  // per queue between stages
  size_t stream_threshold_bytes = 8u << 20;
  size_t chunk_bytes = 1u << 20;
  bool fsync = true;  // fsync each output file and its folder before/after the rename
  // Documents a reader takes from a job's walk at once (Scheduler::kWalkAhead); 1 walks one
  // document per pick, which tests of exact pick orders use.
  size_t walk_ahead = 16;
  // What the pipeline reads time from: document start and stage durations, document_timeout_ms,
  // retry due times and stop()'s grace. Tests pass a FakeClock. Must outlive the pipeline.
  const Clock* clock = &system_clock();
  // Seeds the retry jitter (RetryJitter); unset: drawn from std::random_device once.
  std::optional<uint64_t> jitter_seed;
  // The circuit breakers of external commands (core/command_breaker.h): transforms ask them
  // before running a command, and the scheduler holds back the documents of jobs whose command's
  // breaker is open. Null: none (every command always runs).
  std::shared_ptr<CommandBreakers> breakers;
};

class Pipeline {
 public:
  // Starts the threads. `metrics` may be null (no metrics) and must outlive the pipeline.
  Pipeline(PipelineOptions options, PipelineMetrics* metrics);
  ~Pipeline();  // stop() if not stopped
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Adds a job; its documents start flowing at once, shared fairly with the running jobs.
  // A document failing with ErrorCode::kIo is retried after 100 ms, 200 ms, ... up to the job's
  // limits.max_attempts; one over limits.document_timeout_ms fails with kTimeout (no retry).
  void add_job(std::shared_ptr<PipelineJob> job);

  // Takes no more documents from the job; documents in flight finish: the step each is in
  // completes and the rest of its way is cut short as kCancelled (at the next stage or streamed
  // chunk, so a large document does not hold the cancel up); then job_finished(true).
  // Returns false if the job is not in the pipeline.
  bool cancel_job(const std::string& id);

  // Stops taking documents, lets in-flight documents finish for up to `grace` (then cuts them
  // short: they complete as kCancelled), joins every thread. Jobs still in the pipeline are
  // dropped without job_finished(). Idempotent.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds::max());

  // Applies a reloaded config live: the transformer pool grows or shrinks (a retired thread
  // finishes its document first), and the admission bounds change for the next admissions.
  void reconfigure(int workers, size_t max_in_flight_documents, size_t memory_budget_bytes);

  // Documents admitted and not yet finished; bytes of buffers held (for status and tests).
  size_t documents_in_flight() const;
  size_t buffer_bytes_in_use() const;
  // The highest buffer_bytes_in_use() so far (tests of the memory bound).
  size_t buffer_bytes_peak() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace docpipe
