#pragma once
// Helpers for the crash-window tests (issue 9): reading a job's journal as the daemon wrote it,
// and counting outputs while the daemon may be renaming them.

#include <set>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"

namespace e2e {

// A journal: "<crc32 hex8> <json>\n" records, a header first; document records and intent
// records ({"intent":...}) apart. Unreadable lines are skipped and counted.
struct JournalView {
  nlohmann::json header;
  std::vector<nlohmann::json> records;  // document records
  std::vector<nlohmann::json> intents;
  size_t bad_lines = 0;
  bool torn = false;  // the text does not end with a whole record
};
JournalView read_journal(const std::string& path);

// The input of every document record.
std::set<std::string> recorded_inputs(const JournalView& journal);

// Documents (names not starting with '.') below `dir`, counted without stat() so that files
// renamed or removed meanwhile by the daemon do not disturb the walk.
size_t count_outputs(const std::string& dir);

// The N in the last "job resumed job=ID already_done=N" line of a log, or -1.
long resumed_count(const DaemonProcess& daemon, const std::string& id);

// `docpipe status ID --json`'s "job" object (null if the request failed).
nlohmann::json job_status(const std::string& spool, const std::string& id,
                          const std::string& scratch);

}  // namespace e2e
