#pragma once
// The exec transform's pool mode: one document streamed through a process of its command's pool
// (exec_pool.h) in the framed protocol of pool_protocol.h. exec.cc dispatches here when the
// command says "mode": "pool"; everything about processes stays in the pool.

#include <functional>
#include <memory>

#include "core/transform.h"
#include "core/transforms/exec_pool.h"

namespace docpipe {

// `command` is the command's name in `commands`, which its circuit breaker (doc.breakers, if
// any) is kept under; `timeout_ms` its per-document limit as the job's step was configured.
std::unique_ptr<DocumentTransform> make_pool_transform(std::shared_ptr<CommandPool> pool,
                                                       const std::string& command,
                                                       int64_t timeout_ms,
                                                       const DocumentContext& doc);

}  // namespace docpipe
