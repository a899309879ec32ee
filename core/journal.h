#pragma once
// A job's journal (active/ID.journal): append-only, one record per finished document, so that a
// restarted daemon resumes the job without redoing finished documents, and the final manifest and
// report cover the whole job across restarts.
//
// Record: "<crc32 of payload, 8 hex digits> <payload JSON>\n". The first record is a header
// ({"journal":1,"id":...,"submitted_at_ms":...}); each further one is a manifest line. A crash can
// tear the last record: load() stops at the first record that is incomplete or fails its
// checksum, reports it, and appends continue after the last good record.

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace docpipe {

struct JournalContents {
  int64_t submitted_at_ms = 0;
  std::vector<std::string> records;  // payload JSON of each document record, in order
  uint64_t good_bytes = 0;           // length of the valid prefix
  bool torn = false;                 // bytes after good_bytes were dropped
};

// What scan() saw, without the records themselves.
struct JournalScan {
  int64_t submitted_at_ms = 0;
  uint64_t records = 0;
  uint64_t good_bytes = 0;
  bool torn = false;
};

class JobJournal {
 public:
  JobJournal() = default;
  ~JobJournal();
  JobJournal(const JobJournal&) = delete;
  JobJournal& operator=(const JobJournal&) = delete;

  // Reads a journal. A missing file is an error (kNotFound); a torn tail is not.
  static Result<JournalContents> load(const std::string& path);
  // The same, streaming: calls `record` with each document record's payload in order, holding
  // one record in memory at a time (journals of million-document jobs are large).
  static Result<JournalScan> scan(const std::string& path,
                                  const std::function<void(std::string_view payload)>& record);

  // Creates a new journal with its header (replacing any file at `path`).
  Status create(const std::string& path, const std::string& id, int64_t submitted_at_ms);
  // Opens an existing journal for appending after its valid prefix (cutting a torn tail).
  Status reopen(const std::string& path, uint64_t good_bytes);

  // Appends one document record. Thread-compatible: callers serialise.
  Status append(const std::string& payload_json);
  // Flushes buffered records and, with `durable`, fsyncs them.
  Status sync(bool durable);
  Status close(bool durable);

  static std::string encode(const std::string& payload_json);

 private:
  FILE* file_ = nullptr;
  std::string path_;
};

}  // namespace docpipe
