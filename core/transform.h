#pragma once
// Transforms: small units that register themselves with a name, a parameter schema and an
// implementation, the way a Fluent Bit filter plugin does. Adding one is one new file in
// core/transforms/ (with a static TransformRegistration) and its test.
//
// Life cycle: a job's parameters are validated once into an immutable TransformStep, shared by
// every thread that processes the job's documents; each document gets its own DocumentTransform,
// used by one thread at a time.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/breaker_config.h"
#include "core/field_error.h"
#include "core/result.h"

namespace docpipe {

class CommandBreakers;  // core/command_breaker.h

// What a transform may know about the document it processes.
struct DocumentContext {
  std::string_view relative_path;  // input path relative to the job's input root ("a/b.md")
  std::string_view name;           // file name ("b.md")
  // Set by the pipeline: returns an error (kCancelled or kTimeout) once the document must stop.
  // Transforms that can block or run long (exec) poll it and give up promptly; empty: never.
  std::function<Status()> check_interrupted = {};
  // Set by the pipeline: charges `n` more bytes to this document's share of memory_budget_bytes,
  // for a transform that holds more than a piece (gzip holding a document whole). Never blocks:
  // false means not available now, do without. Empty: never available.
  std::function<bool(size_t n)> try_reserve_bytes = {};
  // Gives back `n` bytes of what try_reserve_bytes charged, once they are no longer held. What is
  // not given back is released when the document settles (so a transform destroyed mid-document
  // gives nothing back itself).
  std::function<void(size_t n)> release_reserved_bytes = {};
  // Set by the pipeline: the daemon's circuit breakers, one per command (command_breaker.h). A
  // transform that runs an external command asks admit() before it starts one and reports how
  // it ended; refused, it fails with ErrorCode::kUnavailable and the pipeline parks the document
  // until the breaker lets it through, without charging it an attempt. Null: no breakers.
  CommandBreakers* breakers = nullptr;
};

// How `exec` runs a command: a process per document, or a pool of long-lived processes that
// speak the framed protocol of core/transforms/pool_protocol.h (docs/design.md "exec pools").
enum class CommandMode { kProcess, kPool };

// A pool's settings (the command's "pool" object); defaults and ranges in docs/design.md.
struct CommandPoolSettings {
  int size = 0;                        // processes at most; 0: the number of cores, at most 8
  int64_t max_documents = 100;         // a process is replaced after this many documents
  int64_t ready_timeout_ms = 10000;    // from start to its ready frame
  int64_t health_interval_ms = 30000;  // an idle process is pinged after this long unused
  int64_t health_timeout_ms = 5000;    // for its pong
  int64_t queue_timeout_ms = 60000;    // a document waits this long for a free process
  int64_t stop_grace_ms = 2000;        // from SIGTERM to SIGKILL when processes are stopped
  bool operator==(const CommandPoolSettings&) const = default;
};

// An external command a job may run by name through `exec` (the daemon config's allow-list).
struct CommandSpec {
  std::vector<std::string> argv;
  int64_t timeout_ms = 60000;  // pool mode: per document, from the moment it has a process
  CommandMode mode = CommandMode::kProcess;
  CommandPoolSettings pool = {};  // pool mode only
  // "breaker": when its failures make documents wait (command_breaker.h)
  BreakerConfig breaker = {};
  bool operator==(const CommandSpec&) const = default;
};

// What the daemon's configuration lends transforms when a job's parameters are validated.
struct TransformEnv {
  std::map<std::string, CommandSpec> commands;   // the `exec` allow-list, by name
  std::vector<std::string> allowed_input_roots;  // files a job names (templates) must be under
};

// A transform that can expand its input (a decompressor, an external command) appends at most
// about this much per call and says has_more(), so that no call's output outgrows the memory
// budget whatever the document holds.
inline constexpr size_t kMaxCallOutputBytes = size_t{1} << 20;

// Processes one document. update() may be called any number of times with consecutive chunks
// (possibly empty), then finish() until it is done. Output is appended to `out`.
//
// After a call that leaves has_more() true, the transform has kept what it did not process yet:
// the caller hands on the output and calls again with no new input (update({}, out) after an
// update, finish(out) after a finish) until has_more() is false.
class DocumentTransform {
 public:
  virtual ~DocumentTransform() = default;
  virtual Status update(std::string_view in, std::string& out) = 0;
  virtual Status finish(std::string& out) = 0;
  virtual bool has_more() const { return false; }
  // What the transform learned about the document for the manifest (pdf.text: its pages, title
  // and author): a JSON object's text, or empty. Asked once finish() is done.
  virtual std::string metadata() const { return {}; }
};

// A transform configured with a job's parameters. Immutable and thread-safe.
class TransformStep {
 public:
  virtual ~TransformStep() = default;
  virtual std::unique_ptr<DocumentTransform> begin(const DocumentContext& doc) const = 0;
  // A step whose output is always its input (identity) is left out of the job's chain: a chain
  // of only such steps is empty, and the pipeline copies the document without a transform stage.
  virtual bool passes_through() const { return false; }
  // The names of the external commands (the daemon config's `commands`) this step runs: the
  // scheduler holds back the documents of a job while a breaker of one of them is open.
  virtual std::vector<std::string> commands() const { return {}; }
  // What decides this step's output besides the job's parameters and the transform's version:
  // the text of a template file, the argv of an allow-listed command. Goes into the chain
  // fingerprint (core/chain_fingerprint.h); empty: nothing.
  virtual std::string fingerprint_extra() const { return {}; }
};

// One parameter in a transform's schema, for `docpipe transforms` and validation messages.
struct ParamSpec {
  std::string name;
  std::string type;           // "integer", "string", "boolean", "array<string>", ...
  std::string default_value;  // as JSON text; empty if the parameter is required
  std::string description;    // includes the allowed range or values
};

// What a transform registers. Sites name every field with designated initialisers, the way a
// Fluent Bit plugin fills `.name =, .cb_init =`, so that no bare `true` stands for a property:
//
//   const TransformRegistration kRegistration(TransformInfo{
//       .op = "gzip",
//       .description = "compresses the document to gzip format (zlib deflate)",
//       .streaming = true,
//       .params = schema().specs(),
//       .configure = configure});
struct TransformInfo {
  std::string op;
  std::string description;
  bool streaming = true;  // processes chunks in bounded memory (false: needs the whole document)
  std::vector<ParamSpec> params;
  // Builds a step from the job's parameters (the transform object minus "op") and the daemon's
  // environment (e.g. the exec allow-list). On any problem,
  // appends to `errors` (paths relative to the transform object, e.g. "level", "patterns[1]")
  // and returns nullptr. Unknown parameters are errors.
  std::function<std::shared_ptr<const TransformStep>(const nlohmann::json& params,
                                                     const TransformEnv& env, FieldErrors& errors)>
      configure;
  // Runs in a sandboxed, rlimited worker process (core/transforms/isolated_worker.h), for a
  // transform that wraps a C library with a record of blow-ups on hostile input. Its configure()
  // returns isolated_step(); only such transforms can be served by a worker.
  bool isolated = false;
  // Isolated transforms only: runs once in each worker before its sandbox closes, for what the
  // transform must open or load from disk while it still can (character set converters, models).
  // `variant` is what the step's configure() passed to isolated_step() (e.g. the OCR languages to
  // load): workers are kept apart by it. Returns "" or what failed (the worker then refuses to
  // start, naming it).
  std::function<std::string(const std::string& variant)> prepare_worker = {};
  // The chain fingerprint (core/chain_fingerprint.h) of every job that runs this step includes
  // `version`, so that `if_exists: "unchanged"` redoes documents whose output would now differ:
  // bump it whenever the transform's output for the same input and parameters changes.
  std::string version = "1";
  // The versions of the libraries its output depends on, read at run time (an upgraded shared
  // library changes output without a rebuild): e.g. "zlib 1.2.13". Empty function: none.
  std::function<std::string()> library_version = {};
};

// The process-wide table of transforms, filled by static registrations before main().
class TransformRegistry {
 public:
  static TransformRegistry& instance();
  void add(TransformInfo info);
  const TransformInfo* find(std::string_view op) const;
  std::vector<const TransformInfo*> all() const;  // sorted by op

 private:
  std::vector<std::unique_ptr<TransformInfo>> infos_;
};

struct TransformRegistration {
  explicit TransformRegistration(TransformInfo info) {
    TransformRegistry::instance().add(std::move(info));
  }
};

}  // namespace docpipe
