// Identity copies of a nested tree: include/exclude globs, mirrored paths, byte-identical outputs
// (small, empty, binary and larger than the streaming threshold), no temp files left behind, and
// what if_exists "skip" and "fail" do to outputs that are already there.

#include <doctest/doctest.h>

#include <cstdio>
#include <map>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

std::string binary_bytes(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed;
  for (char& c : s) {
    x = x * 1664525u + 1013904223u;  // any fixed sequence of all byte values will do
    c = static_cast<char>(x >> 24);
  }
  return s;
}

// Relative path -> content of the files the job must copy, after writing those it must not.
std::map<std::string, std::string> make_tree(const std::string& in) {
  std::map<std::string, std::string> copied{
      {"readme.md", "# top level markdown\n"},
      {"notes.txt", "notes at the root\n"},
      {"a/one.txt", "one\n"},
      {"a/empty.txt", ""},
      {"a/b/two.txt", "two\nlines\n"},
      {"a/b/c/three.txt", std::string(5000, 'x')},
      {"a/b/image.bin", binary_bytes(70000, 7)},
      {"a/drafts/kept.txt", "exclude drafts/** is anchored at the input root\n"},
      // Larger than the pipeline's 8 MiB streaming threshold: copied in chunks.
      {"big/large.bin", binary_bytes((9u << 20) + 123, 11)},
  };
  for (const auto& [rel, content] : copied) write_file(in + "/" + rel, content);
  write_file(in + "/drafts/draft.txt", "excluded by drafts/**\n");
  write_file(in + "/drafts/deeper/draft.md", "excluded by drafts/**\n");
  write_file(in + "/a/skip.log", "not included\n");
  write_file(in + "/a/b/readme.md", "*.md matches at the root only\n");
  return copied;
}

nlohmann::json copy_job(const std::string& id, const std::string& in, const std::string& out,
                        const char* if_exists) {
  nlohmann::json job = make_job(id, in, out, {{{"op", "identity"}}});
  job["input"]["include"] = {"**/*.txt", "*.md", "**/*.bin"};
  job["input"]["exclude"] = {"drafts/**"};
  job["output"]["if_exists"] = if_exists;
  return job;
}

std::vector<std::string> temp_files(const std::string& dir) {
  std::vector<std::string> found;
  for (const std::string& f : list_files(dir)) {
    if (f.find(".docpipe-tmp.") != std::string::npos) found.push_back(f);
  }
  return found;
}

std::vector<std::string> keys(const std::map<std::string, std::string>& m) {
  std::vector<std::string> out;
  for (const auto& [k, v] : m) out.push_back(k);
  return out;
}

TEST_CASE("e2e identity copy: a nested tree is mirrored byte for byte with include and exclude") {
  TempDir tmp;
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  std::map<std::string, std::string> copied = make_tree(in);

  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.start();
  drop_job(spool, "copy.json", copy_job("copy", in, out, "replace"));
  JobOutcome outcome = daemon.wait_for_job("copy");
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["state"] == "succeeded");
  CHECK(outcome.report["counts"]["total"] == copied.size());
  CHECK(outcome.report["counts"]["succeeded"] == copied.size());

  CHECK(list_files(out) == keys(copied));  // mirrored paths, nothing else (no temp files)
  for (const auto& [rel, content] : copied) {
    INFO(rel);
    CHECK(describe_difference(content, file_exists(out + "/" + rel) ? read_file(out + "/" + rel)
                                                                    : "<missing>") == "");
  }
  CHECK(temp_files(out).empty());

  std::map<std::string, std::string> manifest;  // output -> sha256
  for (nlohmann::json line : read_json_lines(outcome.manifest_path)) {
    manifest[line["output"].get<std::string>()] = line["sha256"].get<std::string>();
  }
  CHECK(manifest.size() == copied.size());
  for (const auto& [rel, content] : copied) CHECK(manifest[out + "/" + rel] == sha256_hex(content));
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e identity copy: if_exists skip keeps existing outputs and fail refuses them") {
  TempDir tmp;
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  std::map<std::string, std::string> copied = make_tree(in);
  const size_t n = copied.size();

  DaemonProcess daemon(spool, {"--workers", "2"});
  daemon.start();
  drop_job(spool, "first.json", copy_job("first", in, out, "replace"));
  REQUIRE(daemon.wait_for_job("first").folder == "done");

  // An output changed by hand, and one removed: skip must keep the first and rewrite the second.
  write_file(out + "/a/one.txt", "changed by hand\n");
  REQUIRE(std::remove((out + "/notes.txt").c_str()) == 0);

  SUBCASE("skip") {
    drop_job(spool, "skip.json", copy_job("skip", in, out, "skip"));
    JobOutcome outcome = daemon.wait_for_job("skip");
    INFO("report: " << outcome.report.dump(2));
    CHECK(outcome.folder == "done");
    CHECK(outcome.report["state"] == "succeeded");
    CHECK(outcome.report["counts"]["total"] == n);
    CHECK(outcome.report["counts"]["succeeded"] == 1);
    CHECK(outcome.report["counts"]["skipped"] == n - 1);
    CHECK(outcome.report["counts"]["failed"] == 0);
    CHECK(read_file(out + "/a/one.txt") == "changed by hand\n");
    CHECK(read_file(out + "/notes.txt") == copied["notes.txt"]);
    std::map<std::string, std::string> states;  // relative output -> state
    for (nlohmann::json line : read_json_lines(outcome.manifest_path)) {
      states[line["output"].get<std::string>().substr(out.size() + 1)] = line["state"];
    }
    CHECK(states.size() == n);
    for (const auto& [rel, state] : states) {
      INFO(rel);
      CHECK(state == (rel == "notes.txt" ? "succeeded" : "skipped"));
    }
    CHECK(daemon.wait_for_metric("docpipe_jobs_total", {{"outcome", "succeeded"}}, 2) == 2);
    CHECK(daemon.metric("docpipe_documents_total", {{"outcome", "skipped"}}) ==
          static_cast<double>(n - 1));
  }

  SUBCASE("fail") {
    write_file(out + "/notes.txt", copied["notes.txt"]);
    drop_job(spool, "refuse.json", copy_job("refuse", in, out, "fail"));
    JobOutcome outcome = daemon.wait_for_job("refuse");
    nlohmann::json report = outcome.report;
    INFO("report: " << report.dump(2));
    CHECK(outcome.folder == "failed");
    CHECK(report["state"] == "failed");
    CHECK(report["counts"]["total"] == n);
    CHECK(report["counts"]["succeeded"] == 0);
    CHECK(report["counts"]["failed"].get<size_t>() >= 1);
    CHECK(report["counts"]["failed"].get<size_t>() + report["counts"]["cancelled"].get<size_t>() ==
          n);
    REQUIRE(report["failed_documents"].size() >= 1);
    std::string input = report["failed_documents"][0]["input"];
    std::string error = report["failed_documents"][0]["error"];
    CHECK(input.rfind(in + "/", 0) == 0);
    // The error names the output that is in the way.
    CHECK(error.find(out + "/" + input.substr(in.size() + 1)) != std::string::npos);
    CHECK(error.find("exists") != std::string::npos);
    CHECK(read_file(out + "/a/one.txt") == "changed by hand\n");  // never replaced
    CHECK(list_files(out) == keys(copied));
    CHECK(daemon.wait_for_metric("docpipe_jobs_total", {{"outcome", "failed"}}, 1) == 1);
  }
  CHECK(temp_files(out).empty());
  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
