#pragma once
// A DaemonJob over real files in a temp folder, for the daemon_job*_test.cpp units: input files
// named by an explicit list (input.files), an output folder, and a journal written by hand or
// by an earlier job, the way a restarted daemon finds them.

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/journal.h"
#include "daemon/daemon_job.h"
#include "pipeline/sha256.h"
#include "tests/support/temp_folder.h"

namespace docpipe::test {

struct JobFolder : TempFolder {
  explicit JobFolder(const std::string& under = "/tmp") : TempFolder(under, "daemon-job") {
    std::filesystem::create_directories(root + "/in");
    std::filesystem::create_directories(root + "/out");
  }

  std::string in(const std::string& name) const { return root + "/in/" + name; }
  std::string out(const std::string& name) const { return root + "/out/" + name; }

  // A spec over input files `names` (they need not exist: the list source does not open them).
  JobSpec spec(const std::vector<std::string>& names, IfExists if_exists = IfExists::kReplace,
               int64_t max_failed = 0) const {
    JobSpec s;
    s.id = "job";
    for (const auto& n : names) s.input.files.push_back(in(n));
    s.output.dir = root + "/out";
    s.output.if_exists = if_exists;
    s.chain = std::make_shared<TransformChain>();
    s.limits.max_failed_documents = max_failed;
    return s;
  }

  // A journal with a header and these payloads, as the daemon writes them.
  void write_journal(const std::vector<std::string>& payloads, int64_t submitted = 777) const {
    JobJournal j;
    REQUIRE(j.create(journal, "job", submitted));
    for (const auto& p : payloads) REQUIRE(j.append(p));
    REQUIRE(j.close(false));
  }

  const std::string root = TempFolder::root();
  const std::string journal = root + "/job.journal";
  const std::string manifest = root + "/job.manifest.jsonl";
};

inline std::string sha256_of(const std::string& bytes) {
  Sha256 sha;
  REQUIRE(sha.reset());
  REQUIRE(sha.update(bytes));
  Result<std::string> hex = sha.hex_digest();
  REQUIRE(hex);
  return *hex;
}

// What a writer reports for a document that succeeded (or failed, with `error`).
inline DocumentOutcome outcome_of(const DocumentRef& doc, const std::string& output,
                                  DocumentState state = DocumentState::kSucceeded,
                                  const std::string& error = "") {
  DocumentOutcome o;
  o.doc = doc;
  o.output_path = output;
  o.state = state;
  o.bytes_in = 10;
  o.bytes_out = state == DocumentState::kSucceeded ? 20 : 0;
  o.sha256 = state == DocumentState::kSucceeded ? std::string(64, 'a') : "";
  o.attempts = 1;
  o.duration_seconds = 0.5;
  o.error = error;
  return o;
}

// A document record as the daemon journals it (field order included).
inline std::string done_record(const std::string& input, const std::string& output,
                               const std::string& state = "succeeded",
                               const std::string& error = "") {
  return R"({"input":")" + input + R"(","output":")" + output + R"(","state":")" + state +
         R"(","bytes_in":10,"bytes_out":20,"sha256":"","attempts":1,"duration_seconds":0.5,)" +
         R"("error":")" + error + R"("})";
}

// The inputs next_document() yields until it has no more.
inline std::vector<DocumentRef> drain(DaemonJob& job) {
  std::vector<DocumentRef> docs;
  while (std::optional<DocumentRef> d = job.next_document()) docs.push_back(std::move(*d));
  return docs;
}

}  // namespace docpipe::test
