#include "core/lineage_store.h"

#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "core/time_util.h"

namespace docpipe {

FileStamp stamp_of(const struct stat& st) {
  return FileStamp{
      .size = static_cast<uint64_t>(st.st_size),
      .mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
      .ino = static_cast<uint64_t>(st.st_ino),
      .dev = static_cast<uint64_t>(st.st_dev)};
}

namespace {

constexpr int kSchemaVersion = 1;

// WITHOUT ROWID: the output path is the key and the only index. The chain's canonical JSON is
// kept once per chain, not once per output.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS lineage (
  output TEXT PRIMARY KEY NOT NULL,
  job_id TEXT NOT NULL,
  input TEXT NOT NULL,
  input_sha256 TEXT NOT NULL,
  input_size INTEGER NOT NULL, input_mtime_ns INTEGER NOT NULL,
  input_ino INTEGER NOT NULL, input_dev INTEGER NOT NULL,
  chain TEXT NOT NULL,
  finished_at_ms INTEGER NOT NULL,
  output_sha256 TEXT NOT NULL,
  output_size INTEGER NOT NULL, output_mtime_ns INTEGER NOT NULL,
  output_ino INTEGER NOT NULL, output_dev INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chains (
  fingerprint TEXT PRIMARY KEY NOT NULL,
  canonical TEXT NOT NULL
) WITHOUT ROWID;
)sql";

constexpr const char* kColumns =
    "output, job_id, input, input_sha256, input_size, input_mtime_ns, input_ino, input_dev, "
    "chain, finished_at_ms, output_sha256, output_size, output_mtime_ns, output_ino, output_dev";

bool is_damage(int rc) {
  rc &= 0xff;
  return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB;
}

Error sqlite_error(const std::string& path, const char* what, sqlite3* db, int rc) {
  std::string msg = "lineage store " + path + ": " + what + ": " +
                    (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  ErrorCode code = is_damage(rc) ? ErrorCode::kCorruptInput
                   : (rc & 0xff) == SQLITE_FULL || (rc & 0xff) == SQLITE_IOERR ||
                           (rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_BUSY
                       ? ErrorCode::kIo
                       : ErrorCode::kInternal;
  return make_error(code, msg);
}

// A prepared statement reset when it goes out of scope.
class Statement {
 public:
  explicit Statement(sqlite3_stmt* s) : s_(s) {}
  ~Statement() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  sqlite3_stmt* get() const { return s_; }
  void text(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void integer(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }

 private:
  sqlite3_stmt* s_;
};

// Prepares `sql` for one transaction's use; finalized when it goes out of scope.
struct Prepared {
  sqlite3_stmt* s = nullptr;
  int rc = SQLITE_OK;
  Prepared(sqlite3* db, const std::string& sql) {
    rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr);
  }
  ~Prepared() { sqlite3_finalize(s); }
};

std::string column_text(sqlite3_stmt* s, int i) {
  const unsigned char* t = sqlite3_column_text(s, i);
  return t != nullptr ? std::string(reinterpret_cast<const char*>(t),
                                    static_cast<size_t>(sqlite3_column_bytes(s, i)))
                      : std::string();
}

FileStamp column_stamp(sqlite3_stmt* s, int first) {
  return FileStamp{.size = static_cast<uint64_t>(sqlite3_column_int64(s, first)),
                   .mtime_ns = sqlite3_column_int64(s, first + 1),
                   .ino = static_cast<uint64_t>(sqlite3_column_int64(s, first + 2)),
                   .dev = static_cast<uint64_t>(sqlite3_column_int64(s, first + 3))};
}

// The row from a statement that selected kColumns.
LineageRow read_row(sqlite3_stmt* s) {
  LineageRow r;
  r.output = column_text(s, 0);
  r.job_id = column_text(s, 1);
  r.input = column_text(s, 2);
  r.input_sha256 = column_text(s, 3);
  r.input_stamp = column_stamp(s, 4);
  r.chain = column_text(s, 8);
  r.finished_at_ms = sqlite3_column_int64(s, 9);
  r.output_sha256 = column_text(s, 10);
  r.output_stamp = column_stamp(s, 11);
  return r;
}

void bind_stamp(Statement& st, int first, const FileStamp& f) {
  st.integer(first, static_cast<int64_t>(f.size));
  st.integer(first + 1, f.mtime_ns);
  st.integer(first + 2, static_cast<int64_t>(f.ino));
  st.integer(first + 3, static_cast<int64_t>(f.dev));
}

}  // namespace

struct LineageStore::Connection {
  sqlite3* db = nullptr;
  sqlite3_stmt* lookup = nullptr;
  sqlite3_stmt* chain_of = nullptr;
  ~Connection() {
    sqlite3_finalize(lookup);
    sqlite3_finalize(chain_of);
    if (db != nullptr) sqlite3_close_v2(db);
  }
};

LineageStore::LineageStore(std::string path, bool durable)
    : path_(std::move(path)), durable_(durable) {}

LineageStore::~LineageStore() = default;

Status LineageStore::open_connection(Connection& c) {
  int rc =
      sqlite3_open_v2(path_.c_str(), &c.db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return sqlite_error(path_, "open", c.db, rc);
  sqlite3_busy_timeout(c.db, 10000);
  // WAL: readers see a snapshot and never wait for the writer; a commit is atomic. FULL syncs the
  // WAL at every commit (durability fsync); NORMAL syncs it at checkpoints only, so an OS crash
  // may lose the last commits, which only makes their documents be redone.
  std::string pragmas = std::string("PRAGMA journal_mode=WAL; PRAGMA synchronous=") +
                        (durable_ ? "FULL" : "NORMAL") + "; PRAGMA foreign_keys=OFF;";
  rc = sqlite3_exec(c.db, pragmas.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return sqlite_error(path_, "set up", c.db, rc);
  rc = sqlite3_exec(c.db, kSchema, nullptr, nullptr, nullptr);  // IF NOT EXISTS: cheap
  if (rc != SQLITE_OK) return sqlite_error(path_, "create tables", c.db, rc);
  const std::string lookup = std::string("SELECT ") + kColumns + " FROM lineage WHERE output = ?1";
  rc = sqlite3_prepare_v3(c.db, lookup.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &c.lookup, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_prepare_v3(c.db, "SELECT canonical FROM chains WHERE fingerprint = ?1", -1,
                            SQLITE_PREPARE_PERSISTENT, &c.chain_of, nullptr);
  }
  if (rc != SQLITE_OK) return sqlite_error(path_, "prepare", c.db, rc);
  return ok();
}

Result<std::unique_ptr<LineageStore>> LineageStore::open(const std::string& path, bool durable,
                                                         std::string* note) {
  if (note != nullptr) note->clear();
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<LineageStore> store(new LineageStore(path, durable));
    auto c = std::make_unique<Connection>();
    Status st = store->open_connection(*c);
    int rc = SQLITE_OK;
    if (st) {
      // quick_check reads every page once (~50 ms per 100,000 rows): a damaged store is found
      // at start, not in the middle of a job.
      sqlite3_stmt* check = nullptr;
      rc = sqlite3_prepare_v2(c->db, "PRAGMA quick_check", -1, &check, nullptr);
      std::string verdict;
      if (rc == SQLITE_OK && (rc = sqlite3_step(check)) == SQLITE_ROW) {
        verdict = column_text(check, 0);
        rc = SQLITE_OK;
      }
      sqlite3_finalize(check);
      if (rc != SQLITE_OK) {
        st = sqlite_error(path, "quick_check", c->db, rc);
      } else if (verdict != "ok") {
        st = make_error(ErrorCode::kCorruptInput,
                        "lineage store " + path + ": quick_check: " + verdict);
      }
    }
    if (st) {
      const std::string set_version = "PRAGMA user_version=" + std::to_string(kSchemaVersion);
      sqlite3_exec(c->db, set_version.c_str(), nullptr, nullptr, nullptr);
      store->all_.push_back(std::move(c));
      store->free_.push_back(store->all_.back().get());
      return store;
    }
    c.reset();
    if (st.error().code != ErrorCode::kCorruptInput || attempt > 0) return st.error();
    // Damaged: moved aside (kept for a post-mortem), with its WAL and shared-memory files, and
    // started afresh. What it held only made skips possible; without it documents are redone.
    const std::string aside = path + ".damaged-" + std::to_string(wall_clock_ms());
    for (const char* ext : {"", "-wal", "-shm"}) {
      std::string from = path + ext;
      if (::rename(from.c_str(), (aside + ext).c_str()) != 0 && errno != ENOENT) {
        return errno_error("lineage store: move the damaged " + from + " aside", errno);
      }
    }
    if (note != nullptr) {
      *note = st.error().message + "; moved aside to " + aside + " and started empty";
    }
  }
  return make_error(ErrorCode::kInternal, "lineage store " + path + ": cannot open");
}

Result<LineageStore::Connection*> LineageStore::acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      Connection* c = free_.back();
      free_.pop_back();
      return c;
    }
  }
  // One connection per thread that uses the store at once (readers, writers, plan): a handful.
  auto c = std::make_unique<Connection>();
  Status st = open_connection(*c);
  if (!st) return st.error();
  std::lock_guard<std::mutex> lock(mu_);
  all_.push_back(std::move(c));
  return all_.back().get();
}

void LineageStore::release(Connection* c) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(c);
}

Result<std::unique_ptr<LineageStore::Reader>> LineageStore::reader() {
  Result<Connection*> c = acquire();
  if (!c) return c.error();
  return std::unique_ptr<Reader>(new Reader(*this, *c));
}

LineageStore::Reader::~Reader() {
  auto* conn = static_cast<Connection*>(c_);
  if (in_transaction_ > 0) sqlite3_exec(conn->db, "COMMIT", nullptr, nullptr, nullptr);
  store_.release(conn);
}

Result<std::optional<LineageRow>> LineageStore::Reader::lookup(const std::string& output) {
  auto* conn = static_cast<Connection*>(c_);
  // A fresh snapshot now and then, so that a long walk does not hold the WAL from being
  // checkpointed for its whole length.
  if (in_transaction_ >= kReaderBatch) {
    sqlite3_exec(conn->db, "COMMIT", nullptr, nullptr, nullptr);
    in_transaction_ = 0;
  }
  if (in_transaction_ == 0) {
    int rc = sqlite3_exec(conn->db, "BEGIN", nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return sqlite_error(store_.path_, "begin", conn->db, rc);
  }
  ++in_transaction_;
  std::optional<LineageRow> row;
  Statement st(conn->lookup);
  st.text(1, output);
  int rc = sqlite3_step(st.get());
  if (rc == SQLITE_ROW) {
    row = read_row(st.get());
    rc = SQLITE_DONE;
  }
  if (rc != SQLITE_DONE) return sqlite_error(store_.path_, "lookup", conn->db, rc);
  return row;
}

Result<uint64_t> LineageStore::count_under(const std::string& dir) {
  Result<Connection*> c = acquire();
  if (!c) return c.error();
  Connection* conn = *c;
  std::string base = dir;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  Prepared q(conn->db, "SELECT count(*) FROM lineage WHERE output >= ?1 AND output < ?2");
  int rc = q.rc;
  uint64_t n = 0;
  if (rc == SQLITE_OK) {
    Statement st(q.s);
    st.text(1, base == "/" ? "/" : base + "/");
    st.text(2, base == "/" ? "0" : base + "0");
    if ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
      n = static_cast<uint64_t>(sqlite3_column_int64(st.get(), 0));
      rc = SQLITE_DONE;
    }
  }
  Result<uint64_t> out =
      rc == SQLITE_DONE ? Result<uint64_t>(n) : sqlite_error(path_, "count", conn->db, rc);
  release(conn);
  return out;
}

Result<std::optional<LineageRow>> LineageStore::lookup(const std::string& output,
                                                       bool with_chain_json) {
  Result<Connection*> c = acquire();
  if (!c) return c.error();
  Connection* conn = *c;
  std::optional<LineageRow> row;
  int rc;
  {
    Statement st(conn->lookup);
    st.text(1, output);
    rc = sqlite3_step(st.get());
    if (rc == SQLITE_ROW) {
      row = read_row(st.get());
      rc = SQLITE_DONE;
    }
  }
  if (rc == SQLITE_DONE && row && with_chain_json) {
    Statement st(conn->chain_of);
    st.text(1, row->chain);
    rc = sqlite3_step(st.get());
    if (rc == SQLITE_ROW) {
      row->chain_json = column_text(st.get(), 0);
      rc = SQLITE_DONE;
    }
  }
  Result<std::optional<LineageRow>> out = rc == SQLITE_DONE
                                              ? Result<std::optional<LineageRow>>(std::move(row))
                                              : sqlite_error(path_, "lookup", conn->db, rc);
  release(conn);
  return out;
}

namespace {

// Runs `body` in one write transaction (BEGIN IMMEDIATE: the write lock is taken at once, so
// a busy store waits in busy_timeout rather than failing mid-way); rolls back on failure.
Status in_transaction(sqlite3* db, const std::string& path, const std::function<int()>& body) {
  int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return sqlite_error(path, "begin", db, rc);
  rc = body();
  if (rc == SQLITE_OK || rc == SQLITE_DONE) {
    rc = sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) return ok();
  }
  Error e = sqlite_error(path, "write", db, rc);
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  return e;
}

}  // namespace

Status LineageStore::write(const std::function<int(sqlite3*)>& body) {
  Result<Connection*> c = acquire();
  if (!c) return c.error();
  Connection* conn = *c;
  Status result;
  {
    std::lock_guard<std::mutex> writer(write_mu_);
    result = in_transaction(conn->db, path_, [&] { return body(conn->db); });
  }
  release(conn);
  return result;
}

Status LineageStore::upsert(const std::vector<LineageRow>& rows) {
  if (rows.empty()) return ok();
  return write([&](sqlite3* db) -> int {
    Prepared row(db, std::string("INSERT OR REPLACE INTO lineage (") + kColumns +
                         ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)");
    if (row.rc != SQLITE_OK) return row.rc;
    Prepared chain(db, "INSERT OR IGNORE INTO chains (fingerprint, canonical) VALUES (?1,?2)");
    if (chain.rc != SQLITE_OK) return chain.rc;
    const std::string* last_chain = nullptr;
    for (const LineageRow& r : rows) {
      if (!r.chain_json.empty() && (last_chain == nullptr || *last_chain != r.chain)) {
        Statement st(chain.s);
        st.text(1, r.chain);
        st.text(2, r.chain_json);
        if (int rc = sqlite3_step(st.get()); rc != SQLITE_DONE) return rc;
        last_chain = &r.chain;
      }
      Statement st(row.s);
      st.text(1, r.output);
      st.text(2, r.job_id);
      st.text(3, r.input);
      st.text(4, r.input_sha256);
      bind_stamp(st, 5, r.input_stamp);
      st.text(9, r.chain);
      st.integer(10, r.finished_at_ms);
      st.text(11, r.output_sha256);
      bind_stamp(st, 12, r.output_stamp);
      if (int rc = sqlite3_step(st.get()); rc != SQLITE_DONE) return rc;
    }
    return SQLITE_OK;
  });
}

Status LineageStore::refresh_input_stamps(const std::vector<LineageRow>& rows) {
  if (rows.empty()) return ok();
  return write([&](sqlite3* db) -> int {
    Prepared update(db,
                    "UPDATE lineage SET input_size=?2, input_mtime_ns=?3, input_ino=?4, "
                    "input_dev=?5 WHERE output=?1 AND input_sha256=?6 AND chain=?7");
    if (update.rc != SQLITE_OK) return update.rc;
    for (const LineageRow& r : rows) {
      Statement st(update.s);
      st.text(1, r.output);
      bind_stamp(st, 2, r.input_stamp);
      st.text(6, r.input_sha256);
      st.text(7, r.chain);
      if (int rc = sqlite3_step(st.get()); rc != SQLITE_DONE) return rc;
    }
    return SQLITE_OK;
  });
}

Status LineageStore::for_each_under(const std::string& dir,
                                    const std::function<bool(const LineageRow&)>& fn) {
  Result<Connection*> c = acquire();
  if (!c) return c.error();
  Connection* conn = *c;
  // Every path beneath DIR starts with "DIR/" and sorts below "DIR0" ('0' follows '/').
  std::string base = dir;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  const std::string low = base == "/" ? "/" : base + "/";
  const std::string high = base == "/" ? "0" : base + "0";
  Prepared q(conn->db, std::string("SELECT ") + kColumns +
                           " FROM lineage WHERE output >= ?1 AND output < ?2 ORDER BY output");
  int rc = q.rc;
  if (rc == SQLITE_OK) {
    Statement st(q.s);
    st.text(1, low);
    st.text(2, high);
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
      if (!fn(read_row(st.get()))) {
        rc = SQLITE_DONE;
        break;
      }
    }
  }
  Status out = rc == SQLITE_DONE ? ok() : Status(sqlite_error(path_, "scan", conn->db, rc));
  release(conn);
  return out;
}

Result<std::vector<std::string>> LineageStore::outputs_after(const std::string& after,
                                                             size_t limit) {
  Result<Connection*> c = acquire();
  if (!c) return c.error();
  Connection* conn = *c;
  std::vector<std::string> out;
  Prepared q(conn->db, "SELECT output FROM lineage WHERE output > ?1 ORDER BY output LIMIT ?2");
  int rc = q.rc;
  if (rc == SQLITE_OK) {
    Statement st(q.s);
    st.text(1, after);
    st.integer(2, static_cast<int64_t>(limit));
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) out.push_back(column_text(st.get(), 0));
  }
  Result<std::vector<std::string>> result = rc == SQLITE_DONE
                                                ? Result<std::vector<std::string>>(std::move(out))
                                                : sqlite_error(path_, "scan", conn->db, rc);
  release(conn);
  return result;
}

Status LineageStore::remove(const std::vector<std::string>& outputs) {
  if (outputs.empty()) return ok();
  return write([&](sqlite3* db) -> int {
    Prepared del(db, "DELETE FROM lineage WHERE output = ?1");
    if (del.rc != SQLITE_OK) return del.rc;
    for (const std::string& o : outputs) {
      Statement st(del.s);
      st.text(1, o);
      if (int rc = sqlite3_step(st.get()); rc != SQLITE_DONE) return rc;
    }
    // Chains no row names any more.
    return sqlite3_exec(db,
                        "DELETE FROM chains WHERE fingerprint NOT IN (SELECT DISTINCT chain FROM "
                        "lineage)",
                        nullptr, nullptr, nullptr);
  });
}

Result<uint64_t> LineageStore::count() {
  Result<Connection*> c = acquire();
  if (!c) return c.error();
  Connection* conn = *c;
  Prepared q(conn->db, "SELECT count(*) FROM lineage");
  int rc = q.rc;
  uint64_t n = 0;
  if (rc == SQLITE_OK && (rc = sqlite3_step(q.s)) == SQLITE_ROW) {
    n = static_cast<uint64_t>(sqlite3_column_int64(q.s, 0));
    rc = SQLITE_DONE;
  }
  Result<uint64_t> out =
      rc == SQLITE_DONE ? Result<uint64_t>(n) : sqlite_error(path_, "count", conn->db, rc);
  release(conn);
  return out;
}

Result<LineagePruneResult> prune_missing_outputs(LineageStore& store, std::string& cursor,
                                                 size_t max_checked,
                                                 const std::atomic<bool>* stop) {
  constexpr size_t kBatch = 1000;
  LineagePruneResult r;
  for (;;) {
    if ((stop != nullptr && stop->load()) || r.checked >= max_checked) {
      r.more = true;
      return r;
    }
    Result<std::vector<std::string>> batch = store.outputs_after(cursor, kBatch);
    if (!batch) return batch.error();
    if (batch->empty()) {
      cursor.clear();  // the end: the next pass starts over
      return r;
    }
    std::vector<std::string> gone;
    for (const std::string& output : *batch) {
      struct stat st;
      if (::lstat(output.c_str(), &st) != 0 && (errno == ENOENT || errno == ENOTDIR)) {
        gone.push_back(output);
      }
    }
    r.checked += batch->size();
    cursor = batch->back();
    if (Status st = store.remove(gone); !st) return st.error();
    r.removed += gone.size();
  }
}

}  // namespace docpipe
