// The writer stage: writes a small document's output to its temp file (a streamed one is there
// already), lets the job record it, and renames it into place.
//
// A writer takes what is queued (up to kMaxBatch documents) as one batch: each output is
// written (and with fsync, fsynced) and renamed, the outputs going to one sub-folder sharing one
// descriptor of it (SharedFolders); with fsync each folder the batch wrote to is then fsynced
// once; and only then are the documents reported, each job's in one go (settle_all: one journal
// write per job per batch). The floor a tool cannot go below is one fsync per file; a folder
// fsync per document as well halved throughput on disk, and a folder opened and a journal write
// per document cost small documents ~15 % of their CPU on tmpfs (issue 12).
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
Result<DocumentState> write_document(StageShared& s, WorkItem& item, bool keep_folder,
                                     SharedFolders& folders) {
  const OutputSpec& out = item.sched.job->spec().output;
  if (!item.streamed) {
    Status st = create_output(s, item, &folders);
    if (st) st = item.output.write(item.data);
    if (st && s.options.fsync) st = item.output.sync();
    if (!st) return st.error();
  }
  auto sha = item.output.sha256_hex();
  if (!sha) return sha.error();
  // if_exists "unchanged": the output's stat for the lineage store's pre-check (the rename
  // below keeps it). One fstat, for such jobs only.
  if (out.if_exists == IfExists::kUnchanged) {
    struct stat st;
    if (Status stat = item.output.stat_written(&st); !stat) return stat.error();
    item.output_stat = stamp_of(st);
  }
  // The job records the output as its own before it becomes visible (see document_committing).
  Status intent = item.sched.job->job().document_committing(
      {item.sched.doc, item.output_path, *sha, item.bytes_in, item.output.bytes_written(),
       item.sched.attempt, item.metadata});
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
  // A copy took the written file's place (its link was refused): the output is that copy.
  if (out.if_exists == IfExists::kUnchanged && item.output.copied_stat() != nullptr) {
    item.output_stat = stamp_of(*item.output.copied_stat());
  }
  item.sha256 = std::move(*sha);
  item.bytes_out = item.output.bytes_written();
  return DocumentState::kSucceeded;
}

// fsyncs each folder the batch renamed outputs into once (folders told apart by device and
// inode, whatever descriptor each output holds), and fails the outputs of a folder whose fsync
// fails: renamed, but not durable as promised.
void sync_folders(std::vector<Settling>& batch) {
  std::vector<std::pair<std::pair<dev_t, ino_t>, Status>> synced;
  for (Settling& w : batch) {
    if (!w.result || *w.result != DocumentState::kSucceeded) continue;
    OutputFile& out = w.item->output;
    struct stat st;
    if (::fstat(out.folder_fd(), &st) != 0) {  // cannot tell it apart: synced on its own
      if (Status alone = out.sync_folder(); !alone) w.result = alone.error();
      continue;
    }
    const std::pair<dev_t, ino_t> key{st.st_dev, st.st_ino};
    auto it =
        std::find_if(synced.begin(), synced.end(), [&](const auto& e) { return e.first == key; });
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

void write_batch(StageShared& s, std::vector<std::unique_ptr<WorkItem>>& taken, bool queued) {
  std::vector<Settling> batch;
  batch.reserve(taken.size());
  SharedFolders folders;
  // Folders are fsynced once per batch; one document alone syncs its own in commit().
  const bool keep_folders = s.options.fsync && taken.size() > 1;
  for (std::unique_ptr<WorkItem>& item : taken) {
    if (queued) s.add_queue_depth(Stage::kWrite, -1);
    begin_stage(s.clock, *item);
    if (auto e = interrupted(s, *item)) {
      batch.push_back(Settling{std::move(item), *e});
      continue;
    }
    std::optional<Result<DocumentState>> written;
    {
      StageClock clock(s, Stage::kWrite);
      written.emplace(write_document(s, *item, keep_folders, folders));
    }
    batch.push_back(Settling{std::move(item), std::move(*written)});
  }
  taken.clear();
  if (keep_folders) {
    StageClock clock(s, Stage::kWrite);
    sync_folders(batch);
  }
  settle_all(s, batch);
  folders.clear();  // after the outcomes: a failed output's temp file is removed through it
}

void run_writer(StageShared& s) {
  std::vector<std::unique_ptr<WorkItem>> taken;
  while (std::optional<std::unique_ptr<WorkItem>> popped = s.write_queue.pop()) {
    taken.push_back(std::move(*popped));
    while (taken.size() < kMaxBatch) {
      std::optional<std::unique_ptr<WorkItem>> more = s.write_queue.try_pop();
      if (!more) break;
      taken.push_back(std::move(*more));
    }
    write_batch(s, taken, /*queued=*/true);
  }
}

}  // namespace docpipe
