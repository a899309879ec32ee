// JobJournal on real files: records round-trip, a torn or corrupt tail is dropped (never fatal),
// and appends after a reopen continue from the last good record.

#include "core/journal.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;
using docpipe::JobJournal;

namespace {

struct JournalDir {
  JournalDir() {
    char tmpl[] = "/tmp/docpipe-journal-XXXXXX";
    root = ::mkdtemp(tmpl);
    path = root + "/job.journal";
  }
  ~JournalDir() { fs::remove_all(root); }
  void append_raw(const std::string& bytes) const {
    std::ofstream(path, std::ios::app | std::ios::binary) << bytes;
  }
  std::string contents() const {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string root, path;
};

}  // namespace

TEST_CASE("journal: records written are read back in order with the header's submit time") {
  JournalDir d;
  {
    JobJournal j;
    REQUIRE(j.create(d.path, "job-1", 1234));
    REQUIRE(j.append(R"({"input":"/a","state":"succeeded"})"));
    REQUIRE(j.append(R"({"input":"/b","state":"failed"})"));
    REQUIRE(j.close(/*durable=*/true));
  }
  auto c = JobJournal::load(d.path);
  REQUIRE(c);
  CHECK(c->submitted_at_ms == 1234);
  REQUIRE(c->records.size() == 2);
  CHECK(c->records[0] == R"({"input":"/a","state":"succeeded"})");
  CHECK(c->records[1] == R"({"input":"/b","state":"failed"})");
  CHECK_FALSE(c->torn);
  CHECK(c->good_bytes == d.contents().size());
}

TEST_CASE("journal: a record cut short by a crash is dropped, the rest kept") {
  JournalDir d;
  {
    JobJournal j;
    REQUIRE(j.create(d.path, "job-2", 1));
    REQUIRE(j.append(R"({"input":"/a"})"));
    REQUIRE(j.close(false));
  }
  std::string whole = JobJournal::encode(R"({"input":"/b"})");
  d.append_raw(whole.substr(0, whole.size() / 2));  // torn: no newline
  auto c = JobJournal::load(d.path);
  REQUIRE(c);
  CHECK(c->torn);
  REQUIRE(c->records.size() == 1);
  CHECK(c->records[0] == R"({"input":"/a"})");

  // Reopening cuts the torn tail; the next record lands right after the good prefix.
  {
    JobJournal j;
    REQUIRE(j.reopen(d.path, c->good_bytes));
    REQUIRE(j.append(R"({"input":"/c"})"));
    REQUIRE(j.close(false));
  }
  auto again = JobJournal::load(d.path);
  REQUIRE(again);
  CHECK_FALSE(again->torn);
  REQUIRE(again->records.size() == 2);
  CHECK(again->records[1] == R"({"input":"/c"})");
}

TEST_CASE("journal: a record whose checksum does not match ends the valid prefix") {
  JournalDir d;
  {
    JobJournal j;
    REQUIRE(j.create(d.path, "job-3", 1));
    REQUIRE(j.append(R"({"input":"/a"})"));
    REQUIRE(j.close(false));
  }
  std::string bad = JobJournal::encode(R"({"input":"/b"})");
  bad[12] = bad[12] == 'x' ? 'y' : 'x';  // flip a payload byte: the CRC no longer matches
  d.append_raw(bad);
  d.append_raw(JobJournal::encode(R"({"input":"/c"})"));
  auto c = JobJournal::load(d.path);
  REQUIRE(c);
  CHECK(c->torn);
  REQUIRE(c->records.size() == 1);  // nothing after a bad record is trusted
}

TEST_CASE("journal: a file without a valid header is refused, a missing one is not found") {
  JournalDir d;
  d.append_raw("garbage\n");
  auto c = JobJournal::load(d.path);
  REQUIRE_FALSE(c);
  CHECK(c.error().code == docpipe::ErrorCode::kCorruptInput);
  auto missing = JobJournal::load(d.root + "/nope.journal");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == docpipe::ErrorCode::kNotFound);
}
