#pragma once
// What the reader, transformer and writer stages share: settling an item (its one exit from the
// pipeline or back to the scheduler), the per-document deadline, the hand-off between stages and
// the metric clock of a stage's work. Internal to pipeline/; pipeline.cc sees only stages.h.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "pipeline/stages.h"

namespace docpipe {

// Frees a pooled buffer that grew past what the pool keeps, else only clears it.
void trim(std::string& buffer);

// Times one stage's work on an item and counts it in docpipe_stage_in_flight meanwhile. Waits
// for budget are paused out, so the histogram shows the cost of the work, not back-pressure.
class StageClock {
 public:
  StageClock(StageShared& s, Stage stage);
  ~StageClock();
  StageClock(const StageClock&) = delete;
  StageClock& operator=(const StageClock&) = delete;

  void pause();
  void resume();

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
            const Error* error);
// settle() as cancelled for kCancelled, else as failed with `error`.
void settle_error(StageShared& s, std::unique_ptr<WorkItem> item, const Error& error);

// An item and how it ended, for settle_all().
struct Settling {
  std::unique_ptr<WorkItem> item;
  Result<DocumentState> result;  // an error: settle_error()'s rules
};
// settle() for each, but the outcomes of consecutive items of one job are reported together
// (Scheduler::complete_all): a writer's batch costs its job one journal write, not one each.
void settle_all(StageShared& s, std::vector<Settling>& items);

// Checked at every stage boundary and between streamed chunks: cancel and timeouts take effect
// within one chunk or one whole-document step, never after the rest of the document.
std::optional<Error> interrupted(const StageShared& s, const WorkItem& item);

// A stage takes the item: its remaining processing time starts running.
void begin_stage(const Clock& clock, WorkItem& item);
void end_stage(const Clock& clock, WorkItem& item);

// A streamed document moved on (a chunk read, transformed and written): its document_timeout_ms
// starts over. The limit bounds time without progress, so a large document that makes steady
// progress never times out, while one stuck in one step (a hanging command, a stuck parse) is
// still cut at the limit (docs/design.md "Timeouts that fit large documents").
void made_progress(const Clock& clock, WorkItem& item);

// Hands the item to the next stage; a closed queue (stopping) completes it as cancelled.
void forward(StageShared& s, std::unique_ptr<WorkItem> item, Stage stage);

// Where the item's output goes: beneath the job's open output folder, never by its path string.
OutputTarget output_target(const WorkItem& item);
// `shared`: the writer batch's open sub-folders (null: the output opens its own). With fsync
// durability the output is written to a named temp file (OutputTarget::durable).
Status create_output(const StageShared& s, WorkItem& item, SharedFolders* shared = nullptr);

}  // namespace docpipe
