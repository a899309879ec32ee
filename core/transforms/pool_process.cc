#include "core/transforms/pool_process.h"

#include <signal.h>

#include <nlohmann/json.hpp>

namespace docpipe {
namespace {

namespace pp = pool_protocol;
using std::chrono::milliseconds;

constexpr milliseconds kPollInterval{50};
// A process that closed its output is given this long to exit by itself before it is killed, so
// that the error can name its own exit status rather than our SIGKILL.
constexpr milliseconds kExitGrace{1000};

// A converter's bytes as a JSON string; invalid UTF-8 becomes U+FFFD instead of throwing.
std::string quoted(std::string_view s) {
  return nlohmann::json(std::string(s))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Accepts exactly one ready frame, and nothing before or after it.
struct ReadySink : pp::FrameDecoder::Sink {
  bool ready = false;
  Status data(std::string_view) override {
    return make_error(ErrorCode::kInternal,
                      "protocol violation: a data frame before its ready "
                      "frame");
  }
  Status control(char type, std::string_view payload) override {
    if (ready) {
      return make_error(ErrorCode::kInternal, std::string("protocol violation: a '") + type +
                                                  "' frame after its ready "
                                                  "frame, before any document");
    }
    if (type != pp::kReady) {
      return make_error(ErrorCode::kInternal, std::string("protocol violation: a '") + type +
                                                  "' frame before its ready frame");
    }
    if (payload != pp::kReadyText) {
      return make_error(ErrorCode::kInternal, "protocol violation: ready frame says " +
                                                  quoted(payload) + " (expected " +
                                                  quoted(pp::kReadyText) + ")");
    }
    ready = true;
    return ok();
  }
};

// Accepts the pong to one ping.
struct PongSink : pp::FrameDecoder::Sink {
  std::string expected;
  bool got = false;
  Status data(std::string_view) override {
    return make_error(ErrorCode::kInternal, "protocol violation: a data frame while idle");
  }
  Status control(char type, std::string_view payload) override {
    if (type != pp::kPing || got) {
      return make_error(ErrorCode::kInternal,
                        std::string("protocol violation: a '") + type + "' frame while idle");
    }
    if (payload != expected) {
      return make_error(ErrorCode::kInternal,
                        "protocol violation: a pong that does not echo its ping");
    }
    got = true;
    return ok();
  }
};

}  // namespace

const char* recycle_reason_name(RecycleReason r) {
  switch (r) {
    case RecycleReason::kMaxDocuments:
      return "max_documents";
    case RecycleReason::kCrash:
      return "crash";
    case RecycleReason::kTimeout:
      return "timeout";
    case RecycleReason::kHealth:
      return "health";
    case RecycleReason::kProtocol:
      return "protocol";
    case RecycleReason::kCancelled:
      return "cancelled";
    case RecycleReason::kStopped:
      return "stopped";
  }
  return "unknown";
}

Result<std::unique_ptr<PoolProcess>> PoolProcess::start(
    const std::string& label, const CommandSpec& spec, const std::function<Status()>& interrupted) {
  Result<std::unique_ptr<Subprocess>> started = Subprocess::start(spec.argv);
  if (!started) {
    Error e = started.error();
    const std::string head = "exec: ";
    if (e.message.rfind(head, 0) == 0) e.message.erase(0, head.size());
    e.message = label + ": " + e.message;
    return e;
  }
  std::unique_ptr<PoolProcess> p(new PoolProcess(std::move(started).value()));
  Subprocess& proc = *p->proc_;
  const std::string who = label + ": pool process " + std::to_string(proc.pid());
  const auto deadline = Clock::now() + milliseconds(spec.pool.ready_timeout_ms);
  ReadySink sink;
  std::string raw;
  std::string_view nothing;
  while (!sink.ready) {
    if (proc.exited() || !proc.stdout_open()) {
      proc.wait_exit(kExitGrace);
      proc.kill_and_reap();
      return make_error(ErrorCode::kIo, who + " " + p->describe_end() +
                                            " during start-up, before its ready frame" +
                                            p->stderr_note());
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      proc.kill_and_reap();
      return make_error(ErrorCode::kIo, who + " sent no ready frame within " +
                                            std::to_string(spec.pool.ready_timeout_ms) +
                                            " ms (ready_timeout_ms) and was killed" +
                                            p->stderr_note());
    }
    if (interrupted) {
      Status st = interrupted();
      if (!st) return st.error();  // the destructor kills and reaps it
    }
    const auto left = std::chrono::ceil<milliseconds>(deadline - now);
    Status st = proc.pump(nothing, raw, std::min(kPollInterval, left));
    if (st) st = p->decoder_.feed(raw, sink);
    raw.clear();
    if (!st) {
      proc.kill_and_reap();
      return make_error(ErrorCode::kInternal, who + ": " + st.error().message + p->stderr_note());
    }
  }
  if (!p->decoder_.at_boundary()) {
    return make_error(ErrorCode::kInternal,
                      who +
                          ": protocol violation: bytes after its ready frame, before any "
                          "document");
  }
  p->idle_since = Clock::now();
  return p;
}

std::optional<RecycleReason> PoolProcess::ping(milliseconds timeout, std::string* why) {
  PongSink sink;
  sink.expected = std::to_string(++pings_);
  std::string wire;
  pp::append_header(wire, pp::kPing, static_cast<uint32_t>(sink.expected.size()));
  wire += sink.expected;
  std::string_view to_send = wire;
  std::string raw;
  const auto deadline = Clock::now() + timeout;
  while (!sink.got) {
    if (proc_->exited() || !proc_->stdout_open() || (!proc_->stdin_open() && !to_send.empty())) {
      proc_->wait_exit(kExitGrace);
      proc_->kill_and_reap();
      *why = "pool process " + std::to_string(pid()) + " " + describe_end() + " while idle";
      return RecycleReason::kCrash;
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      *why = "pool process " + std::to_string(pid()) + " sent no pong within " +
             std::to_string(timeout.count()) + " ms (health_timeout_ms)";
      return RecycleReason::kHealth;
    }
    const auto left = std::chrono::ceil<milliseconds>(deadline - now);
    Status st = proc_->pump(to_send, raw, std::min(kPollInterval, left));
    if (st) st = decoder_.feed(raw, sink);
    raw.clear();
    if (!st) {
      *why = "pool process " + std::to_string(pid()) + ": " + st.error().message;
      return st.error().code == ErrorCode::kInternal ? RecycleReason::kProtocol
                                                     : RecycleReason::kCrash;
    }
  }
  if (!decoder_.at_boundary()) {
    *why = "pool process " + std::to_string(pid()) + ": protocol violation: bytes after its pong";
    return RecycleReason::kProtocol;
  }
  return std::nullopt;
}

std::optional<RecycleReason> PoolProcess::check_idle() {
  std::string raw;
  std::string_view nothing;
  Status st = proc_->pump(nothing, raw, milliseconds(0));
  if (!raw.empty()) return RecycleReason::kProtocol;
  if (!st || proc_->exited() || !proc_->stdout_open()) return RecycleReason::kCrash;
  return std::nullopt;
}

std::string PoolProcess::describe_end() const { return describe_wait_status(proc_->wait_status()); }

std::string PoolProcess::stderr_note() const {
  std::string tail = proc_->stderr_tail();
  return tail.empty() ? "" : "; stderr: " + tail;
}

}  // namespace docpipe
