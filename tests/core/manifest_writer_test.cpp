// The manifest writer (core/manifest_writer.h): the document records of a journal, byte for byte
// and in order, intents left out, a superseded input listed once by its last record; a failure
// leaves neither a temp file nor a partial manifest.

#include "core/manifest_writer.h"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/journal.h"
#include "core/journal_record.h"
#include "tests/support/temp_folder.h"

namespace docpipe {
namespace {

namespace fs = std::filesystem;

struct ManifestDir : test::TempFolder {
  ManifestDir() : TempFolder("/tmp", "manifest") {}
  void write_journal(const std::vector<std::string>& payloads) const {
    JobJournal j;
    REQUIRE(j.create(journal, "job", 5));
    for (const auto& p : payloads) REQUIRE(j.append(p));
    REQUIRE(j.close(false));
  }
  const std::string root = TempFolder::root();
  const std::string journal = root + "/job.journal";
  const std::string manifest = root + "/job.manifest.jsonl";
};

std::string doc(const std::string& input, RecordState state = RecordState::kSucceeded,
                const std::string& error = "") {
  return DocumentRecord{.input = input,
                        .output = "/out" + input,
                        .state = state,
                        .bytes_in = 1,
                        .bytes_out = 2,
                        .sha256 = "",
                        .attempts = 1,
                        .duration_seconds = 0.125,
                        .error = error}
      .to_json();
}

std::string intent(const std::string& input) {
  return IntentRecord{.input = input, .output = "/out" + input, .sha256 = "ab"}.to_json();
}

TEST_CASE("manifest writer: one line per document record, as journalled, intents left out") {
  for (bool durable : {false, true}) {
    CAPTURE(durable);
    ManifestDir d;
    // A hand-written record with a field order and a field of its own is copied unchanged.
    const std::string odd = R"({"state":"succeeded","input":"/odd","note":"kept"})";
    d.write_journal({intent("/a"), doc("/a"), doc("/b", RecordState::kFailed, "bad\n"),
                     intent("/c"), odd, doc("/d", RecordState::kSkipped)});
    REQUIRE(write_manifest(d.journal, d.manifest, {}, durable));
    CHECK(ManifestDir::read(d.manifest) ==
          doc("/a") + "\n" + doc("/b", RecordState::kFailed, "bad\n") + "\n" + odd + "\n" +
              doc("/d", RecordState::kSkipped) + "\n");
    CHECK(d.names(d.root) == std::vector<std::string>{"job.journal", "job.manifest.jsonl"});
  }
}

TEST_CASE("manifest writer: an input done more than once is listed once, by its last record") {
  ManifestDir d;
  d.write_journal({doc("/a", RecordState::kFailed, "first"), doc("/b"),
                   doc("/a", RecordState::kFailed, "second"), doc("/c"), doc("/a"),
                   doc("/c", RecordState::kSkipped)});
  REQUIRE(write_manifest(d.journal, d.manifest, {"/a", "/c"}, false));
  CHECK(ManifestDir::read(d.manifest) ==
        doc("/b") + "\n" + doc("/a") + "\n" + doc("/c", RecordState::kSkipped) + "\n");
  // Without the superseded set every record is listed (a job that never redid anything).
  REQUIRE(write_manifest(d.journal, d.manifest, {}, false));
  CHECK(ManifestDir::read(d.manifest).size() > 5 * doc("/a").size());
}

TEST_CASE("manifest writer: an existing manifest is replaced whole") {
  ManifestDir d;
  std::ofstream(d.manifest) << "an older, longer manifest that must not show through\n";
  d.write_journal({doc("/a")});
  REQUIRE(write_manifest(d.journal, d.manifest, {}, true));
  CHECK(ManifestDir::read(d.manifest) == doc("/a") + "\n");
}

TEST_CASE("manifest writer: an unreadable journal leaves no manifest and no temp file") {
  ManifestDir d;
  Status st = write_manifest(d.journal, d.manifest, {}, false);  // no journal at all
  REQUIRE_FALSE(st);
  CHECK(st.error().code == ErrorCode::kNotFound);
  std::ofstream(d.journal) << "not a journal\n";
  CHECK_FALSE(write_manifest(d.journal, d.manifest, {}, false));
  CHECK_FALSE(write_manifest(d.journal, d.manifest, {"/a"}, false));
  CHECK(d.names(d.root) == std::vector<std::string>{"job.journal"});
}

TEST_CASE("manifest writer: a manifest folder that is missing or full leaves nothing behind") {
  ManifestDir d;
  d.write_journal({doc("/a")});
  CHECK_FALSE(write_manifest(d.journal, d.root + "/missing/m.jsonl", {}, false));
  if (::geteuid() != 0) {
    MESSAGE("skipped the full-folder half: mounting a tmpfs needs root");
    return;
  }
  const std::string mnt = d.root + "/small";
  fs::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=64k") != 0) {
    MESSAGE("skipped the full-folder half: " << std::strerror(errno));
    return;
  }
  std::vector<std::string> many;
  for (int i = 0; i < 2000; ++i) many.push_back(doc("/doc-" + std::to_string(i)));  // ~300 KB
  d.write_journal(many);
  Status st = write_manifest(d.journal, mnt + "/m.jsonl", {}, true);
  CHECK_FALSE(st);
  if (!st) CHECK(st.error().sys_errno == ENOSPC);
  CHECK(d.names(mnt).empty());
  ::umount2(mnt.c_str(), MNT_DETACH);
}

}  // namespace
}  // namespace docpipe
