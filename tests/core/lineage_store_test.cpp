// The lineage store (core/lineage_store.h): rows round-trip and are replaced by output, survive a
// reopen, are scanned by folder and pruned when their output is gone; a damaged file is moved
// aside and the store starts empty; readers on several threads see whole rows while a writer
// commits.

#include "core/lineage_store.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/temp_folder.h"

namespace docpipe {
namespace {

using test::TempFolder;

LineageRow row_for(const std::string& output, const std::string& input_hash = std::string(64, 'a'),
                   const std::string& chain = std::string(64, 'c')) {
  return LineageRow{.output = output,
                    .job_id = "job-1",
                    .input = "/in" + output,
                    .input_sha256 = input_hash,
                    .input_stamp = {.size = 10, .mtime_ns = 1234567890123, .ino = 42, .dev = 7},
                    .chain = chain,
                    .chain_json = R"({"output":{},"steps":[]})",
                    .finished_at_ms = 1700000000000,
                    .output_sha256 = std::string(64, 'b'),
                    .output_stamp = {.size = 20, .mtime_ns = 99, .ino = 43, .dev = 7}};
}

std::unique_ptr<LineageStore> open_store(const std::string& path, std::string* note = nullptr) {
  auto store = LineageStore::open(path, /*durable=*/false, note);
  REQUIRE(store);
  return std::move(*store);
}

TEST_CASE("lineage store: a row round-trips and is replaced by its output path") {
  TempFolder dir;
  auto store = open_store(dir.root() + "/lineage.sqlite");
  REQUIRE(store->upsert({row_for("/out/a.txt")}));
  auto found = store->lookup("/out/a.txt", /*with_chain_json=*/true);
  REQUIRE(found);
  REQUIRE(*found);
  const LineageRow& r = **found;
  CHECK(r.job_id == "job-1");
  CHECK(r.input == "/in/out/a.txt");
  CHECK(r.input_stamp == FileStamp{.size = 10, .mtime_ns = 1234567890123, .ino = 42, .dev = 7});
  CHECK(r.output_stamp == FileStamp{.size = 20, .mtime_ns = 99, .ino = 43, .dev = 7});
  CHECK(r.chain_json == R"({"output":{},"steps":[]})");
  CHECK(r.finished_at_ms == 1700000000000);

  LineageRow again = row_for("/out/a.txt", std::string(64, 'd'));
  again.job_id = "job-2";
  REQUIRE(store->upsert({again}));
  auto replaced = store->lookup("/out/a.txt");
  REQUIRE(replaced);
  CHECK((*replaced)->job_id == "job-2");
  CHECK((*replaced)->input_sha256 == std::string(64, 'd'));
  CHECK(*store->count() == 1);
  auto missing = store->lookup("/out/b.txt");
  REQUIRE(missing);
  CHECK(!*missing);
}

TEST_CASE("lineage store: rows survive closing and reopening the file") {
  TempFolder dir;
  const std::string path = dir.root() + "/lineage.sqlite";
  {
    auto store = open_store(path);
    REQUIRE(store->upsert({row_for("/out/a.txt"), row_for("/out/b.txt")}));
  }
  std::string note;
  auto store = open_store(path, &note);
  CHECK(note.empty());
  CHECK(*store->count() == 2);
  CHECK(*store->lookup("/out/b.txt"));
}

TEST_CASE("lineage store: the input stamp is refreshed only while the hash still matches") {
  TempFolder dir;
  auto store = open_store(dir.root() + "/lineage.sqlite");
  REQUIRE(store->upsert({row_for("/out/a.txt")}));
  LineageRow touched{.output = "/out/a.txt",
                     .input_sha256 = std::string(64, 'a'),
                     .input_stamp = {.size = 10, .mtime_ns = 5, .ino = 42, .dev = 7},
                     .chain = std::string(64, 'c')};
  LineageRow other_hash = touched;
  other_hash.input_sha256 = std::string(64, 'e');
  other_hash.input_stamp.mtime_ns = 6;
  REQUIRE(store->refresh_input_stamps({touched}));
  CHECK((*store->lookup("/out/a.txt"))->input_stamp.mtime_ns == 5);
  REQUIRE(store->refresh_input_stamps({other_hash}));
  CHECK((*store->lookup("/out/a.txt"))->input_stamp.mtime_ns == 5);
}

TEST_CASE("lineage store: a folder scan sees the rows beneath it and no sibling's") {
  TempFolder dir;
  auto store = open_store(dir.root() + "/lineage.sqlite");
  REQUIRE(store->upsert({row_for("/out/a.txt"), row_for("/out/sub/b.txt"), row_for("/out2/c.txt"),
                         row_for("/out-x/d.txt")}));
  std::vector<std::string> seen;
  REQUIRE(store->for_each_under("/out", [&](const LineageRow& r) {
    seen.push_back(r.output);
    return true;
  }));
  CHECK(seen == std::vector<std::string>{"/out/a.txt", "/out/sub/b.txt"});
}

TEST_CASE("lineage store: retention removes the rows whose output is gone and keeps the rest") {
  TempFolder dir;
  auto store = open_store(dir.root() + "/lineage.sqlite");
  const std::string kept = dir.root() + "/kept.txt";
  TempFolder::write(kept, "x");
  std::vector<LineageRow> rows{row_for(kept)};
  for (int i = 0; i < 2500; ++i) rows.push_back(row_for(dir.root() + "/gone-" + std::to_string(i)));
  REQUIRE(store->upsert(rows));
  std::string cursor;
  // Capped: the first pass stops after its share and says there is more.
  auto first = prune_missing_outputs(*store, cursor, 1000);
  REQUIRE(first);
  CHECK(first->more);
  CHECK(first->checked == 1000);
  auto rest = prune_missing_outputs(*store, cursor, 100000);
  REQUIRE(rest);
  CHECK(!rest->more);
  CHECK(first->removed + rest->removed == 2500);
  CHECK(cursor.empty());
  CHECK(*store->count() == 1);
  CHECK(*store->lookup(kept));
}

TEST_CASE("lineage store: a damaged file is moved aside and the store starts empty") {
  TempFolder dir;
  const std::string path = dir.root() + "/lineage.sqlite";
  {
    auto store = open_store(path);
    std::vector<LineageRow> rows;
    for (int i = 0; i < 2000; ++i) rows.push_back(row_for("/out/" + std::to_string(i)));
    REQUIRE(store->upsert(rows));
  }
  std::filesystem::remove(path + "-wal");
  std::filesystem::remove(path + "-shm");
  SUBCASE("garbage instead of a database") { TempFolder::write(path, std::string(8192, 'x')); }
  SUBCASE("pages overwritten in the middle") {
    std::string bytes = TempFolder::read(path);
    REQUIRE(bytes.size() > 16384);
    for (size_t i = 4096; i < 12288; ++i) bytes[i] = static_cast<char>(i * 7);
    TempFolder::write(path, bytes);
  }
  std::string note;
  auto store = open_store(path, &note);
  CHECK(note.find("moved aside") != std::string::npos);
  CHECK(*store->count() == 0);
  bool aside = false;
  for (const std::string& name : TempFolder::names(dir.root())) {
    aside = aside || name.rfind("lineage.sqlite.damaged-", 0) == 0;
  }
  CHECK(aside);
  REQUIRE(store->upsert({row_for("/out/new")}));
  CHECK(*store->count() == 1);
}

TEST_CASE("lineage store: a spool that cannot hold it is an error, not a crash") {
  auto store = LineageStore::open("/proc/docpipe-no-such/lineage.sqlite", false);
  CHECK(!store);
}

TEST_CASE("lineage store: readers on other threads see whole rows while a writer commits") {
  TempFolder dir;
  auto store = open_store(dir.root() + "/lineage.sqlite");
  REQUIRE(store->upsert({row_for("/out/a.txt", std::string(64, '0'))}));
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::atomic<int> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      while (!done) {
        auto r = store->lookup("/out/a.txt");
        // Every version written has input_sha256 of one repeated digit and the same job: a
        // torn row would mix them.
        if (!r || !*r || (*r)->input_sha256 != std::string(64, (*r)->input_sha256[0])) ++bad;
        ++reads;
      }
    });
  }
  for (int i = 0; i < 200; ++i) {
    REQUIRE(
        store->upsert({row_for("/out/a.txt", std::string(64, static_cast<char>('0' + i % 10)))}));
  }
  done = true;
  for (auto& t : readers) t.join();
  CHECK(bad == 0);
  CHECK(reads > 0);
}

}  // namespace
}  // namespace docpipe
