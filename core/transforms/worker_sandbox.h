#pragma once
// The sandbox an isolated transform worker puts itself in before it reads any input (see
// isolated_worker.h): resource limits, no new privileges, death with its parent, no descriptors
// but its pipes, and a seccomp filter.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/transforms/isolated_worker.h"

namespace docpipe {

// Applies everything, in order; on failure returns what failed ("" on success). `parent` is the
// pid that started us: if it is already gone, the parent-death signal came too late to be set.
std::string enter_worker_sandbox(const WorkerLimits& limits, pid_t parent);

// The worker's address space now (/proc/self/statm), 0 if it cannot be read. RLIMIT_AS is this
// plus the transform's worker_memory_bytes, set once the worker has prepared.
uint64_t mapped_bytes();

// Whether this build can use the seccomp filter and RLIMIT_AS: sanitizer runtimes reserve
// terabytes of address space and make system calls of their own, so sanitizer builds bound the
// worker's memory through the sanitizer's allocator instead (worker_pool.cc) and skip the filter.
bool worker_sandbox_is_complete();

// The environment a worker starts with: OMP_THREAD_LIMIT=1 (a worker has one thread) and the
// daemon's TESSDATA_PREFIX if set; in sanitizer builds also the sanitizer's options with its
// allocator bounded by the worker's memory limit (failed allocations then return null, which the
// worker reports as exceeding its memory limit).
std::vector<std::string> worker_environment(const WorkerLimits& limits);

}  // namespace docpipe
