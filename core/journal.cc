#include "core/journal.h"

#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/fs_util.h"

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

}  // namespace

JobJournal::~JobJournal() {
  if (file_ != nullptr) std::fclose(file_);
}

std::string JobJournal::encode(const std::string& payload) {
  char prefix[10];
  std::snprintf(prefix, sizeof prefix, "%08x ", checksum(payload));
  std::string record(prefix, 9);
  record += payload;
  record += '\n';
  return record;
}

Result<JournalScan> JobJournal::scan(
    const std::string& path, const std::function<void(std::string_view payload)>& record) {
  FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr) return errno_error("open journal " + path, errno);
  JournalScan out;
  bool header = true;
  std::string line;
  char buf[65536];
  bool stop = false;
  while (!stop) {
    // One line at a time, however long (a record is one line).
    line.clear();
    bool complete = false;
    while (std::fgets(buf, sizeof buf, f) != nullptr) {
      line += buf;
      if (!line.empty() && line.back() == '\n') {
        complete = true;
        break;
      }
    }
    if (line.empty()) break;  // clean end of file
    std::string_view rec = line;
    uint32_t expected = 0;
    if (!complete || rec.size() < 10 || rec[8] != ' ' || !parse_hex8(rec.substr(0, 8), expected)) {
      out.torn = true;
      break;
    }
    std::string_view payload = rec.substr(9, rec.size() - 10);
    if (checksum(payload) != expected) {
      out.torn = true;
      break;
    }
    if (header) {
      nlohmann::json h = nlohmann::json::parse(payload, nullptr, false);
      if (!h.is_object() || h.value("journal", 0) != 1) {
        std::fclose(f);
        return make_error(ErrorCode::kCorruptInput, path + ": not a docpipe journal");
      }
      out.submitted_at_ms = h.value("submitted_at_ms", int64_t{0});
      header = false;
    } else {
      record(payload);
      ++out.records;
    }
    out.good_bytes += rec.size();
  }
  std::fclose(f);
  if (header) return make_error(ErrorCode::kCorruptInput, path + ": journal has no valid header");
  return out;
}

Result<JournalContents> JobJournal::load(const std::string& path) {
  JournalContents out;
  Result<JournalScan> scanned =
      scan(path, [&out](std::string_view payload) { out.records.emplace_back(payload); });
  if (!scanned) return scanned.error();
  out.submitted_at_ms = scanned->submitted_at_ms;
  out.good_bytes = scanned->good_bytes;
  out.torn = scanned->torn;
  return out;
}

Status JobJournal::create(const std::string& path, const std::string& id,
                          int64_t submitted_at_ms) {
  file_ = std::fopen(path.c_str(), "we");
  if (file_ == nullptr) return errno_error("create journal " + path, errno);
  path_ = path;
  std::setvbuf(file_, nullptr, _IOFBF, 1 << 16);
  nlohmann::json header{{"journal", 1}, {"id", id}, {"submitted_at_ms", submitted_at_ms}};
  std::string record = encode(header.dump());
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size() ||
      std::fflush(file_) != 0) {
    return errno_error("write journal " + path, errno);
  }
  return ok();
}

Status JobJournal::reopen(const std::string& path, uint64_t good_bytes) {
  if (::truncate(path.c_str(), static_cast<off_t>(good_bytes)) != 0) {
    return errno_error("truncate torn journal " + path, errno);
  }
  file_ = std::fopen(path.c_str(), "ae");
  if (file_ == nullptr) return errno_error("open journal " + path, errno);
  path_ = path;
  std::setvbuf(file_, nullptr, _IOFBF, 1 << 16);
  return ok();
}

Status JobJournal::append(const std::string& payload) {
  if (file_ == nullptr) return make_error(ErrorCode::kInternal, "journal is not open");
  std::string record = encode(payload);
  // Flushed at once (not fsynced): a record in the page cache survives a daemon crash.
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size() ||
      std::fflush(file_) != 0) {
    return errno_error("write journal " + path_, errno);
  }
  return ok();
}

Status JobJournal::sync(bool durable) {
  if (file_ == nullptr) return ok();
  if (std::fflush(file_) != 0) return errno_error("flush journal " + path_, errno);
  if (durable && ::fdatasync(fileno(file_)) != 0) return errno_error("fsync journal " + path_, errno);
  return ok();
}

Status JobJournal::close(bool durable) {
  Status st = sync(durable);
  if (file_ != nullptr) std::fclose(file_);
  file_ = nullptr;
  return st;
}

}  // namespace docpipe
