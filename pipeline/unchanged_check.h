#pragma once
// The reader's side of `if_exists: "unchanged"` (core/lineage_check.h has the decision): which
// documents of such a job are skipped, counted in docpipe_unchanged_checks_total. Runs on the
// reader threads of the job's documents only; other jobs' documents never come here.

#include <sys/stat.h>

#include "pipeline/stages.h"

namespace docpipe {

// Before the input is opened: looks at the output and the store's row. Leaves item.recorded set
// when the input is to be compared with it; otherwise the document is done (counted here).
void check_output_unchanged(StageShared& s, WorkItem& item);

// After the input was opened (`st`, its fstat): true when it matches the row by the pre-check
// (counted; the caller skips it). Records the input's stat for the store in any case.
bool input_unchanged_by_stat(StageShared& s, WorkItem& item, const struct stat& st);

// When the pre-check failed: hashes the input (the buffer already read, or a streamed input by
// pread, leaving its offset at 0) and compares. true: skip it (counted hashed_same); false:
// done (counted changed). An error reading it is the document's.
Result<bool> input_unchanged_by_hash(StageShared& s, WorkItem& item);

}  // namespace docpipe
