#pragma once
// The lineage store (docs/design.md "Redo only what changed"): an SQLite database in the spool
// (SPOOL/lineage.sqlite) with one row per output file that a job with `if_exists: "unchanged"`
// wrote: which job, input, input hash and stat, chain and time produced it, and the output's own
// hash and stat. `if_exists: "unchanged"` skips a document whose row still matches; `docpipe
// which` and `docpipe plan` read it.
//
// Crash safety: SQLite's WAL journal makes every upsert batch atomic; rows are written only after
// the outputs are durable and the job's journal records them (at the job's finish, from its
// manifest, before the job leaves active/), so a crash at any point leaves either the old rows or
// the new ones, and a resumed job writes again what is missing (upserts are idempotent). A row
// that is lost or stale can only make a document be redone, never skipped wrongly: the row must
// match the input (stat or hash), the chain and the output's stat or hash.
//
// A store that cannot be opened or fails SQLite's quick_check is moved aside
// (lineage.sqlite.damaged-<ms>) and started empty: `unchanged` then redoes everything once.
//
// Thread-safe: each call takes a connection of its own from a small pool (WAL: readers never wait
// for the writer), so readers of the pipeline, plan and which run concurrently.

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace docpipe {

// What the cheap pre-check compares: a file's size, mtime (ns), inode and device.
struct FileStamp {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  uint64_t ino = 0;
  uint64_t dev = 0;
  bool known() const { return ino != 0; }
  bool operator==(const FileStamp&) const = default;
};
FileStamp stamp_of(const struct stat& st);

struct LineageRow {
  std::string output = {};  // absolute path as the job names it: the key
  std::string job_id = {};
  std::string input = {};
  std::string input_sha256 = {};
  FileStamp input_stamp = {};
  std::string chain = {};       // the chain fingerprint (core/chain_fingerprint.h)
  std::string chain_json = {};  // its canonical JSON (stored once per chain)
  int64_t finished_at_ms = 0;
  std::string output_sha256 = {};
  FileStamp output_stamp = {};
};

class LineageStore {
 public:
  static constexpr const char* kFileName = "lineage.sqlite";

  // Opens (creates) the store at `path`. `durable`: synchronous=FULL (each commit fsynced, as
  // durability fsync promises), else NORMAL. A damaged file is moved aside and a fresh store
  // created; `note` then says so (empty otherwise). Errors only when even a fresh store cannot be
  // created (the spool is not writable).
  static Result<std::unique_ptr<LineageStore>> open(const std::string& path, bool durable,
                                                    std::string* note = nullptr);
  ~LineageStore();
  LineageStore(const LineageStore&) = delete;
  LineageStore& operator=(const LineageStore&) = delete;

  const std::string& path() const { return path_; }

  // The row of `output`, or nullopt; chain_json filled only `with_chain_json` (a second query).
  Result<std::optional<LineageRow>> lookup(const std::string& output, bool with_chain_json = false);
  // Many lookups in read transactions of kReaderBatch lookups each: no file lock taken and
  // released per lookup (plan's walk: 15 % of its time went to fcntl locks). Not thread-safe;
  // holds one connection until destroyed.
  class Reader {
   public:
    ~Reader();
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;
    Result<std::optional<LineageRow>> lookup(const std::string& output);

   private:
    friend class LineageStore;
    Reader(LineageStore& store, void* connection) : store_(store), c_(connection) {}
    LineageStore& store_;
    void* c_;  // a Connection
    size_t in_transaction_ = 0;
  };
  static constexpr size_t kReaderBatch = 10000;
  Result<std::unique_ptr<Reader>> reader();
  // Rows beneath the folder `dir` (see for_each_under).
  Result<uint64_t> count_under(const std::string& dir);
  // Inserts or replaces every row in one transaction.
  Status upsert(const std::vector<LineageRow>& rows);
  // An input found unchanged by its hash (its stat had changed): the row's input stamp becomes
  // `stamp`, so that the next check passes on the stat alone. Only if the hash still matches.
  Status refresh_input_stamps(const std::vector<LineageRow>& rows);
  // The rows whose output lies beneath the folder `dir` (absolute), in output order, until `fn`
  // returns false. Reads a snapshot; rows come without chain_json.
  Status for_each_under(const std::string& dir, const std::function<bool(const LineageRow&)>& fn);
  // Up to `limit` outputs after `after` (in byte order): retention walks the store in batches.
  Result<std::vector<std::string>> outputs_after(const std::string& after, size_t limit);
  Status remove(const std::vector<std::string>& outputs);
  Result<uint64_t> count();

 private:
  struct Connection;
  LineageStore(std::string path, bool durable);
  Result<Connection*> acquire();
  void release(Connection* c);
  Status open_connection(Connection& c);
  // Runs `body` (an SQLite result code) in one IMMEDIATE transaction on a pooled connection,
  // one writer at a time: committed when it returns SQLITE_OK, else rolled back.
  Status write(const std::function<int(sqlite3*)>& body);

  std::string path_;
  bool durable_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Connection>> all_;  // under mu_
  std::vector<Connection*> free_;                 // under mu_
  std::mutex write_mu_;                           // one writer at a time (no SQLITE_BUSY retries)
};

// Retention's part (docs/design.md "Retention"): removes the rows whose output file is gone
// (lstat: ENOENT or ENOTDIR), checking up to `max_checked` rows from `cursor` on, in batches
// of one transaction each; `cursor` is where the next pass goes on ("" once the end was
// reached: the next pass starts over). Rows of pruned jobs whose outputs are still on disk stay:
// they describe files that exist. Blocking; `stop` (may be null) ends it between batches.
struct LineagePruneResult {
  uint64_t checked = 0;
  uint64_t removed = 0;
  bool more = false;  // stopped or capped before the end
};
Result<LineagePruneResult> prune_missing_outputs(LineageStore& store, std::string& cursor,
                                                 size_t max_checked,
                                                 const std::atomic<bool>* stop = nullptr);

}  // namespace docpipe
