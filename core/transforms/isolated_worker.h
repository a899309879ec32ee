#pragma once
// Isolated transforms: a transform that wraps a C library with a record of blow-ups on hostile
// input (cmark-gfm for markdown.html) runs each document in a worker process that can be bounded
// and killed, never in the daemon itself.
//
// - The worker is this same binary re-executed: `/proc/self/exe __transform-worker OP PPID
//   MEMORY_BYTES CPU_SECONDS VARIANT`. Every main() that can host transforms (daemon/main.cc, the
//   test binaries' main) calls run_transform_worker_if_asked() first.
// - Before it reads any input the worker runs the transform's prepare_worker (what must be opened
//   from disk: converters, models) and then puts itself in a sandbox: RLIMIT_AS (what it has
//   mapped by then plus the transform's worker_memory_bytes), RLIMIT_CPU, RLIMIT_NOFILE 4,
//   RLIMIT_CORE 0, PR_SET_NO_NEW_PRIVS, a parent-death signal, and a seccomp filter that allows
//   reading and writing its pipes, memory management and exiting, nothing else (no open, no socket,
//   no exec, no fork).
// - It runs the named transform's in-process implementation on one document at a time, from its
//   stdin to its stdout (worker_protocol.h), and then waits for the next one. The daemon keeps a
//   few idle workers per transform (worker_pool.h), so a document costs two pipe round trips, not
//   a process start.
// - The daemon waits for a worker's answer polling the document's check_interrupted: a
//   cancellation or document_timeout_ms kills the worker at once. A worker that dies fails only
//   its document, with the reason: its memory limit, its CPU limit, or the signal that killed it.
//   No lock is held across a parse, so other documents never wait behind a hostile one.
//
// A transform declares itself isolated (TransformInfo::isolated) and returns isolated_step() from
// its configure(); inside the worker that same call returns the in-process step.

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "core/transform.h"
#include "core/transforms/param_reader.h"

namespace docpipe {

inline constexpr int64_t kDefaultWorkerMemoryBytes = int64_t{512} << 20;
inline constexpr int64_t kMinWorkerMemoryBytes = int64_t{64} << 20;
inline constexpr int64_t kMaxWorkerMemoryBytes = int64_t{16} << 30;

// How a worker is bounded.
struct WorkerLimits {
  // What a document may add to the worker's address space: RLIMIT_AS is set to this plus what
  // the worker has mapped when its sandbox closes (its binary, libraries and prepared data,
  // about 80 MiB with libxml2's ICU), so the limit does not shrink as the binary links more.
  uint64_t memory_bytes = static_cast<uint64_t>(kDefaultWorkerMemoryBytes);
  // RLIMIT_CPU: a backstop for documents without document_timeout_ms. A worker is retired once it
  // has used half of it, so a fresh document always has at least half.
  int cpu_seconds = 600;
};

// `schema` plus `worker_memory_bytes`, the parameter every isolated transform has.
ParamSchema add_worker_params(ParamSchema schema);
// Reads it (after the reader has read the transform's own parameters).
WorkerLimits read_worker_limits(ParamReader& reader);

// What a step asks of its workers beyond their limits.
struct WorkerOptions {
  // Handed to the transform's prepare_worker (e.g. "eng+deu": the OCR models to load); workers
  // prepared differently never serve each other's documents.
  std::string variant;
  // Non-empty: the document counts against this group's process-wide concurrency limit while it
  // is in its worker (set_worker_concurrency in worker_pool.h), e.g. "ocr".
  std::string concurrency_group;
};

// What an isolated transform's configure() returns: in the daemon, a step whose documents go to a
// worker running `op` with `params` (the job's parameters, as configure() got them); inside a
// worker, `in_process` itself.
std::shared_ptr<const TransformStep> isolated_step(const std::string& op,
                                                   const nlohmann::json& params,
                                                   const WorkerLimits& limits,
                                                   std::shared_ptr<const TransformStep> in_process,
                                                   const WorkerOptions& options = {});

// True in a worker process.
bool in_transform_worker();

// For a fuzz target only, before any configure(): isolated transforms then run in this process,
// as in a worker (a failed allocation exits with the worker's out-of-memory status). A fuzzer's
// own binary cannot serve as a worker unless its main calls run_transform_worker_if_asked().
void use_in_process_transforms();

// For a C library's allocator hooks: a failed allocation ends a worker with the exit status that
// the daemon reports as "exceeded its memory limit"; anywhere else it aborts, as the library would.
[[noreturn]] void transform_out_of_memory();

// If argv asks for a worker (argv[1] == "__transform-worker"), serves and returns the exit status;
// otherwise returns -1 and main() goes on. C linkage, so that a main() that may be linked without
// the transforms can declare it weak (tests/doctest_main.cpp).
extern "C" int docpipe_run_transform_worker_if_asked(int argc, char** argv);
inline int run_transform_worker_if_asked(int argc, char** argv) {
  return docpipe_run_transform_worker_if_asked(argc, argv);
}

}  // namespace docpipe
