#include "core/journal.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <variant>

#include "core/fs_util.h"
#include "core/journal_record.h"

namespace docpipe {

namespace {

uint32_t checksum(std::string_view data) {
  return static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}

bool parse_hex8(std::string_view s, uint32_t& out) {
  if (s.size() != 8) return false;
  out = 0;
  for (char c : s) {
    out <<= 4;
    if (c >= '0' && c <= '9') {
      out |= static_cast<uint32_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      out |= static_cast<uint32_t>(c - 'a' + 10);
    } else {
      return false;
    }
  }
  return true;
}

constexpr size_t kMaxRecordBytes = 1u << 20;  // a longer line is damage, not a record
constexpr int kMaxResyncCandidates = 256;     // bounds the search inside one damaged line

// Reads a file line by line (a record is one line), whatever bytes it holds (NULs included).
// A line longer than kMaxRecordBytes is returned cut short, flagged `overlong`, with its full
// length, so that a damaged file cannot make the reader hold it whole.
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}
  // Returns false at end of file; `error` is set on a read error.
  bool next(std::string& line, uint64_t& length, bool& complete, bool& overlong, int& error) {
    line.clear();
    length = 0;
    complete = overlong = false;
    for (;;) {
      if (at_ == end_) {
        ssize_t n = ::read(fd_, buf_, sizeof buf_);
        if (n < 0) {
          if (errno == EINTR) continue;
          error = errno;
          return false;
        }
        if (n == 0) return length != 0;
        at_ = 0;
        end_ = static_cast<size_t>(n);
      }
      const char* start = buf_ + at_;
      const void* nl = std::memchr(start, '\n', end_ - at_);
      size_t take = nl ? static_cast<size_t>(static_cast<const char*>(nl) - start) + 1 : end_ - at_;
      length += take;
      size_t room = kMaxRecordBytes + 1 > line.size() ? kMaxRecordBytes + 1 - line.size() : 0;
      line.append(start, std::min(take, room));
      if (take > room) overlong = true;
      at_ += take;
      if (nl) {
        complete = true;
        return true;
      }
    }
  }

 private:
  int fd_;
  char buf_[65536];
  size_t at_ = 0, end_ = 0;
};

// The payload of a whole record line ("<crc> <payload>\n"), or nullopt if it is not one.
std::optional<std::string_view> record_payload(std::string_view line) {
  uint32_t expected = 0;
  if (line.size() < 10 || line.back() != '\n' || line[8] != ' ' ||
      !parse_hex8(line.substr(0, 8), expected)) {
    return std::nullopt;
  }
  std::string_view payload = line.substr(9, line.size() - 10);
  if (checksum(payload) != expected) return std::nullopt;
  return payload;
}

// Where a whole record starts inside a damaged line (its start was lost with a newline, say),
// or npos. Candidates are "<8 hex> {" positions; at most kMaxResyncCandidates are checked.
size_t find_record_inside(std::string_view line) {
  int tried = 0;
  for (size_t p = line.find(" {", 8); p != std::string_view::npos && tried < kMaxResyncCandidates;
       p = line.find(" {", p + 1)) {
    uint32_t ignored = 0;
    if (p < 8 || !parse_hex8(line.substr(p - 8, 8), ignored)) continue;
    ++tried;
    if (record_payload(line.substr(p - 8))) return p - 8;
  }
  return std::string_view::npos;
}

}  // namespace

std::string JournalDamage::describe() const {
  std::string out;
  if (damaged()) {
    out = "journal damaged: " + std::to_string(damaged_bytes) + " bytes unreadable in " +
          std::to_string(damaged_regions) + " place(s), the first at offset " +
          std::to_string(first_damage_offset) + " (about " + std::to_string(records_lost) +
          " record(s) lost); " + std::to_string(records_after_damage) + " later record(s) read";
  }
  if (torn()) {
    if (!out.empty()) out += "; ";
    out += "a torn last record (" + std::to_string(torn_bytes) + " bytes) dropped";
  }
  return out;
}

JobJournal::~JobJournal() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {

// Appends "CRC32 payload\n" (the CRC as 8 lower-case hex digits) to `out`.
void append_record(std::string& out, const std::string& payload) {
  static constexpr char kHex[] = "0123456789abcdef";
  const uint32_t crc = checksum(payload);
  char prefix[9];
  for (int i = 0; i < 8; ++i) prefix[i] = kHex[(crc >> (28 - 4 * i)) & 0xf];
  prefix[8] = ' ';
  out.append(prefix, sizeof prefix);
  out += payload;
  out += '\n';
}

}  // namespace

std::string JobJournal::encode(const std::string& payload) {
  std::string record;
  record.reserve(payload.size() + 10);
  append_record(record, payload);
  return record;
}

Result<JournalScan> JobJournal::scan(const std::string& path,
                                     const std::function<void(std::string_view payload)>& record) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error("open journal " + path, errno);
  JournalScan out;
  LineReader reader(fd);
  bool any_good = false;
  uint64_t offset = 0;         // of the current line
  uint64_t bad_start = 0;      // of the pending unreadable stretch
  uint64_t bad_bytes = 0;      // in it
  uint64_t bad_lines = 0;      // lines it touches
  uint64_t damaged_lines = 0;  // over all stretches found in the middle
  uint64_t good_record_bytes = 0, good_records = 0;
  std::string line;
  uint64_t length = 0;
  bool complete = false, overlong = false;
  int read_error = 0;
  JournalDamage& dmg = out.damage;

  auto settle_bad = [&] {  // a good record follows the pending bad stretch: it is damage
    if (bad_bytes == 0) return;
    if (dmg.damaged_regions == 0) dmg.first_damage_offset = bad_start;
    ++dmg.damaged_regions;
    dmg.damaged_bytes += bad_bytes;
    damaged_lines += bad_lines;
    bad_bytes = bad_lines = 0;
  };
  auto good = [&](std::string_view payload, uint64_t at, uint64_t size) -> Status {
    settle_bad();
    if (!any_good) {
      any_good = true;
      // The first readable record should be the header; if it was lost, the journal is still
      // read (the records are what matters). A record that does not parse is the caller's.
      Result<JournalRecord> first = parse_journal_record(payload);
      if (first && std::holds_alternative<JournalHeader>(*first)) {
        const JournalHeader& h = std::get<JournalHeader>(*first);
        if (h.version != JournalHeader::kVersion) {
          return make_error(ErrorCode::kCorruptInput, path + ": not a docpipe journal");
        }
        out.submitted_at_ms = h.submitted_at_ms;
        out.good_bytes = at + size;
        return ok();
      }
    }
    if (dmg.damaged_regions != 0) ++dmg.records_after_damage;
    if (is_intent(payload)) {
      ++out.intents;
    } else {
      ++out.records;
    }
    ++good_records;
    good_record_bytes += size;
    record(payload);
    out.good_bytes = at + size;
    return ok();
  };

  Status st = ok();
  while (st && reader.next(line, length, complete, overlong, read_error)) {
    std::string_view view(line);
    std::optional<std::string_view> payload;
    if (complete && !overlong) payload = record_payload(view);
    if (payload) {
      st = good(*payload, offset, length);
    } else {
      size_t inside = complete && !overlong ? find_record_inside(view) : std::string_view::npos;
      uint64_t lost = inside == std::string_view::npos ? length : inside;
      if (bad_bytes == 0) bad_start = offset;
      bad_bytes += lost;
      ++bad_lines;
      if (inside != std::string_view::npos) {
        st = good(*record_payload(view.substr(inside)), offset + inside, length - inside);
      }
    }
    offset += length;
  }
  ::close(fd);
  if (!st) return st.error();
  if (read_error != 0) return errno_error("read journal " + path, read_error);
  if (bad_bytes != 0) {
    if (bad_lines == 1) {
      out.torn = true;  // only the last record: a crash while it was written
      dmg.torn_bytes = bad_bytes;
    } else {
      settle_bad();  // several unreadable lines at the end: damage, not a crash
    }
  }
  if (dmg.damaged()) {
    uint64_t by_size =
        good_records != 0
            ? (dmg.damaged_bytes * good_records + good_record_bytes / 2) / good_record_bytes
            : damaged_lines;
    dmg.records_lost = std::max({damaged_lines, by_size, dmg.damaged_regions});
  }
  if (!any_good) {
    return make_error(ErrorCode::kCorruptInput, path + ": journal has no valid header");
  }
  return out;
}

Result<JournalContents> JobJournal::load(const std::string& path) {
  JournalContents out;
  Result<JournalScan> scanned = scan(path, [&out](std::string_view payload) {
    (is_intent(payload) ? out.intents : out.records).emplace_back(payload);
  });
  if (!scanned) return scanned.error();
  out.submitted_at_ms = scanned->submitted_at_ms;
  out.good_bytes = scanned->good_bytes;
  out.torn = scanned->torn;
  out.damage = scanned->damage;
  return out;
}

Status JobJournal::create(const std::string& path, const std::string& id, int64_t submitted_at_ms) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) return errno_error("create journal " + path, errno);
  path_ = path;
  size_ = 0;
  return append(JournalHeader{.id = id, .submitted_at_ms = submitted_at_ms}.to_json());
}

Status JobJournal::reopen(const std::string& path, uint64_t good_bytes) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) return errno_error("open journal " + path, errno);
  path_ = path;
  if (::ftruncate(fd_, static_cast<off_t>(good_bytes)) != 0) {
    return errno_error("truncate torn journal " + path, errno);
  }
  size_ = good_bytes;
  return ok();
}

Status JobJournal::append(const std::string& payload) { return write_records(encode(payload)); }

Status JobJournal::append_all(const std::vector<std::string>& payloads) {
  size_t bytes = 0;
  for (const std::string& p : payloads) bytes += p.size() + 10;
  std::string records;
  records.reserve(bytes);
  for (const std::string& p : payloads) append_record(records, p);
  return write_records(records);
}

Status JobJournal::write_records(const std::string& record) {
  if (fd_ < 0) return make_error(ErrorCode::kInternal, "journal is not open");
  if (record.empty()) return ok();
  std::string_view rest = record;
  while (!rest.empty()) {
    ssize_t n = ::write(fd_, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : ENOSPC;
      // Cut a partial record off again: a later append must not follow half a record.
      if (rest.size() != record.size() && ::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
        return errno_error("write journal " + path_ + " (and cut its partial record)", err);
      }
      return errno_error("write journal " + path_, err);
    }
    rest.remove_prefix(static_cast<size_t>(n));
  }
  size_ += record.size();
  return ok();
}

Status JobJournal::datasync() const {
  if (fd_ >= 0 && ::fdatasync(fd_) != 0) return errno_error("fsync journal " + path_, errno);
  return ok();
}

Status JobJournal::sync(bool durable) {
  if (!durable) return ok();
  return datasync();
}

Status JobJournal::close(bool durable) {
  Status st = sync(durable);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  return st;
}

}  // namespace docpipe
