#pragma once
// One long-lived process of an `exec` pool: a Subprocess (own process group, no shell, only PATH
// and LANG in its environment, descendants killed and reaped with it) that has said it is ready
// in the framed protocol of pool_protocol.h, and what the pool knows about it.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/result.h"
#include "core/transform.h"
#include "core/transforms/pool_protocol.h"
#include "core/transforms/subprocess.h"

namespace docpipe {

// Why a pool process was ended; docpipe_command_pool_recycles_total{reason}.
enum class RecycleReason {
  kMaxDocuments,  // served max_documents
  kCrash,         // exited or closed its output (mid-document or idle)
  kTimeout,       // a document passed timeout_ms or document_timeout_ms
  kHealth,        // no pong within health_timeout_ms
  kProtocol,      // wrote something the protocol does not allow
  kCancelled,     // its document was cancelled or abandoned mid-way
  kStopped,       // the daemon stopped, or a reload replaced the command
};
inline constexpr int kRecycleReasons = 7;
const char* recycle_reason_name(RecycleReason r);

class PoolProcess {
 public:
  using Clock = std::chrono::steady_clock;

  // Starts `spec.argv` and waits for its ready frame, at most spec.pool.ready_timeout_ms, asking
  // `interrupted` (may be empty) every 50 ms. `label` names the command in errors
  // ("exec: command \"upper\"").
  static Result<std::unique_ptr<PoolProcess>> start(const std::string& label,
                                                    const CommandSpec& spec,
                                                    const std::function<Status()>& interrupted);

  pid_t pid() const { return proc_->pid(); }
  Subprocess& proc() { return *proc_; }
  pool_protocol::FrameDecoder& decoder() { return decoder_; }

  // Health check: a ping, and its pong within `timeout`. nullopt: healthy; else why it must go,
  // with the message in *why.
  std::optional<RecycleReason> ping(std::chrono::milliseconds timeout, std::string* why);

  // Non-blocking look at an idle process: nullopt if nothing happened, kCrash if it exited or
  // closed its output, kProtocol if it wrote anything (nothing is asked of it while idle).
  std::optional<RecycleReason> check_idle();

  // "exited with status 3", "was killed by signal 9 (Killed)"; after the process was reaped.
  std::string describe_end() const;
  // "; stderr: ..." with the tail of its stderr, or "".
  std::string stderr_note() const;

  int64_t documents = 0;         // documents it has served
  Clock::time_point idle_since;  // when it last became idle

 private:
  explicit PoolProcess(std::unique_ptr<Subprocess> proc) : proc_(std::move(proc)) {}
  std::unique_ptr<Subprocess> proc_;
  pool_protocol::FrameDecoder decoder_;
  uint64_t pings_ = 0;
};

}  // namespace docpipe
