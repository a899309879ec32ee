// Fault-injection transforms, linked only into the test build of the daemon (docpipe-test), never
// into build/docpipe: they let end-to-end tests make documents fail, fail transiently, or run long.
//
//   test.fail   {"transient": N, "permanent": false}  the first N attempts of each document fail
//               with a transient I/O error (EAGAIN), later ones succeed; permanent: every attempt
//               fails with a non-transient error.
//   test.sleep  {"ms": N}  waits N ms per document (polling the interruption check every 10 ms),
//               then copies.

#include <cerrno>
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "core/transform.h"
#include "core/transforms/param_reader.h"

namespace docpipe {
namespace {

// Attempts seen per document path, across retries (a retry gets a fresh DocumentTransform).
std::mutex g_attempts_mu;
std::map<std::string, int> g_attempts;

class FailStep : public TransformStep {
 public:
  FailStep(int transient, bool permanent) : transient_(transient), permanent_(permanent) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext& doc) const override {
    int attempt;
    {
      std::lock_guard<std::mutex> lock(g_attempts_mu);
      attempt = ++g_attempts[std::string(doc.relative_path)];
    }
    return std::make_unique<Run>(this, attempt, std::string(doc.relative_path));
  }

 private:
  class Run : public DocumentTransform {
   public:
    Run(const FailStep* step, int attempt, std::string path)
        : step_(step), attempt_(attempt), path_(std::move(path)) {}
    Status update(std::string_view in, std::string& out) override {
      out.append(in);
      return ok();
    }
    Status finish(std::string&) override {
      if (step_->permanent_) {
        return make_error(ErrorCode::kCorruptInput, "test.fail: permanent failure of " + path_);
      }
      if (attempt_ <= step_->transient_) {
        return Error{ErrorCode::kIo,
                     "test.fail: transient failure " + std::to_string(attempt_) + " of " + path_ +
                         ": Resource temporarily unavailable",
                     EAGAIN};
      }
      return ok();
    }

   private:
    const FailStep* step_;
    int attempt_;
    std::string path_;
  };
  int transient_;
  bool permanent_;
};

class SleepStep : public TransformStep {
 public:
  explicit SleepStep(int64_t ms) : ms_(ms) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext& doc) const override {
    return std::make_unique<Run>(ms_, doc.check_interrupted);
  }

 private:
  class Run : public DocumentTransform {
   public:
    Run(int64_t ms, std::function<Status()> check) : ms_(ms), check_(std::move(check)) {}
    Status update(std::string_view in, std::string& out) override {
      out.append(in);
      return ok();
    }
    Status finish(std::string&) override {
      auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms_);
      while (std::chrono::steady_clock::now() < until) {
        if (check_) {
          Status st = check_();
          if (!st) return st;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      return ok();
    }

   private:
    int64_t ms_;
    std::function<Status()> check_;
  };
  int64_t ms_;
};

const ParamSchema& fail_schema() {
  static const ParamSchema schema =
      ParamSchema()
          .integer("transient", 0, 100, 0, "transient failures per document")
          .integer("permanent", 0, 1, 0, "1: every attempt fails");
  return schema;
}

const ParamSchema& sleep_schema() {
  static const ParamSchema schema =
      ParamSchema().integer("ms", 0, 3600000, 100, "milliseconds to wait per document");
  return schema;
}

const TransformRegistration kFail(TransformInfo{
    .op = "test.fail",
    .description = "test only: fails documents transiently or permanently",
    .streaming = true,
    .params = fail_schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      ParamReader r(fail_schema(), params, errors);
      int transient = static_cast<int>(r.integer("transient"));
      bool permanent = r.integer("permanent") == 1;
      if (!r.ok()) return nullptr;
      return std::make_shared<FailStep>(transient, permanent);
    }});

const TransformRegistration kSleep(TransformInfo{
    .op = "test.sleep",
    .description = "test only: waits per document, then copies",
    .streaming = true,
    .params = sleep_schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      ParamReader r(sleep_schema(), params, errors);
      int64_t ms = r.integer("ms");
      if (!r.ok()) return nullptr;
      return std::make_shared<SleepStep>(ms);
    }});

}  // namespace
}  // namespace docpipe
