#pragma once
// The job's manifest (DESIGN.md "Report and manifest", done/ID.manifest.jsonl), written from its
// journal: one line per document, in journal order, each line the document record's payload
// exactly as journalled (core/journal_record.h), so that the manifest and the journal agree
// byte for byte. Intent records are left out. An input with several records (done again after a
// restart because its output had vanished, or recorded twice) is listed once, by its last record.
//
// Streaming: the journal is read one record at a time and the manifest goes out through
// AtomicFileWriter (core/fs_util.h), so memory does not grow with the job and the manifest
// appears whole or not at all. Which inputs were superseded is the caller's knowledge (the
// replay found them); only then does a first pass count their records.

#include <string>
#include <unordered_set>

#include "core/result.h"

namespace docpipe {

// Synchronous (reads and writes files): call it off the loop thread.
// `with_input_actions`: each line whose input had an input action (core/input_actions.h) ends
// with its outcome, `"input_action":{"action":"delete"|"move","outcome":"done"|"failed"[,
// "error":...]}`, read from the journal's action records in a first pass.
Status write_manifest(const std::string& journal_path, const std::string& manifest_path,
                      const std::unordered_set<std::string>& superseded, bool durable,
                      bool with_input_actions = false);

}  // namespace docpipe
