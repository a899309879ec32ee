#pragma once
// The decision of `if_exists: "unchanged"`, shared by the pipeline's reader (which acts on it)
// and `docpipe plan` (which only reports it), so that a plan says what the run then does.
//
//   no output                                           -> new             (done)
//   output, no row in the lineage store                 -> would overwrite (done)
//   row of another chain                                -> changed: chain  (done)
//   output's stat differs from the row's (edited,
//     touched, replaced, restored from a backup)        -> changed: output (done; outputs are
//                                                          never hashed: a redo is the safe answer)
//   input's size, mtime_ns, inode and device as in row  -> unchanged       (skipped, pre-check)
//   else the input's SHA-256 equals the row's           -> unchanged       (skipped, hashed)
//   else                                                -> changed: input  (done)

#include <optional>
#include <string>

#include "core/lineage_store.h"

namespace docpipe {

enum class LineageClass { kNew, kWouldOverwrite, kChanged, kCompareInput };

// What the output and the row say before the input is looked at. `why` (for kChanged) is
// "chain", "output" and is left alone otherwise.
inline LineageClass classify_output(bool output_exists, const FileStamp& output,
                                    const std::optional<LineageRow>& row, const std::string& chain,
                                    const char** why) {
  if (!output_exists) return LineageClass::kNew;
  if (!row) return LineageClass::kWouldOverwrite;
  if (row->chain != chain) {
    *why = "chain";
    return LineageClass::kChanged;
  }
  if (!row->output_stamp.known() || !(row->output_stamp == output)) {
    *why = "output";
    return LineageClass::kChanged;
  }
  return LineageClass::kCompareInput;
}

// The pre-check: true when the input is unchanged without reading it.
inline bool input_matches_by_stat(const LineageRow& row, const FileStamp& input) {
  return row.input_stamp.known() && row.input_stamp == input;
}

}  // namespace docpipe
