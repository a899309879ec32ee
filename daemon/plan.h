#pragma once
// `docpipe plan` (docs/design.md "Redo only what changed"): what a job would do, document by
// document, without queueing it, like `terraform plan`. The job is validated as for submit (the
// caller's rights); then its inputs are walked and each document classified as the run would
// (core/lineage_check.h): new, changed, unchanged, would overwrite, or exists (kept by
// if_exists skip, failed by fail). Store rows beneath the job's output folder whose input is
// gone are orphans; a restricted caller (not root) is told only of those whose output it may read
// and whose input's folder it may search (beneath a shared output folder, rows of other users'
// jobs are not its business). Only what would change is listed, up to a cap; the counts are
// always whole.
//
// Memory is bounded whatever the job's size: the walk is lazy and the reply's lists are capped.
// Blocking: runs on the executor.

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/job_spec.h"
#include "core/lineage_store.h"
#include "daemon/daemon_metrics.h"

namespace docpipe {

struct PlanCounts {
  uint64_t total = 0;
  uint64_t new_documents = 0;
  uint64_t changed = 0;
  uint64_t unchanged = 0;
  uint64_t would_overwrite = 0;
  uint64_t exists = 0;  // if_exists skip (kept) or fail (the document fails)
  uint64_t orphans = 0;
  uint64_t hashed = 0;  // inputs whose stat differed from the record, so were read and hashed
  uint64_t bytes_to_process = 0;
  bool would_change() const { return new_documents + changed + would_overwrite > 0; }
};

// The plan as the control socket replies it: {"id", "if_exists", "chain", "counts": {...},
// "bytes_to_process", "estimate_seconds" (null when nothing was measured yet), "estimate_basis",
// "documents": [{"input", "output", "action", "why"}...], "documents_truncated",
// "orphans": [{"output", "input", "job"}...], "orphans_truncated", "would_change",
// "warnings": [...]}.
// `store` null: no record is known (every existing output "would overwrite" for unchanged).
nlohmann::json plan_job(const JobSpec& spec, LineageStore* store, size_t list,
                        const MeasuredThroughput& measured, PlanCounts* counts_out = nullptr);

}  // namespace docpipe
