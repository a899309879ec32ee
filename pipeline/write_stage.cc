// The writer stage: writes a small document's output to its temp file (a streamed one is there
// already), lets the job record it, and renames it into place.
#include "pipeline/stage_common.h"

namespace docpipe {

namespace {

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

void run_writer(StageShared& s) {
  while (std::optional<std::unique_ptr<WorkItem>> popped = s.write_queue.pop()) {
    std::unique_ptr<WorkItem> item = std::move(*popped);
    s.add_queue_depth(Stage::kWrite, -1);
    begin_stage(s.clock, *item);
    if (auto e = interrupted(s, *item)) {
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
