#pragma once
// The records of a job's journal (core/journal.h), as values: one type per kind, each with the
// one way it is written (to_json) and one parser for all of them (parse_journal_record).
//
// The payload bytes are a contract: a document record IS a manifest line (DESIGN.md "Report and
// manifest"), copied from the journal unchanged, so to_json keeps today's field order and escapes
// (nlohmann's dump: NUL and other control bytes as \u00XX, invalid UTF-8 replaced by U+FFFD).
//
//   header    {"id":...,"journal":1,"submitted_at_ms":...}               (the first record)
//   document  {"input":...,"output":...,"state":...,"bytes_in":...,"bytes_out":...,
//              "sha256":...,"attempts":...,"duration_seconds":...,"error":...
//              [,"input_sha256":...,"chain":...][,"reason":...][,"input_stat":{...},
//              "output_stat":{...}]}
//   intent    {"intent":"commit","input":...,"output":...,"sha256":...,"bytes_in":...,
//              "bytes_out":...,"attempts":...}  (just before an output is renamed into place)
//
// An intent's payload starts with {"intent": (JobJournal::is_intent tells it apart unparsed).
// Parsing: an object with a "journal" key is a header, one with "intent" an intent, any other
// object a document record. Missing fields take their defaults (a missing or unknown state is
// "failed"), unknown fields are ignored; a field of the wrong type is an error naming it.

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "core/lineage_store.h"
#include "core/result.h"

namespace docpipe {

// A document's end state as journalled (cancelled documents are never journalled).
enum class RecordState { kSucceeded, kFailed, kSkipped };
const char* record_state_name(RecordState s);

struct JournalHeader {
  static constexpr int64_t kVersion = 1;
  int64_t version = kVersion;
  std::string id;
  int64_t submitted_at_ms = 0;
  std::string to_json() const;
};

struct DocumentRecord {
  std::string input;   // absolute input path, as the job names it
  std::string output;  // absolute output path
  RecordState state = RecordState::kFailed;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  std::string sha256;         // of the output; empty unless succeeded
  std::string metadata = {};  // a JSON object's text (pdf.text: pages, title, author), or empty
  int attempts = 1;
  double duration_seconds = 0;
  std::string error;  // empty unless failed
  // Written after the fields above, each only when set (docs/design.md "Redo only what changed"):
  std::string input_sha256 = {};  // of the input as read; empty when it was not read whole
  std::string chain = {};         // the job's chain fingerprint, with input_sha256
  std::string reason = {};        // why a document was skipped: "unchanged", or empty
  // if_exists "unchanged" only: the input's stat when opened, the output's once written (see
  // core/lineage_store.h); absent (all zero) otherwise.
  FileStamp input_stat = {};
  FileStamp output_stat = {};
  std::string to_json() const;
};

struct IntentRecord {
  std::string input;
  std::string output;
  std::string sha256;  // of the bytes about to appear at `output`
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  int attempts = 1;
  std::string metadata = {};  // as DocumentRecord's, carried to it on resume
  std::string to_json() const;
};

// What becomes of a document's input (input.after_success / after_failure, core/input_actions.h),
// journalled in two steps so that resume completes an action exactly once: `begin` in the same
// write(2) as the document record it follows (synced before the action runs), then `done` or
// `failed` once the action has run. Both are intents to the journal's readers (the manifest
// leaves them out; an older daemon ignores them: their "output" is empty):
//   {"intent":"input_action","step":"begin","input":...,"action":"delete"|"move","base":...,
//    "path":...,"target":...,"dev":...,"ino":...,"size":...,"mtime_ns":...,"output":...,"sha256":...}
//   {"intent":"input_action","step":"done"|"failed","input":...,"action":...,"error":...}
struct InputActionRecord {
  enum class Step { kBegin, kDone, kFailed };
  Step step = Step::kBegin;
  std::string input;   // as in the document record
  std::string action;  // "delete" or "move"
  // begin only: where the input is (core/input_actions.h InputLocation), the identity of the
  // file that was read, and for a success the output and its sha256 (checked again on resume).
  std::string base;
  std::string path;
  std::string target;
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  std::string output;
  std::string sha256;
  std::string error;  // failed only
  std::string to_json() const;
  // The record that ends an action begun for `input`.
  static InputActionRecord finished(std::string input, std::string action, bool done,
                                    std::string error);
};
const char* input_action_step_name(InputActionRecord::Step s);

using JournalRecord = std::variant<JournalHeader, DocumentRecord, IntentRecord, InputActionRecord>;

// kCorruptInput when the payload is not a JSON object or a field has the wrong type.
Result<JournalRecord> parse_journal_record(std::string_view payload);

}  // namespace docpipe
