#pragma once
// Helpers for the pipeline tests: a temp folder, file helpers, test-only transforms and a fake
// PipelineJob that yields documents from a list (or forever) and records what it is told.

#include <openssl/evp.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/job_spec.h"
#include "core/transform.h"
#include "core/transform_chain.h"
#include "pipeline/pipeline.h"
#include "pipeline/pipeline_job.h"

namespace docpipe::testing {

namespace fs = std::filesystem;

// The pipeline's defaults without fsync: tests check behaviour, not durability.
inline PipelineOptions test_options() {
  PipelineOptions o;
  o.fsync = false;
  return o;
}

// A fresh folder under /tmp (mkdtemp), removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "docpipe-pl-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

inline void write_file(const std::string& path, const std::string& content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline std::string sha256_hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  std::string hex;
  char buf[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", digest[i]);
    hex += buf;
  }
  return hex;
}

// Every file below `root` whose name marks it as a pipeline temp file.
inline std::vector<std::string> temp_files_under(const std::string& root) {
  std::vector<std::string> found;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.path().filename().string().find(".docpipe-tmp.") != std::string::npos) {
      found.push_back(entry.path().string());
    }
  }
  return found;
}

// Outputs being written as anonymous files (O_TMPFILE: no name yet) in folders below `root`, by
// this process: its descriptors whose link reads "FOLDER/#INODE (deleted)".
inline size_t anonymous_files_under(const std::string& root) {
  size_t found = 0;
  const std::string prefix = root + "/", deleted = " (deleted)";
  for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::string target = fs::read_symlink(entry.path(), ec).string();
    if (ec || target.rfind(prefix, 0) != 0 || !target.ends_with(deleted)) continue;
    const size_t slash = target.rfind('/');
    if (slash != std::string::npos && target.compare(slash, 2, "/#") == 0) ++found;
  }
  return found;
}

// Deterministic content of a given size, different per seed.
inline std::string make_content(size_t size, unsigned seed) {
  std::string s(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    x = x * 1103515245u + 12345u;
    s[i] = "abcdefghijklmnopqrstuvwxyz \n0123456789"[(x >> 16) % 38];
  }
  return s;
}

inline std::string upper(std::string s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return s;
}

// ---- test-only transforms ---------------------------------------------------------------------

// A step built from a per-chunk function; `fail_if` decides, per document, to fail instead.
class FunctionStep : public TransformStep {
 public:
  using ChunkFn = std::function<Status(const DocumentContext&, std::string_view, std::string&)>;
  explicit FunctionStep(ChunkFn fn) : fn_(std::move(fn)) {}

  std::unique_ptr<DocumentTransform> begin(const DocumentContext& doc) const override {
    return std::make_unique<Run>(fn_, doc);
  }

 private:
  class Run : public DocumentTransform {
   public:
    Run(const ChunkFn& fn, const DocumentContext& doc)
        : fn_(fn), rel_(doc.relative_path), name_(doc.name) {}
    Status update(std::string_view in, std::string& out) override {
      return fn_(DocumentContext{rel_, name_}, in, out);
    }
    Status finish(std::string&) override { return ok(); }

   private:
    const ChunkFn& fn_;
    std::string rel_;
    std::string name_;
  };
  ChunkFn fn_;
};

inline std::shared_ptr<const TransformStep> upper_step() {
  return std::make_shared<FunctionStep>(
      [](const DocumentContext&, std::string_view in, std::string& out) {
        out.append(upper(std::string(in)));
        return ok();
      });
}

// Uppercases, but refuses any document whose name contains "bad".
inline std::shared_ptr<const TransformStep> picky_step() {
  return std::make_shared<FunctionStep>(
      [](const DocumentContext& doc, std::string_view in, std::string& out) -> Status {
        if (doc.name.find("bad") != std::string_view::npos) {
          return make_error(ErrorCode::kCorruptInput, "upper: refusing " + std::string(doc.name));
        }
        out.append(upper(std::string(in)));
        return ok();
      });
}

// Each byte twice: output is double the input, so the transformer must overdraw the budget.
inline std::shared_ptr<const TransformStep> double_step() {
  return std::make_shared<FunctionStep>(
      [](const DocumentContext&, std::string_view in, std::string& out) {
        for (char c : in) {
          out.push_back(c);
          out.push_back(c);
        }
        return ok();
      });
}

inline std::shared_ptr<const TransformChain> chain_of(
    std::vector<std::shared_ptr<const TransformStep>> steps) {
  return std::make_shared<const TransformChain>(std::move(steps));
}

// ---- a fake job -------------------------------------------------------------------------------

inline JobSpec make_spec(const std::string& id, const std::string& out_dir,
                         std::shared_ptr<const TransformChain> chain, int priority = 0) {
  JobSpec spec;
  spec.id = id;
  spec.output.dir = out_dir;
  spec.chain = chain ? std::move(chain) : chain_of({});
  spec.priority = priority;
  spec.limits.max_attempts = 1;
  return spec;
}

// Yields `docs` in order, or, with a generator, as many as it returns. Records every outcome and
// the job_finished call; waits are condition polls with a deadline.
class FakeJob : public PipelineJob {
 public:
  using Generator = std::function<std::optional<DocumentRef>(size_t index)>;

  FakeJob(JobSpec spec, std::vector<DocumentRef> docs) : spec_(std::move(spec)) {
    generator_ = [docs = std::move(docs)](size_t i) -> std::optional<DocumentRef> {
      if (i < docs.size()) return docs[i];
      return std::nullopt;
    };
  }
  FakeJob(JobSpec spec, Generator generator)
      : spec_(std::move(spec)), generator_(std::move(generator)) {}

  const JobSpec& spec() const override { return spec_; }

  std::optional<DocumentRef> next_document() override {
    std::lock_guard lock(mu_);
    std::optional<DocumentRef> doc = generator_(taken_);
    if (doc) ++taken_;
    return doc;
  }

  void document_finished(DocumentOutcome outcome) override {
    std::lock_guard lock(mu_);
    outcomes_.push_back(std::move(outcome));
    if (on_document) on_document(outcomes_.back());
    cv_.notify_all();
  }

  void job_finished(bool cancelled) override {
    std::lock_guard lock(mu_);
    ++finished_calls_;
    cancelled_ = cancelled;
    cv_.notify_all();
  }

  // True once job_finished() was called, false if `timeout` passed first.
  bool wait_finished(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return finished_calls_ > 0; });
  }
  bool wait_outcomes(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return outcomes_.size() >= n; });
  }

  std::vector<DocumentOutcome> outcomes() const {
    std::lock_guard lock(mu_);
    return outcomes_;
  }
  // Outcomes by relative path (tests with unique paths).
  std::map<std::string, DocumentOutcome> outcomes_by_path() const {
    std::lock_guard lock(mu_);
    std::map<std::string, DocumentOutcome> out;
    for (const auto& o : outcomes_) out[o.doc.relative_path] = o;
    return out;
  }
  size_t taken() const {
    std::lock_guard lock(mu_);
    return taken_;
  }
  size_t outcome_count() const {
    std::lock_guard lock(mu_);
    return outcomes_.size();
  }
  int finished_calls() const {
    std::lock_guard lock(mu_);
    return finished_calls_;
  }
  bool cancelled() const {
    std::lock_guard lock(mu_);
    return cancelled_;
  }

  // Called under the job's lock for each outcome (ordering checks across jobs).
  std::function<void(const DocumentOutcome&)> on_document;

 private:
  JobSpec spec_;
  Generator generator_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  size_t taken_ = 0;
  std::vector<DocumentOutcome> outcomes_;
  int finished_calls_ = 0;
  bool cancelled_ = false;
};

// Writes `files` (relative path -> content) under in_dir and returns their DocumentRefs.
inline std::vector<DocumentRef> make_inputs(const std::string& in_dir,
                                            const std::map<std::string, std::string>& files) {
  std::vector<DocumentRef> docs;
  for (const auto& [rel, content] : files) {
    write_file(in_dir + "/" + rel, content);
    docs.push_back(DocumentRef{in_dir + "/" + rel, rel});
  }
  return docs;
}

// ---- jobs and gates for the lifecycle tests ----------------------------------------------------

// A job that never runs out: document i is the same small input under the name "d/i.txt".
inline std::shared_ptr<FakeJob> endless_job(const std::string& id, const std::string& input,
                                            const std::string& out_dir,
                                            std::shared_ptr<const TransformChain> chain = nullptr) {
  return std::make_shared<FakeJob>(make_spec(id, out_dir, std::move(chain)),
                                   [input](size_t i) -> std::optional<DocumentRef> {
                                     std::string rel = "d/" + std::to_string(i) + ".txt";
                                     return DocumentRef{input, rel};
                                   });
}

// Blocks a transform until the test opens it, and tells the test when it is reached.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool reached = false;
  bool open = false;

  void pass() {
    std::unique_lock lock(mu);
    reached = true;
    cv.notify_all();
    cv.wait(lock, [&] { return open; });
  }
  bool wait_reached() {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(60), [&] { return reached; });
  }
  void release() {
    std::lock_guard lock(mu);
    open = true;
    cv.notify_all();
  }
};

// A step that passes `gate` with each document, then copies it unchanged.
inline std::shared_ptr<FunctionStep> gated_copy(std::shared_ptr<Gate> gate) {
  return std::make_shared<FunctionStep>(
      [gate](const DocumentContext&, std::string_view in, std::string& out) {
        gate->pass();
        out.append(in);
        return ok();
      });
}

// Opens a gate when the test leaves its scope, also by a failed REQUIRE: declared after the
// Pipeline, it runs first, so the pipeline's threads can finish and be joined.
struct OpenAtExit {
  Gate& gate;
  ~OpenAtExit() { gate.release(); }
};

}  // namespace docpipe::testing
