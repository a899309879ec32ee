#include "pipeline/stages.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <optional>
#include <random>

#include "core/path_util.h"
#include "pipeline/backoff.h"

namespace docpipe {

namespace {

using Clock = std::chrono::steady_clock;

// Pool bounds: 64 items x 2 buffers x 64 KiB keeps at most 8 MiB outside the byte budget.
constexpr size_t kPoolItems = 64;
constexpr size_t kPooledBufferCapacity = 64u << 10;

void trim(std::string& buffer) {
  if (buffer.capacity() > kPooledBufferCapacity) {
    std::string().swap(buffer);
  } else {
    buffer.clear();
  }
}

// Times one stage's work on an item and counts it in docpipe_stage_in_flight meanwhile. Waits
// for budget are paused out, so the histogram shows the cost of the work, not back-pressure.
class StageClock {
 public:
  StageClock(StageShared& s, Stage stage) : s_(s), stage_(stage), start_(Clock::now()) {
    s_.add_in_flight(stage_, 1);
  }
  ~StageClock() {
    pause();
    s_.observe_duration(stage_, std::chrono::duration<double>(elapsed_).count());
    s_.add_in_flight(stage_, -1);
  }
  StageClock(const StageClock&) = delete;
  StageClock& operator=(const StageClock&) = delete;

  void pause() {
    if (!running_) return;
    elapsed_ += Clock::now() - start_;
    running_ = false;
  }
  void resume() {
    if (running_) return;
    start_ = Clock::now();
    running_ = true;
  }

 private:
  StageShared& s_;
  const Stage stage_;
  Clock::time_point start_;
  Clock::duration elapsed_{};
  bool running_ = true;
};

// Releases everything the item holds, then reports its outcome, or hands it back to the
// scheduler for another attempt when the failure is transient and attempts remain.
void settle(StageShared& s, std::unique_ptr<WorkItem> item, DocumentState state,
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
  if (state == DocumentState::kFailed && error != nullptr && is_transient(*error) &&
      item->sched.attempt < spec.limits.max_attempts && !item->sched.job->cancelled()) {
    if (s.scheduler.retry(item->sched, random_backoff_delay(item->sched.attempt))) {
      s.pool.put(std::move(item));
      return;
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
    outcome.sha256 = std::move(item->sha256);
  }
  outcome.attempts = item->sched.attempt;
  outcome.duration_seconds = std::chrono::duration<double>(Clock::now() - item->started).count();
  if (state == DocumentState::kFailed && error != nullptr) outcome.error = error->message;
  std::shared_ptr<ScheduledJob> job = std::move(item->sched.job);
  s.pool.put(std::move(item));
  s.scheduler.complete(job, std::move(outcome));
}

void settle_error(StageShared& s, std::unique_ptr<WorkItem> item, const Error& error) {
  if (error.code == ErrorCode::kCancelled) {
    settle(s, std::move(item), DocumentState::kCancelled, nullptr);
  } else {
    settle(s, std::move(item), DocumentState::kFailed, &error);
  }
}

// Checked at every stage boundary and between streamed chunks: cancel and timeouts take effect
// within one chunk or one whole-document step, never after the rest of the document.
std::optional<Error> interrupted(const WorkItem& item) {
  if (item.sched.job->cancelled()) return make_error(ErrorCode::kCancelled, "cancelled");
  if (Clock::now() > item.deadline) {
    return make_error(ErrorCode::kTimeout,
                      item.sched.doc.input_path + ": timed out after " +
                          std::to_string(item.sched.job->spec().limits.document_timeout_ms) +
                          " ms (document_timeout_ms)");
  }
  return std::nullopt;
}

// Transform errors name the document; the transform's message names itself ("gzip: ...").
// A cancel or timeout seen through check_interrupted already names the document.
Error transform_error(const WorkItem& item, const Error& e) {
  const std::string& input = item.sched.doc.input_path;
  if (e.message.starts_with(input + ": ")) return e;
  return Error{e.code, input + ": " + e.message, e.sys_errno};
}

// A stage takes the item: its remaining processing time starts running.
void begin_stage(WorkItem& item) {
  item.stage_started = Clock::now();
  item.deadline = item.time_left == Clock::duration::max() ? Clock::time_point::max()
                                                           : item.stage_started + item.time_left;
}

// The stage hands it on: what it used is gone from the document's time.
void end_stage(WorkItem& item) {
  if (item.time_left == Clock::duration::max()) return;
  item.time_left -= Clock::now() - item.stage_started;
  item.deadline = Clock::time_point::max();  // not running while it waits in a queue
}

// Hands the item to the next stage; a closed queue (stopping) completes it as cancelled.
void forward(StageShared& s, std::unique_ptr<WorkItem> item, Stage stage) {
  end_stage(*item);
  auto& queue = stage == Stage::kTransform ? s.transform_queue : s.write_queue;
  s.add_queue_depth(stage, 1);
  if (!queue.push(item)) {
    s.add_queue_depth(stage, -1);
    settle(s, std::move(item), DocumentState::kCancelled, nullptr);
  }
}

// Where the item's output goes: beneath the job's open output folder, never by its path string.
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

Status create_output(WorkItem& item) {
  return item.output.create(item.output_path, output_target(item));
}

// ---- read -------------------------------------------------------------------------------------

Status read_whole(WorkItem& item, size_t expected) {
  std::string& buf = item.data;
  buf.resize(expected + 1);  // one spare byte tells "at EOF" from "the file grew"
  size_t got = 0;
  for (;;) {
    if (got == buf.size()) buf.resize(buf.size() * 2);
    ssize_t n = ::read(item.input_fd, buf.data() + got, buf.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("read " + item.sched.doc.input_path, errno);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
    // Exactly the size fstat gave, though more was asked for: at EOF, without another read()
    // to see 0. (Any other short read, as FUSE may give, goes on reading.)
    if (got == expected) break;
  }
  buf.resize(got);
  item.bytes_in = got;
  return ok();
}

// Returns the item to hand on, or null when it was settled here (failed, skipped, cancelled).
std::unique_ptr<WorkItem> read_document(StageShared& s, std::unique_ptr<WorkItem> item) {
  const JobSpec& spec = item->sched.job->spec();
  const std::string& input = item->sched.doc.input_path;
  item->time_left =
      spec.limits.document_timeout_ms > 0
          ? Clock::duration(std::chrono::milliseconds(spec.limits.document_timeout_ms))
          : Clock::duration::max();
  begin_stage(*item);
  StageClock clock(s, Stage::kRead);

  // An output that is to be kept is checked first: a rerun over outputs that mostly exist then
  // costs one stat per document, not an open of its input as well.
  if (spec.output.if_exists != IfExists::kReplace) {
    if (OutputFile::exists(output_target(*item))) {
      if (spec.output.if_exists == IfExists::kSkip) {
        settle(s, std::move(item), DocumentState::kSkipped, nullptr);
      } else {
        Error e = make_error(ErrorCode::kExists,
                             "output exists: " + item->output_path + " (if_exists: fail)");
        settle_error(s, std::move(item), e);
      }
      return nullptr;
    }
  }

  // Beneath the job's open folder; O_NONBLOCK: a FIFO cannot hang the reader (refused below).
  Result<OpenedInput> opened = open_document(item->sched.doc, restricted_submitter(spec));
  if (!opened) {
    settle_error(s, std::move(item), opened.error());
    return nullptr;
  }
  item->input_fd = opened->fd;
  const struct stat& st = opened->st;
  if (!S_ISREG(st.st_mode)) {
    Error e = make_error(ErrorCode::kInvalidArgument, "read " + input + ": not a regular file");
    settle_error(s, std::move(item), e);
    return nullptr;
  }

  const size_t size = static_cast<size_t>(st.st_size);
  item->streamed = size > s.options.stream_threshold_bytes;
  // A streamed document holds one chunk at a time, whatever its size, unless a whole-document
  // transform gathers it: then the budget counts all of it.
  const bool chunked = item->streamed && !item->sched.job->spec().holds_whole_documents;
  const size_t charge = chunked ? s.options.chunk_bytes : size;
  clock.pause();
  const bool admitted = s.budget.acquire(charge);
  clock.resume();
  if (admitted) item->held_bytes = charge;
  if (!admitted || item->sched.job->cancelled()) {
    settle(s, std::move(item), DocumentState::kCancelled, nullptr);
    return nullptr;
  }

  if (!item->streamed) {
    Status read = read_whole(*item, size);
    ::close(item->input_fd);
    item->input_fd = -1;
    if (!read) {
      settle_error(s, std::move(item), read.error());
      return nullptr;
    }
    // The file may have changed size since fstat: charge what is really held.
    s.budget.resize(item->held_bytes, item->data.size());
    item->held_bytes = item->data.size();
  }
  return item;
}

// ---- transform --------------------------------------------------------------------------------

// The context a transform sees; check_interrupted reports cancel and timeout as they happen.
DocumentContext document_context(const WorkItem& item) {
  const std::string& rel = item.sched.doc.relative_path;
  return DocumentContext{rel, base_name(rel), [&item]() -> Status {
                           if (auto e = interrupted(item)) return *e;
                           return ok();
                         }};
}

// Transforms get their input in pieces of at most this size, so that no single update() can
// produce more than a bounded multiple of it (a decompressor: its ratio limit times a piece).
constexpr size_t kPieceBytes = 64u << 10;

Status write_output_chunk(StageShared& s, WorkItem& item);

// Where the chain's output goes: item.scratch, written to the temp file as it comes once the item
// streams or the output passes stream_threshold_bytes (it is spilled then, and item.streamed from
// then on). So an expanding transform never holds more than the threshold plus one call's output.
class ChainOutput {
 public:
  ChainOutput(StageShared& s, WorkItem& item)
      : s_(s), item_(item), sink_([this](std::string_view data) { return take(data); }) {}
  ChainOutput(const ChainOutput&) = delete;  // the sink points at this object
  ChainOutput& operator=(const ChainOutput&) = delete;
  const TransformChain::Sink& sink() const { return sink_; }
  // A failed chain call: the sink's own write error (or interruption) as it is, else the
  // transform's error naming the document.
  Error error(const Error& e) const {
    return sink_error_ ? *sink_error_ : transform_error(item_, e);
  }

 private:
  Status take(std::string_view data) {
    item_.scratch.append(data);
    if (!item_.streamed && item_.scratch.size() <= s_.options.stream_threshold_bytes) return ok();
    Status st = ok();
    if (!item_.streamed) {
      st = create_output(item_);
      item_.streamed = static_cast<bool>(st);
    }
    if (st) st = write_output_chunk(s_, item_);
    if (st) {
      if (auto e = interrupted(item_)) st = *e;
    }
    if (!st) sink_error_ = st.error();
    return st;
  }

  StageShared& s_;
  WorkItem& item_;
  TransformChain::Sink sink_;
  std::optional<Error> sink_error_;
};

// Feeds `input` to the chain piece by piece.
Status feed_pieces(TransformChain::Run& run, ChainOutput& output, std::string_view input) {
  for (size_t off = 0; off < input.size(); off += kPieceBytes) {
    Status st = run.update(input.substr(off, kPieceBytes), output.sink());
    if (!st) return output.error(st.error());
  }
  return ok();
}

Status transform_whole(StageShared& s, WorkItem& item) {
  const DocumentContext ctx = document_context(item);
  TransformChain::Run run = item.sched.job->spec().chain->begin(ctx);
  item.scratch.clear();
  ChainOutput output(s, item);
  Status st = feed_pieces(run, output, item.data);
  if (!st) return st;
  st = run.finish(output.sink());
  if (!st) return output.error(st.error());
  if (item.streamed) {
    // Spilled: the rest goes to the temp file too, and the writer only renames it.
    st = write_output_chunk(s, item);
    if (st && s.options.fsync) st = item.output.sync();
    s.budget.release(item.held_bytes);
    item.held_bytes = 0;
    trim(item.data);
    trim(item.scratch);
    return st;
  }
  item.data.swap(item.scratch);
  s.budget.resize(item.held_bytes, item.data.size());
  item.held_bytes = item.data.size();
  trim(item.scratch);  // the input's buffer: keep it only if small
  return ok();
}

// Writes a chunk's transform output, charging it to the budget while it is held. It is an
// overdraft: waiting here could deadlock on bytes held by documents queued for this stage.
Status write_output_chunk(StageShared& s, WorkItem& item) {
  const size_t n = item.scratch.size();
  s.budget.force_acquire(n);
  Status st = item.output.write(item.scratch);
  s.budget.release(n);
  item.scratch.clear();
  return st;
}

// A large document goes from its input fd to its temp file chunk by chunk; the writer then only
// renames it. Memory stays at one chunk plus that chunk's output, whatever the document's size.
Status stream_document(StageShared& s, WorkItem& item) {
  const JobSpec& spec = item.sched.job->spec();
  const std::string& input = item.sched.doc.input_path;
  Status st = create_output(item);
  if (!st) return st;
  const DocumentContext ctx = document_context(item);
  std::optional<TransformChain::Run> run;
  if (!spec.chain->empty()) run.emplace(spec.chain->begin(ctx));
  ChainOutput output(s, item);

  item.data.resize(std::max<size_t>(s.options.chunk_bytes, 1));
  for (;;) {
    if (auto e = interrupted(item)) return *e;
    ssize_t n = ::read(item.input_fd, item.data.data(), item.data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("read " + input, errno);
    }
    if (n == 0) break;
    item.bytes_in += static_cast<uint64_t>(n);
    const std::string_view chunk(item.data.data(), static_cast<size_t>(n));
    if (!run) {
      st = item.output.write(chunk);
    } else {
      item.scratch.clear();
      st = feed_pieces(*run, output, chunk);
      if (st) st = write_output_chunk(s, item);
    }
    if (!st) return st;
  }
  ::close(item.input_fd);
  item.input_fd = -1;
  if (run) {
    item.scratch.clear();
    st = run->finish(output.sink());
    if (!st) return output.error(st.error());
    st = write_output_chunk(s, item);
    if (!st) return st;
  }
  trim(item.data);
  trim(item.scratch);
  if (s.options.fsync) return item.output.sync();
  return ok();
}

// Transforms return errors rather than throw; a throw that escapes one anyway (a bug, or a
// library's bad_alloc) fails that document instead of terminating the daemon.
Status run_transform(StageShared& s, WorkItem& item) {
  try {
    return item.streamed ? stream_document(s, item) : transform_whole(s, item);
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kInternal,
                      item.sched.doc.input_path + ": transform failed: " + e.what());
  }
}

// ---- write ------------------------------------------------------------------------------------

Result<DocumentState> write_document(StageShared& s, WorkItem& item) {
  const OutputSpec& out = item.sched.job->spec().output;
  if (!item.streamed) {
    Status st = create_output(item);
    if (st) st = item.output.write(item.data);
    if (st && s.options.fsync) st = item.output.sync();
    if (!st) return st.error();
  }
  auto sha = item.output.sha256_hex();
  if (!sha) return sha.error();
  // The job records the output as its own before it becomes visible (see document_committing).
  Status intent = item.sched.job->job().document_committing(
      {item.sched.doc, item.output_path, *sha, item.bytes_in, item.output.bytes_written(),
       item.sched.attempt});
  if (!intent) return intent.error();
  auto committed = item.output.commit(out.if_exists, s.options.fsync);
  if (!committed) return committed.error();
  if (*committed == OutputFile::Committed::kTargetExists) {
    // The output appeared after the reader's check: never clobber it.
    if (out.if_exists == IfExists::kSkip) return DocumentState::kSkipped;
    return make_error(ErrorCode::kExists,
                      "output exists: " + item.output_path + " (if_exists: fail)");
  }
  item.sha256 = std::move(*sha);
  item.bytes_out = item.output.bytes_written();
  return DocumentState::kSucceeded;
}

}  // namespace

// ---- shared state and the loops ---------------------------------------------------------------

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
  item->output.discard();
  trim(item->data);
  trim(item->scratch);
  std::lock_guard lock(mu_);
  if (free_.size() < kPoolItems) free_.push_back(std::move(item));
}

StageShared::StageShared(const PipelineOptions& opts, PipelineMetrics* m)
    : options(opts),
      metrics(m),
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

void run_reader(StageShared& s) {
  for (;;) {
    if (!s.slots.acquire()) return;
    std::optional<ScheduledDocument> next = s.scheduler.next();
    if (!next) {
      s.slots.release();
      return;
    }
    std::unique_ptr<WorkItem> item = s.pool.get();
    item->sched = std::move(*next);
    item->started = Clock::now();
    const JobSpec& spec = item->sched.job->spec();
    item->output_path = output_path_for(spec, item->sched.doc.relative_path);
    if (item->sched.cancelled) {
      settle(s, std::move(item), DocumentState::kCancelled, nullptr);
      continue;
    }
    item = read_document(s, std::move(item));
    if (!item) continue;
    // An empty chain (a copy) skips the transformer: one hand-off less per small document.
    const bool transform = item->streamed || !spec.chain->empty();
    forward(s, std::move(item), transform ? Stage::kTransform : Stage::kWrite);
  }
}

void run_transformer(StageShared& s, const std::atomic<bool>& retire) {
  while (!retire.load(std::memory_order_relaxed)) {
    std::optional<std::unique_ptr<WorkItem>> popped =
        s.transform_queue.pop_for(std::chrono::milliseconds(100));
    if (!popped) {
      if (s.transform_queue.closed()) return;
      continue;
    }
    std::unique_ptr<WorkItem> item = std::move(*popped);
    s.add_queue_depth(Stage::kTransform, -1);
    begin_stage(*item);
    if (auto e = interrupted(*item)) {
      settle_error(s, std::move(item), *e);
      continue;
    }
    Status st;
    {
      StageClock clock(s, Stage::kTransform);
      st = run_transform(s, *item);
    }
    if (!st) {
      settle_error(s, std::move(item), st.error());
      continue;
    }
    forward(s, std::move(item), Stage::kWrite);
  }
}

void run_writer(StageShared& s) {
  while (std::optional<std::unique_ptr<WorkItem>> popped = s.write_queue.pop()) {
    std::unique_ptr<WorkItem> item = std::move(*popped);
    s.add_queue_depth(Stage::kWrite, -1);
    begin_stage(*item);
    if (auto e = interrupted(*item)) {
      settle_error(s, std::move(item), *e);
      continue;
    }
    std::optional<Result<DocumentState>> written;
    {
      StageClock clock(s, Stage::kWrite);
      written.emplace(write_document(s, *item));
    }
    if (!*written) {
      settle_error(s, std::move(item), written->error());
    } else {
      settle(s, std::move(item), **written, nullptr);
    }
  }
}

}  // namespace docpipe
