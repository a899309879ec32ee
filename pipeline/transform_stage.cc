// The transformer stage: runs the job's chain over a whole document, spilling its output to the
// temp file once it passes stream_threshold_bytes, or streams a large document chunk by chunk
// from its input to its temp file.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>

#include "core/path_util.h"
#include "core/transform_chain.h"
#include "pipeline/stage_common.h"

namespace docpipe {

namespace {

// Transform errors name the document; the transform's message names itself ("gzip: ...").
// A cancel or timeout seen through check_interrupted already names the document.
Error transform_error(const WorkItem& item, const Error& e) {
  const std::string& input = item.sched.doc.input_path;
  if (e.message.starts_with(input + ": ")) return e;
  return Error{e.code, input + ": " + e.message, e.sys_errno};
}

// The context a transform sees; check_interrupted reports cancel and timeout as they happen.
// A transform's reservations join the document's held_bytes, so settling releases what the
// transform did not give back; try_acquire never blocks (a transformer waiting for budget could
// wait on documents queued behind it).
DocumentContext document_context(StageShared& s, WorkItem& item) {
  const std::string& rel = item.sched.doc.relative_path;
  return DocumentContext{.relative_path = rel,
                         .name = base_name(rel),
                         .check_interrupted = [&s, &item]() -> Status {
                           if (auto e = interrupted(s, item)) return *e;
                           return ok();
                         },
                         .try_reserve_bytes =
                             [&s, &item](size_t n) {
                               if (!s.budget.try_acquire(n)) return false;
                               item.held_bytes += n;
                               return true;
                             },
                         .release_reserved_bytes =
                             [&s, &item](size_t n) {
                               n = std::min(n, item.held_bytes);
                               s.budget.release(n);
                               item.held_bytes -= n;
                             },
                         .breakers = s.options.breakers.get()};
}

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
      st = create_output(s_, item_);
      item_.streamed = static_cast<bool>(st);
    }
    if (st) st = write_output_chunk(s_, item_);
    if (st) {
      if (auto e = interrupted(s_, item_)) st = *e;
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
  const DocumentContext ctx = document_context(s, item);
  TransformChain::Run run = item.sched.job->spec().chain->begin(ctx);
  item.scratch.clear();
  ChainOutput output(s, item);
  Status st = feed_pieces(run, output, item.data);
  if (!st) return st;
  st = run.finish(output.sink());
  if (!st) return output.error(st.error());
  item.metadata = run.metadata();
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
  Status st = create_output(s, item);
  if (!st) return st;
  const DocumentContext ctx = document_context(s, item);
  std::optional<TransformChain::Run> run;
  if (!spec.chain->empty()) run.emplace(spec.chain->begin(ctx));
  ChainOutput output(s, item);

  item.data.resize(std::max<size_t>(s.options.chunk_bytes, 1));
  // The input's hash for the manifest, as the chunks pass (a copy's is its output's).
  if (run) {
    st = item.input_hash.reset();
    if (!st) return st;
  }
  for (;;) {
    if (auto e = interrupted(s, item)) return *e;
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
      st = item.input_hash.update(chunk);
      if (!st) return st;
      item.scratch.clear();
      st = feed_pieces(*run, output, chunk);
      if (st) st = write_output_chunk(s, item);
    }
    if (!st) return st;
    made_progress(s.clock, item);
  }
  ::close(item.input_fd);
  item.input_fd = -1;
  if (run) {
    Result<std::string> digest = item.input_hash.hex_digest();
    if (!digest) return digest.error();
    item.input_sha256 = std::move(*digest);
    item.scratch.clear();
    st = run->finish(output.sink());
    if (!st) return output.error(st.error());
    item.metadata = run->metadata();
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

}  // namespace

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
    begin_stage(s.clock, *item);
    if (auto e = interrupted(s, *item)) {
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

}  // namespace docpipe
