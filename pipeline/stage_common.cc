#include "pipeline/stage_common.h"

#include <unistd.h>

#include <algorithm>

namespace docpipe {

namespace {

// Pool bounds: 64 items x 2 buffers x 64 KiB keeps at most 8 MiB outside the byte budget.
constexpr size_t kPoolItems = 64;
constexpr size_t kPooledBufferCapacity = 64u << 10;

}  // namespace

// The stage hands the item on: what it used is gone from the document's time.
void end_stage(const Clock& clock, WorkItem& item) {
  if (item.time_left == Clock::duration::max()) return;
  item.time_left -= clock.now() - item.stage_started;
  item.deadline = Clock::time_point::max();  // not running while it waits in a queue
}

void trim(std::string& buffer) {
  if (buffer.capacity() > kPooledBufferCapacity) {
    std::string().swap(buffer);
  } else {
    buffer.clear();
  }
}

StageClock::StageClock(StageShared& s, Stage stage) : s_(s), stage_(stage), start_(s.clock.now()) {
  s_.add_in_flight(stage_, 1);
}

StageClock::~StageClock() {
  pause();
  s_.observe_duration(stage_, std::chrono::duration<double>(elapsed_).count());
  s_.add_in_flight(stage_, -1);
}

void StageClock::pause() {
  if (!running_) return;
  elapsed_ += s_.clock.now() - start_;
  running_ = false;
}

void StageClock::resume() {
  if (running_) return;
  start_ = s_.clock.now();
  running_ = true;
}

namespace {

struct Reported {
  std::shared_ptr<ScheduledJob> job;
  DocumentOutcome outcome;
};

// Releases everything the item holds; the outcome to report, or nullopt when the item went back
// to the scheduler for another attempt.
std::optional<Reported> release(StageShared& s, std::unique_ptr<WorkItem> item, DocumentState state,
                                const Error* error) {
  if (item->input_fd >= 0) {
    ::close(item->input_fd);
    item->input_fd = -1;
  }
  item->output.discard();
  s.budget.release(item->held_bytes);
  item->held_bytes = 0;
  s.slots.release();

  const JobSpec& spec = item->sched.job->spec();
  // A command's breaker refused it: it waits for the breaker, charged no attempt.
  if (state == DocumentState::kFailed && error != nullptr &&
      error->code == ErrorCode::kUnavailable) {
    if (s.scheduler.wait_for_command(item->sched)) {
      s.pool.put(std::move(item));
      return std::nullopt;
    }
    state = DocumentState::kCancelled;  // cancelled or stopping meanwhile: it never ran
    error = nullptr;
  }
  // A transient failure with attempts left was not the document's last word: retried, or, when
  // its job was cancelled or the pipeline is stopping (retry refuses), cancelled, not failed,
  // whether the cancel came before this point or after.
  if (state == DocumentState::kFailed && error != nullptr && is_transient(*error) &&
      item->sched.attempt < spec.limits.max_attempts) {
    if (s.scheduler.retry(item->sched, s.jitter.delay(item->sched.attempt))) {
      s.pool.put(std::move(item));
      return std::nullopt;
    }
    // Cancelled or stopping meanwhile: the document was not done, so it is not a failure.
    state = DocumentState::kCancelled;
    error = nullptr;
  }

  DocumentOutcome outcome;
  outcome.doc = std::move(item->sched.doc);
  outcome.output_path = std::move(item->output_path);
  outcome.state = state;
  outcome.bytes_in = item->bytes_in;
  if (state == DocumentState::kSucceeded) {
    outcome.bytes_out = item->bytes_out;
    // A copy's input is its output: its hash is the output's, taken as it was written.
    if (item->input_sha256.empty() && spec.chain->empty()) item->input_sha256 = item->sha256;
    outcome.sha256 = std::move(item->sha256);
    outcome.metadata = std::move(item->metadata);
    outcome.output_stat = item->output_stat;
  }
  if (state == DocumentState::kSucceeded || state == DocumentState::kSkipped) {
    outcome.input_sha256 = std::move(item->input_sha256);
    outcome.input_stat = item->input_stat;
  }
  outcome.skip_reason = std::move(item->skip_reason);
  outcome.attempts = item->sched.attempt;
  outcome.duration_seconds = std::chrono::duration<double>(s.clock.now() - item->started).count();
  if (state == DocumentState::kFailed && error != nullptr) {
    outcome.error = error->message;
    outcome.transient = is_transient(*error);
  }
  std::shared_ptr<ScheduledJob> job = std::move(item->sched.job);
  s.pool.put(std::move(item));
  return Reported{std::move(job), std::move(outcome)};
}

}  // namespace

void settle(StageShared& s, std::unique_ptr<WorkItem> item, DocumentState state,
            const Error* error) {
  std::optional<Reported> r = release(s, std::move(item), state, error);
  if (r) s.scheduler.complete(r->job, std::move(r->outcome));
}

void settle_all(StageShared& s, std::vector<Settling>& items) {
  std::shared_ptr<ScheduledJob> job;
  std::vector<DocumentOutcome> outcomes;
  outcomes.reserve(items.size());
  auto flush = [&] {
    if (!outcomes.empty()) s.scheduler.complete_all(job, std::move(outcomes));
    outcomes.clear();  // valid but unspecified once moved from: empty from here on
  };
  for (Settling& it : items) {
    std::optional<Reported> r;
    if (it.result) {
      r = release(s, std::move(it.item), *it.result, nullptr);
    } else if (it.result.error().code == ErrorCode::kCancelled) {
      r = release(s, std::move(it.item), DocumentState::kCancelled, nullptr);
    } else {
      r = release(s, std::move(it.item), DocumentState::kFailed, &it.result.error());
    }
    if (!r) continue;
    if (r->job != job) {
      flush();
      job = std::move(r->job);
    }
    outcomes.push_back(std::move(r->outcome));
  }
  flush();
  items.clear();
}

void settle_error(StageShared& s, std::unique_ptr<WorkItem> item, const Error& error) {
  if (error.code == ErrorCode::kCancelled) {
    settle(s, std::move(item), DocumentState::kCancelled, nullptr);
  } else {
    settle(s, std::move(item), DocumentState::kFailed, &error);
  }
}

std::optional<Error> interrupted(const StageShared& s, const WorkItem& item) {
  if (item.sched.job->cancelled()) return make_error(ErrorCode::kCancelled, "cancelled");
  if (s.clock.now() > item.deadline) {
    return make_error(ErrorCode::kTimeout,
                      item.sched.doc.input_path + ": timed out after " +
                          std::to_string(item.sched.job->spec().limits.document_timeout_ms) +
                          " ms (document_timeout_ms)");
  }
  return std::nullopt;
}

void begin_stage(const Clock& clock, WorkItem& item) {
  item.stage_started = clock.now();
  item.deadline = item.time_left == Clock::duration::max() ? Clock::time_point::max()
                                                           : item.stage_started + item.time_left;
}

void made_progress(const Clock& clock, WorkItem& item) {
  if (item.time_left == Clock::duration::max()) return;
  const Clock::duration full =
      std::chrono::milliseconds(item.sched.job->spec().limits.document_timeout_ms);
  item.stage_started = clock.now();
  item.time_left = full;
  item.deadline = item.stage_started + full;
}

void forward(StageShared& s, std::unique_ptr<WorkItem> item, Stage stage) {
  end_stage(s.clock, *item);
  auto& queue = stage == Stage::kTransform ? s.transform_queue : s.write_queue;
  s.add_queue_depth(stage, 1);
  if (!queue.push(item)) {
    s.add_queue_depth(stage, -1);
    settle(s, std::move(item), DocumentState::kCancelled, nullptr);
  }
}

OutputTarget output_target(const WorkItem& item) {
  const DocumentRef& doc = item.sched.doc;
  if (!doc.output) {
    std::string_view rel = item.output_path;
    while (!rel.empty() && rel.front() == '/') rel.remove_prefix(1);
    return OutputTarget{nullptr, rel, nullptr};
  }
  // output_path is output.dir/RELATIVE_PATH+suffix (output_path_for): the part below the folder.
  const JobSpec& spec = item.sched.job->spec();
  std::string_view rel = item.output_path;
  const std::string& dir = spec.output.dir;
  rel.remove_prefix(std::min(rel.size(), dir.size() + (dir.ends_with('/') ? 0 : 1)));
  return OutputTarget{doc.output.get(), rel, restricted_submitter(spec)};
}

Status create_output(const StageShared& s, WorkItem& item, SharedFolders* shared) {
  OutputTarget target = output_target(item);
  target.shared = shared;
  target.durable = s.options.fsync;
  return item.output.create(item.output_path, target);
}

// ---- shared state -------------------------------------------------------------------------------

std::unique_ptr<WorkItem> WorkItemPool::get() {
  {
    std::lock_guard lock(mu_);
    if (!free_.empty()) {
      std::unique_ptr<WorkItem> item = std::move(free_.back());
      free_.pop_back();
      return item;
    }
  }
  return std::make_unique<WorkItem>();
}

void WorkItemPool::put(std::unique_ptr<WorkItem> item) {
  item->sched = ScheduledDocument{};
  item->output_path.clear();
  item->deadline = Clock::time_point::max();
  item->time_left = Clock::duration::max();
  item->bytes_in = item->bytes_out = 0;
  item->held_bytes = 0;
  item->streamed = false;
  item->sha256.clear();
  item->metadata.clear();
  item->input_sha256.clear();
  item->skip_reason.clear();
  item->input_stat = {};
  item->output_stat = {};
  item->recorded.reset();
  item->output.discard();
  trim(item->data);
  trim(item->scratch);
  std::lock_guard lock(mu_);
  if (free_.size() < kPoolItems) free_.push_back(std::move(item));
}

StageShared::StageShared(const PipelineOptions& opts, PipelineMetrics* m)
    : options(opts),
      metrics(m),
      clock(*opts.clock),
      jitter(opts.jitter_seed ? *opts.jitter_seed : RetryJitter::random_seed()),
      scheduler(clock, opts.walk_ahead, opts.breakers.get()),
      slots(opts.max_in_flight_documents),
      budget(opts.memory_budget_bytes, m != nullptr ? &m->buffer_bytes_in_use() : nullptr),
      transform_queue(opts.queue_capacity),
      write_queue(opts.queue_capacity) {
  if (metrics != nullptr) {
    metrics->memory_budget_bytes().Set(static_cast<double>(opts.memory_budget_bytes));
  }
}

void StageShared::add_queue_depth(Stage s, double delta) {
  if (metrics != nullptr) metrics->queue_depth(s).Increment(delta);
}

void StageShared::add_in_flight(Stage s, double delta) {
  if (metrics != nullptr) metrics->in_flight(s).Increment(delta);
}

void StageShared::observe_duration(Stage s, double seconds) {
  if (metrics != nullptr) metrics->stage_duration(s).Observe(seconds);
}

}  // namespace docpipe
