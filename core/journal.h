#pragma once
// A job's journal (active/ID.journal): append-only, so that a restarted daemon resumes the job
// without redoing finished documents, and the final manifest and report cover the whole job
// across restarts.
//
// Record: "<crc32 of payload, 8 hex digits> <payload JSON>\n". The first record is a header;
// each further one is either a document record (a manifest line) or an intent record written
// just before an output is renamed into place (see DaemonJob::document_committing), so that
// resume knows an output renamed before its document record was written is the job's own. The
// payloads are core/journal_record.h's types; this file only frames and checks them.
//
// Damage: a crash can tear the last record (a "torn tail": cut on reopen, appends continue after
// the last good record). Damage elsewhere (a bad disk block, an edit) is skipped: the scan
// resynchronises on the next record whose checksum matches, even inside a damaged line, and
// says how many bytes and (about) how many records it could not read.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace docpipe {

// What a scan could not read.
struct JournalDamage {
  uint64_t torn_bytes = 0;            // a torn tail: the last record alone, incomplete or corrupt
  uint64_t damaged_bytes = 0;         // unreadable bytes other than a torn tail
  uint64_t damaged_regions = 0;       // separate unreadable stretches among them
  uint64_t first_damage_offset = 0;   // where the first unreadable stretch starts (if any)
  uint64_t records_lost = 0;          // about how many records the damaged bytes held (>= regions)
  uint64_t records_after_damage = 0;  // good records read after the first damaged stretch

  bool torn() const { return torn_bytes != 0; }
  bool damaged() const { return damaged_bytes != 0; }
  // "journal damaged: 3042 bytes unreadable at offset 120 (about 11 records lost); 980 later
  // records read", or "" when there is neither damage nor a torn tail.
  std::string describe() const;
};

struct JournalContents {
  int64_t submitted_at_ms = 0;
  std::vector<std::string> records;  // payload JSON of each document record, in order
  std::vector<std::string> intents;  // payload JSON of each intent record, in order
  uint64_t good_bytes = 0;           // where appends continue: the end of the last good record
  bool torn = false;                 // a torn tail was dropped
  JournalDamage damage;
};

// What scan() saw, without the records themselves.
struct JournalScan {
  int64_t submitted_at_ms = 0;
  uint64_t records = 0;  // document records
  uint64_t intents = 0;  // intent records
  uint64_t good_bytes = 0;
  bool torn = false;
  JournalDamage damage;
};

class JobJournal {
 public:
  JobJournal() = default;
  ~JobJournal();
  JobJournal(const JobJournal&) = delete;
  JobJournal& operator=(const JobJournal&) = delete;

  // Reads a journal. A missing file is an error (kNotFound), and so is a file in which not one
  // record is readable (kCorruptInput); damage is not.
  static Result<JournalContents> load(const std::string& path);
  // The same, streaming: calls `record` with each record's payload (document and intent records;
  // tell them apart with is_intent()) in order, holding one record in memory at a time (journals
  // of million-document jobs are large).
  static Result<JournalScan> scan(const std::string& path,
                                  const std::function<void(std::string_view payload)>& record);

  // Creates a new journal with its header (replacing any file at `path`).
  Status create(const std::string& path, const std::string& id, int64_t submitted_at_ms);
  // Opens an existing journal for appending after its last good record (cutting a torn tail).
  Status reopen(const std::string& path, uint64_t good_bytes);

  // Appends one record with a single write(2), so that a daemon crash (kill -9) right after it
  // returns keeps the record (it is in the kernel). A failed or short write (ENOSPC) is cut
  // back off, so the journal never holds a partial record in its middle. Callers serialise.
  Status append(const std::string& payload_json);
  // Appends several records with one write(2) (a writer's batch): all of them or, after a failed
  // or short write (cut back off as above), none.
  Status append_all(const std::vector<std::string>& payloads_json);
  // fdatasync; with `durable` false a no-op (records are in the kernel from append()).
  Status sync(bool durable);
  // fdatasync alone; safe to call without the callers' lock, concurrently with append().
  Status datasync() const;
  Status close(bool durable);

  static std::string encode(const std::string& payload_json);
  static bool is_intent(std::string_view payload) { return payload.starts_with("{\"intent\":"); }

 private:
  // Writes whole encoded records with one write(2) (more only after a short one).
  Status write_records(const std::string& records);

  int fd_ = -1;
  uint64_t size_ = 0;  // bytes of whole records in the file
  std::string path_;
};

}  // namespace docpipe
