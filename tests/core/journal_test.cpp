// JobJournal on real files: records round-trip, a torn tail is dropped (never fatal), damage in
// the middle is counted and skipped (the records after it are kept), intent records are told
// apart, and appends after a reopen continue from the last good record.

#include "core/journal.h"

#include <doctest/doctest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using docpipe::JobJournal;

namespace {

// Says why a test cannot run here and passes, unless DOCPIPE_REQUIRE_ALL_TESTS is set.
void skip_test(const std::string& reason) {
  if (std::getenv("DOCPIPE_REQUIRE_ALL_TESTS") != nullptr) {
    FAIL("cannot run, and DOCPIPE_REQUIRE_ALL_TESTS is set: " << reason);
  }
  MESSAGE("skipped: " << reason);
}

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

// Mounts an 8 KiB tmpfs below d.root (a file system to fill), or says why not and returns "".
// The test unmounts it once it has read what it wrote there.
std::string mount_small_tmpfs(const JournalDir& d) {
  if (::geteuid() != 0) {
    skip_test("mounting a tmpfs needs root");
    return "";
  }
  const std::string mnt = d.root + "/small";
  fs::create_directory(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=8k") != 0) {
    skip_test(std::string("cannot mount a tmpfs: ") + std::strerror(errno));
    return "";
  }
  return mnt;
}

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

TEST_CASE("journal: a single bad record in the middle is counted as damage and skipped") {
  JournalDir d;
  {
    JobJournal j;
    REQUIRE(j.create(d.path, "job-3", 1));
    REQUIRE(j.append(R"({"input":"/a"})"));
    REQUIRE(j.close(false));
  }
  const uint64_t damage_at = d.contents().size();
  std::string bad = JobJournal::encode(R"({"input":"/b"})");
  bad[12] = bad[12] == 'x' ? 'y' : 'x';  // flip a payload byte: the CRC no longer matches
  d.append_raw(bad);
  d.append_raw(JobJournal::encode(R"({"input":"/c"})"));
  auto c = JobJournal::load(d.path);
  REQUIRE(c);
  CHECK_FALSE(c->torn);  // not the last record: damage, not a crash
  REQUIRE(c->records.size() == 2);
  CHECK(c->records[1] == R"({"input":"/c"})");
  CHECK(c->damage.damaged_regions == 1);
  CHECK(c->damage.damaged_bytes == bad.size());
  CHECK(c->damage.first_damage_offset == damage_at);
  CHECK(c->damage.records_lost == 1);
  CHECK(c->damage.records_after_damage == 1);
  CHECK(c->good_bytes == d.contents().size());
}

TEST_CASE("journal: damage mid-journal says how many records were lost and keeps the ones after") {
  JournalDir d;
  constexpr int kRecords = 1200;
  std::vector<std::string> payloads;
  {
    JobJournal j;
    REQUIRE(j.create(d.path, "job-5", 7));
    for (int i = 0; i < kRecords; ++i) {
      payloads.push_back(R"({"input":"/in/doc-)" + std::to_string(1000 + i) +
                         R"(.txt","state":"succeeded"})");
      REQUIRE(j.append(payloads.back()));
    }
    REQUIRE(j.close(false));
  }
  // A 4 KiB block of zeros over the middle, as a bad disk block leaves it: newlines included,
  // so the damaged stretch runs from inside one record into another.
  std::string text = d.contents();
  const size_t at = text.size() / 3 + 17;
  const size_t header_len = text.find('\n') + 1;
  const size_t record_len = JobJournal::encode(payloads[0]).size();
  text.replace(at, 4096, std::string(4096, '\0'));
  { std::ofstream(d.path, std::ios::binary | std::ios::trunc) << text; }
  // Records wholly or partly under the block are lost, the others are all read.
  const size_t first_hit = (at - header_len) / record_len;
  const size_t last_hit = (at + 4096 - 1 - header_len) / record_len;
  const size_t lost = last_hit - first_hit + 1;
  auto c = JobJournal::load(d.path);
  REQUIRE(c);
  CHECK(c->submitted_at_ms == 7);
  CHECK_FALSE(c->torn);
  CHECK(c->records.size() == kRecords - lost);
  CHECK(c->records.front() == payloads.front());
  CHECK(c->records.back() == payloads.back());
  CHECK(c->records[first_hit] == payloads[last_hit + 1]);  // resynchronised right after the block
  CHECK(c->damage.damaged_regions == 1);
  CHECK(c->damage.first_damage_offset == header_len + first_hit * record_len);
  CHECK(c->damage.damaged_bytes == lost * record_len);
  CHECK(c->damage.records_lost == lost);
  CHECK(c->damage.records_after_damage == kRecords - 1 - last_hit);
  std::string said = c->damage.describe();
  CHECK(said.find("about " + std::to_string(lost) + " record(s) lost") != std::string::npos);
  CHECK(said.find(std::to_string(kRecords - 1 - last_hit) + " later record(s) read") !=
        std::string::npos);
}

TEST_CASE("journal: a record whose start was lost with a newline is found inside the bad line") {
  JournalDir d;
  {
    JobJournal j;
    REQUIRE(j.create(d.path, "job-6", 1));
    REQUIRE(j.append(R"({"input":"/a"})"));
    REQUIRE(j.append(R"({"input":"/b"})"));
    REQUIRE(j.append(R"({"input":"/c"})"));
    REQUIRE(j.close(false));
  }
  std::string text = d.contents();
  // The newline ending /a's record becomes garbage: /a is lost, /b starts mid-line.
  size_t a_end = text.find(R"({"input":"/a"})") + std::string(R"({"input":"/a"})").size();
  text[a_end] = 'Z';
  std::ofstream(d.path, std::ios::binary | std::ios::trunc) << text;
  auto c = JobJournal::load(d.path);
  REQUIRE(c);
  REQUIRE(c->records.size() == 2);
  CHECK(c->records[0] == R"({"input":"/b"})");
  CHECK(c->damage.damaged_regions == 1);
  CHECK(c->damage.damaged_bytes == JobJournal::encode(R"({"input":"/a"})").size());
  CHECK(c->damage.records_lost == 1);
  CHECK(c->damage.records_after_damage == 2);
}

TEST_CASE("journal: a torn tail is told apart from damage at the end") {
  JournalDir d;
  {
    JobJournal j;
    REQUIRE(j.create(d.path, "job-7", 1));
    REQUIRE(j.append(R"({"input":"/a"})"));
    REQUIRE(j.close(false));
  }
  const uint64_t good = d.contents().size();
  std::string b = JobJournal::encode(R"({"input":"/b"})");
  d.append_raw(b.substr(0, 7));
  auto torn = JobJournal::load(d.path);
  REQUIRE(torn);
  CHECK(torn->torn);
  CHECK(torn->damage.torn_bytes == 7);
  CHECK_FALSE(torn->damage.damaged());
  CHECK(torn->good_bytes == good);
  CHECK(torn->damage.describe() == "a torn last record (7 bytes) dropped");

  // Two unreadable lines at the end are more than one record torn by a crash.
  d.append_raw("\n" + std::string(30, 'x') + "\n");
  auto damaged = JobJournal::load(d.path);
  REQUIRE(damaged);
  CHECK_FALSE(damaged->torn);
  CHECK(damaged->damage.damaged());
  CHECK(damaged->damage.damaged_bytes == 7 + 1 + 31);
  CHECK(damaged->damage.records_lost >= 2);
  CHECK(damaged->good_bytes == good);
}

TEST_CASE("journal: a line past the 1 MiB record limit is damage, and the records after it read") {
  JournalDir d;
  {
    JobJournal j;
    REQUIRE(j.create(d.path, "job-10", 1));
    REQUIRE(j.append(R"({"input":"/a"})"));
    REQUIRE(j.close(false));
  }
  // A record with a valid checksum, but longer than any the daemon writes: not held whole, and
  // not trusted.
  const std::string huge = JobJournal::encode(R"({"input":")" + std::string(2u << 20, 'h') + "\"}");
  d.append_raw(huge);
  d.append_raw(JobJournal::encode(R"({"input":"/b"})"));
  auto c = JobJournal::load(d.path);
  REQUIRE(c);
  REQUIRE(c->records.size() == 2);
  CHECK(c->records[1] == R"({"input":"/b"})");
  CHECK(c->damage.damaged_bytes == huge.size());
  CHECK(c->damage.damaged_regions == 1);
}

TEST_CASE("journal: intent records are read apart from document records") {
  JournalDir d;
  {
    JobJournal j;
    REQUIRE(j.create(d.path, "job-8", 1));
    REQUIRE(j.append(R"({"intent":"commit","input":"/a","output":"/o/a","sha256":"ab"})"));
    REQUIRE(j.append(R"({"input":"/a","state":"succeeded"})"));
    REQUIRE(j.append(R"({"intent":"commit","input":"/b","output":"/o/b","sha256":"cd"})"));
    REQUIRE(j.close(false));
  }
  CHECK(JobJournal::is_intent(R"({"intent":"commit"})"));
  CHECK_FALSE(JobJournal::is_intent(R"({"input":"/a"})"));
  auto c = JobJournal::load(d.path);
  REQUIRE(c);
  REQUIRE(c->records.size() == 1);
  REQUIRE(c->intents.size() == 2);
  CHECK(c->intents[1] == R"({"intent":"commit","input":"/b","output":"/o/b","sha256":"cd"})");
  std::vector<std::string> order;
  auto scanned = JobJournal::scan(d.path, [&](std::string_view p) { order.emplace_back(p); });
  REQUIRE(scanned);
  CHECK(scanned->records == 1);
  CHECK(scanned->intents == 2);
  REQUIRE(order.size() == 3);
  CHECK(JobJournal::is_intent(order[0]));
  CHECK_FALSE(JobJournal::is_intent(order[1]));
}

TEST_CASE("journal: a write that fails for lack of space leaves no partial record behind") {
  JournalDir d;
  const std::string mnt = mount_small_tmpfs(d);
  if (mnt.empty()) return;
  const std::string path = mnt + "/job.journal";
  size_t good_records = 0;
  docpipe::Status last;
  {
    JobJournal j;
    REQUIRE(j.create(path, "job-9", 1));
    const std::string payload = R"({"input":")" + std::string(1000, 'p') + R"("})";
    for (int i = 0; i < 100; ++i) {
      last = j.append(payload);
      if (!last) break;
      ++good_records;
    }
    REQUIRE_FALSE(last);
    CHECK(last.error().message.find("No space left on device") != std::string::npos);
    CHECK(last.error().message.find(path) != std::string::npos);
  }
  auto c = JobJournal::load(path);
  ::umount2(mnt.c_str(), MNT_DETACH);
  REQUIRE(c);
  CHECK(c->records.size() == good_records);
  CHECK_FALSE(c->torn);
  CHECK_FALSE(c->damage.damaged());
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

TEST_CASE("journal: a batch of records goes in one write and reads back as separate records") {
  JournalDir d;
  {
    JobJournal j;
    REQUIRE(j.create(d.path, "job-2", 1));
    REQUIRE(j.append(R"({"input":"/first"})"));
    REQUIRE(j.append_all({R"({"input":"/a"})", R"({"input":"/b"})", R"({"input":"/c"})"}));
    REQUIRE(j.append_all({}));  // nothing to write
    REQUIRE(j.append(R"({"input":"/last"})"));
    REQUIRE(j.close(/*durable=*/false));
  }
  auto c = JobJournal::load(d.path);
  REQUIRE(c);
  CHECK(c->records == std::vector<std::string>{R"({"input":"/first"})", R"({"input":"/a"})",
                                               R"({"input":"/b"})", R"({"input":"/c"})",
                                               R"({"input":"/last"})"});
  CHECK_FALSE(c->torn);
  CHECK(c->good_bytes == d.contents().size());
}

TEST_CASE("journal: a batch that does not fit leaves none of its records behind") {
  JournalDir d;
  const std::string mnt = mount_small_tmpfs(d);
  if (mnt.empty()) return;
  const std::string path = mnt + "/job.journal";
  docpipe::Status written;
  {
    JobJournal j;
    REQUIRE(j.create(path, "job-10", 1));
    REQUIRE(j.append(R"({"input":"/kept"})"));
    // Three records of ~3 KB: about 9 KB in one write, past what the 8 KiB file system holds,
    // so the write is short (part of the batch went in) and must be cut back off.
    const std::string payload = R"({"input":")" + std::string(3000, 'p') + R"("})";
    written = j.append_all({payload, payload, payload});
    REQUIRE_FALSE(written);
    CHECK(written.error().message.find("No space left on device") != std::string::npos);
    // The journal goes on after the failed batch: a small record still fits.
    CHECK(j.append(R"({"input":"/after"})"));
  }
  auto c = JobJournal::load(path);
  ::umount2(mnt.c_str(), MNT_DETACH);
  REQUIRE(c);
  CHECK(c->records == std::vector<std::string>{R"({"input":"/kept"})", R"({"input":"/after"})"});
  CHECK_FALSE(c->torn);
  CHECK_FALSE(c->damage.damaged());
}
