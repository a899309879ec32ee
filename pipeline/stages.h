#pragma once
// The three stage loops of the pipeline and the state they share (see pipeline.h for the shape).
// Each loop runs on its own std::thread, not the libuv threadpool: transforms are CPU work that
// would starve the loop's file-system requests there (measured: with 4 one-second CPU jobs queued
// on the default 4-thread pool, a uv_fs_stat waited 1,004 ms; on a separate pool, 5 ms).
//
//   reader:      slot -> scheduler.next() -> open/fstat/if_exists -> bytes -> read whole file
//                (read_stage.cc)
//   transformer: chain over the whole buffer, or stream a large file chunk by chunk to its temp
//                file (transform_stage.cc)
//   writer:      temp file -> (fsync) -> rename -> (fsync folder) -> outcome (write_stage.cc)
//
// What they share (settling an item, deadlines, hand-offs) is in stage_common.h.
//
// A document owns one slot and `held_bytes` of the budget from admission until its outcome is
// reported; settling (success, failure, skip, cancel, retry) releases both in one place.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.h"
#include "pipeline/backoff.h"
#include "pipeline/bounded_queue.h"
#include "pipeline/output_file.h"
#include "pipeline/pipeline.h"
#include "pipeline/scheduler.h"
#include "pipeline/semaphore.h"

namespace docpipe {

// One document on its way through the stages. Items are pooled so that their buffers, digest
// context and strings are reused instead of allocated per document.
// Times come from StageShared::clock.
struct WorkItem {
  ScheduledDocument sched;
  std::string output_path;
  Clock::time_point started;
  // document_timeout_ms counts processing time only: time_left shrinks while a stage works on
  // the item, and deadline is set when a stage takes it, so waits in queues never count.
  Clock::duration time_left = Clock::duration::max();
  Clock::time_point stage_started;
  Clock::time_point deadline = Clock::time_point::max();
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  size_t held_bytes = 0;  // charged to the ByteBudget
  int input_fd = -1;      // a large document stays open from the reader to the transformer
  bool streamed = false;  // larger than stream_threshold_bytes: never held whole
  std::string data;       // the whole input; after the transform, the output
  std::string scratch;    // transform output, or a streamed chunk's output
  std::string sha256;
  std::string metadata;  // the chain's metadata() (a JSON object's text), or empty
  OutputFile output;
  // Redo only what changed (pipeline/unchanged_check.h). input_sha256 is taken where the bytes
  // pass anyway: of the whole buffer by the reader, chunk by chunk (input_hash) when streamed;
  // a copy's is its output's.
  std::string input_sha256;
  Sha256 input_hash;
  std::string skip_reason;
  FileStamp input_stat;   // if_exists "unchanged" only
  FileStamp output_stat;  // if_exists "unchanged" only
  // The store's row for the output, while the input is still to be compared with it.
  std::optional<LineageRow> recorded;
};

// A free list of work items, bounded in count and in the buffer capacity each keeps, so the pool
// itself adds at most a few MiB beyond the byte budget.
class WorkItemPool {
 public:
  std::unique_ptr<WorkItem> get();
  void put(std::unique_ptr<WorkItem> item);

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<WorkItem>> free_;
};

struct StageShared {
  StageShared(const PipelineOptions& options, PipelineMetrics* metrics);

  // Metric updates that tolerate a null PipelineMetrics.
  void add_queue_depth(Stage s, double delta);
  void add_in_flight(Stage s, double delta);
  void observe_duration(Stage s, double seconds);

  const PipelineOptions options;
  PipelineMetrics* const metrics;
  const Clock& clock;  // *options.clock
  RetryJitter jitter;
  Scheduler scheduler;
  CountingSemaphore slots;
  ByteBudget budget;
  BoundedQueue<std::unique_ptr<WorkItem>> transform_queue;
  BoundedQueue<std::unique_ptr<WorkItem>> write_queue;
  WorkItemPool pool;
};

// Each returns when its input is exhausted: readers once the scheduler is stopped and drained,
// transformers and writers once their queue is closed and drained.
void run_reader(StageShared& s);
// Runs until the transform queue closes, or until `retire` is set (checked at least every
// 100 ms while idle): the pool shrinks live when the worker count is lowered.
void run_transformer(StageShared& s, const std::atomic<bool>& retire);
void run_writer(StageShared& s);
// Writes, renames and reports a batch of documents as a writer does (write_stage.cc), and
// empties `taken`. `queued`: they came through the write queue (its depth is counted down).
void write_batch(StageShared& s, std::vector<std::unique_ptr<WorkItem>>& taken, bool queued);

}  // namespace docpipe
