// The writer stage: writes a small document's output to its temp file (a streamed one is there
// already), lets the job record it, and renames it into place.
//
// With fsync, a writer takes what is queued (up to kMaxBatch documents) as one batch: each output
// is written, fsynced and renamed, then each folder the batch wrote to is fsynced once, and only
// then are the documents reported. The floor a tool cannot go below is one fsync per file; a
// folder fsync per document as well halved throughput on disk (issue 12).
#include <sys/stat.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "pipeline/stage_common.h"

namespace docpipe {

namespace {

constexpr size_t kMaxBatch = 32;

// Writes and renames the item's output. With `keep_folder` its folder stays open, unsynced
// (OutputFile::commit_keeping_folder): the caller syncs it before the item is reported.
Result<DocumentState> write_document(StageShared& s, WorkItem& item, bool keep_folder) {
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
  auto committed = keep_folder ? item.output.commit_keeping_folder(out.if_exists)
                               : item.output.commit(out.if_exists, s.options.fsync);
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

struct Written {
  std::unique_ptr<WorkItem> item;
  Result<DocumentState> result;
};

// fsyncs each folder the batch renamed outputs into once (folders told apart by device and
// inode, whatever descriptor each output holds), and fails the outputs of a folder whose fsync
// fails: renamed, but not durable as promised.
void sync_folders(std::vector<Written>& batch) {
  std::vector<std::pair<std::pair<dev_t, ino_t>, Status>> synced;
  for (Written& w : batch) {
    if (!w.result || *w.result != DocumentState::kSucceeded) continue;
    OutputFile& out = w.item->output;
    struct stat st;
    if (::fstat(out.folder_fd(), &st) != 0) {  // cannot tell it apart: synced on its own
      if (Status alone = out.sync_folder(); !alone) w.result = alone.error();
      continue;
    }
    const std::pair<dev_t, ino_t> key{st.st_dev, st.st_ino};
    auto it = std::find_if(synced.begin(), synced.end(),
                           [&](const auto& e) { return e.first == key; });
    Status status = ok();
    if (it != synced.end()) {
      status = it->second;
      out.release_folder();
    } else {
      status = out.sync_folder();
      synced.emplace_back(key, status);
    }
    if (!status) w.result = status.error();
  }
}

}  // namespace

void run_writer(StageShared& s) {
  std::vector<Written> batch;
  while (std::optional<std::unique_ptr<WorkItem>> popped = s.write_queue.pop()) {
    std::vector<std::unique_ptr<WorkItem>> taken;
    taken.push_back(std::move(*popped));
    while (s.options.fsync && taken.size() < kMaxBatch) {
      std::optional<std::unique_ptr<WorkItem>> more = s.write_queue.try_pop();
      if (!more) break;
      taken.push_back(std::move(*more));
    }
    const bool batched = taken.size() > 1;
    batch.clear();
    for (std::unique_ptr<WorkItem>& item : taken) {
      s.add_queue_depth(Stage::kWrite, -1);
      begin_stage(s.clock, *item);
      if (auto e = interrupted(s, *item)) {
        settle_error(s, std::move(item), *e);
        continue;
      }
      std::optional<Result<DocumentState>> written;
      {
        StageClock clock(s, Stage::kWrite);
        written.emplace(write_document(s, *item, batched));
      }
      batch.push_back(Written{std::move(item), std::move(*written)});
    }
    if (batched) {
      StageClock clock(s, Stage::kWrite);
      sync_folders(batch);
    }
    for (Written& w : batch) {
      if (!w.result) {
        settle_error(s, std::move(w.item), w.result.error());
      } else {
        settle(s, std::move(w.item), *w.result, nullptr);
      }
    }
  }
}

}  // namespace docpipe
