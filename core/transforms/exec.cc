// exec: pipes the document through an external command that the daemon config allow-lists by
// name (`commands`); a job names only the key, never an argv. The command runs without a shell in
// its own process group (see subprocess.h), streaming: each chunk is written to its stdin while
// its stdout is collected, so neither side can block the other. A call hands back at most about
// kMaxCallOutputBytes of what the command wrote and says has_more() while it has more.
// A command with "mode": "pool" is served by long-lived processes instead (exec_pool.h); only
// ExecStep::begin() tells the two apart.
//
// Each run asks the command's circuit breaker (DocumentContext::breakers) first and tells it how
// the run ended (command_breaker.h): a crash, a non-zero exit, its timeout_ms or a failed start
// is a failure, exit 0 a success; a run cut short for the document's sake (cancel, its
// document_timeout_ms, the output side failing) is abandoned, no verdict. A watched failure is
// kCommandFailed, worth another attempt; a refusal is kUnavailable, and the document waits.
// In pool mode the same breaker is asked and told in exec_pool_transform.cc (settle()).

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "core/command_breaker.h"
#include "core/transforms/command_pools.h"
#include "core/transforms/exec_pool_transform.h"
#include "core/transforms/param_reader.h"
#include "core/transforms/subprocess.h"

namespace docpipe {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// check_interrupted() is asked at least this often while the command runs.
constexpr milliseconds kPollInterval{50};

struct ExecCommand {
  std::string name;
  CommandSpec spec;
  std::shared_ptr<CommandPool> pool;  // "mode": "pool" only
};

class ExecTransform : public DocumentTransform {
 public:
  ExecTransform(std::shared_ptr<const ExecCommand> command, const DocumentContext& doc)
      : command_(std::move(command)),
        interrupted_(doc.check_interrupted),
        breakers_(doc.breakers) {}

  Status update(std::string_view in, std::string& out) override {
    Status st = start();
    if (!st) return st;
    // Resuming a call stopped at kMaxCallOutputBytes: the input it had not written yet.
    std::string resumed;
    if (more_) {
      resumed.swap(held_);
      resumed.append(in);  // callers pass nothing new while has_more(); never lose it if they do
      in = resumed;
      more_ = false;
    }
    const size_t start_size = out.size();
    st = drive(in, out, false, start_size);
    if (st && more_) held_.assign(in);
    return st;
  }

  Status finish(std::string& out) override {
    Status st = start();
    if (!st) return st;
    more_ = false;
    proc_->close_stdin();
    std::string_view no_input;
    st = drive(no_input, out, true, out.size());
    if (!st || more_) return st;
    Result<int> status = proc_->reap();
    if (!status) return failed(CommandFailure::kCrashed, with_name(status.error()));
    st = exit_status(*status);
    if (st) run_.succeeded();
    return st;
  }

  bool has_more() const override { return more_; }

 private:
  Status start() {
    if (proc_ != nullptr) return ok();
    if (breakers_ != nullptr) {
      CommandAdmission admission = breakers_->admit(command_->name);
      if (!admission.admitted) {
        return make_error(ErrorCode::kUnavailable, prefix() + ": " + admission.reason);
      }
      run_ = std::move(admission.run);
    }
    Result<std::unique_ptr<Subprocess>> p = Subprocess::start(command_->spec.argv);
    if (!p) return failed(CommandFailure::kCannotStart, with_name(p.error()));
    proc_ = std::move(p).value();
    deadline_ = Clock::now() + milliseconds(command_->spec.timeout_ms);
    return ok();
  }

  // Pumps until `in` is written (or refused: the command closed its stdin) or, when finishing,
  // until the command has exited and closed its output; or until this call's output (from
  // `start_size`) passes kMaxCallOutputBytes: then more_, and `in` is what is left to write.
  Status drive(std::string_view& in, std::string& out, bool finishing, size_t start_size) {
    for (;;) {
      if (finishing ? proc_->done() : in.empty() || !proc_->stdin_open()) return ok();
      if (out.size() - start_size >= kMaxCallOutputBytes) {
        more_ = true;
        return ok();
      }
      const Clock::time_point now = Clock::now();
      if (now >= deadline_) {
        proc_->kill_and_reap();
        return failed(
            CommandFailure::kTimedOut,
            make_error(ErrorCode::kTimeout, prefix() + " timed out after " +
                                                std::to_string(command_->spec.timeout_ms) +
                                                " ms and was killed" + stderr_note()));
      }
      if (interrupted_) {
        Status st = interrupted_();
        if (!st) {
          proc_->kill_and_reap();
          run_.abandon();     // for the document's sake: no verdict on the command
          return st.error();  // the document's timeout or cancellation, which names it
        }
      }
      const auto left = std::chrono::ceil<milliseconds>(deadline_ - now);
      Status st = proc_->pump(in, out, std::min(kPollInterval, left));
      if (!st) {
        proc_->kill_and_reap();
        return failed(CommandFailure::kCrashed, with_name(st.error()));
      }
    }
  }

  Status exit_status(int status) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return ok();
    const bool exited = WIFEXITED(status);
    return failed(exited ? CommandFailure::kExited : CommandFailure::kCrashed,
                  make_error(exited ? ErrorCode::kCorruptInput : ErrorCode::kInternal,
                             prefix() + " " + describe_wait_status(status) + stderr_note()));
  }

  // The command failed: its breaker hears of it, and a watched failure is worth another attempt
  // (which waits while the breaker is open) instead of failing the document for good.
  Error failed(CommandFailure why, Error e) {
    if (run_.watched()) {
      run_.failed(why, e.message);
      e.code = ErrorCode::kCommandFailed;
    }
    return e;
  }

  std::string prefix() const { return "exec: command " + nlohmann::json(command_->name).dump(); }

  std::string stderr_note() const {
    std::string tail = proc_ != nullptr ? proc_->stderr_tail() : "";
    return tail.empty() ? "" : "; stderr: " + tail;
  }

  // "exec: cannot start tr: ..." -> "exec: command "upper": cannot start tr: ...".
  Error with_name(Error e) const {
    const std::string head = "exec: ";
    if (e.message.rfind(head, 0) == 0) e.message.erase(0, head.size());
    e.message = prefix() + ": " + e.message;
    return e;
  }

  std::shared_ptr<const ExecCommand> command_;
  bool more_ = false;  // the last call stopped at kMaxCallOutputBytes
  std::string held_;   // input it had not written to the command then
  std::function<Status()> interrupted_;
  CommandBreakers* breakers_;  // null: none
  // This run as the breaker admitted it. Destroyed unreported (the chain stopped calling: the
  // output side failed), it is abandoned, after proc_ below has killed the command.
  CommandRun run_;
  std::unique_ptr<Subprocess> proc_;  // started by the first call; killed and reaped with this
  Clock::time_point deadline_;
};

class ExecStep : public TransformStep {
 public:
  explicit ExecStep(ExecCommand command)
      : command_(std::make_shared<const ExecCommand>(std::move(command))) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext& doc) const override {
    if (command_->pool != nullptr)
      return make_pool_transform(command_->pool, command_->name, command_->spec.timeout_ms, doc);
    return std::make_unique<ExecTransform>(command_, doc);
  }
  std::vector<std::string> commands() const override { return {command_->name}; }
  // The command behind the name (the daemon config's allow-list) decides the output.
  std::string fingerprint_extra() const override {
    return nlohmann::json(command_->spec.argv).dump();
  }

 private:
  std::shared_ptr<const ExecCommand> command_;
};

const ParamSchema& schema() {
  static const ParamSchema s = ParamSchema().required_string(
      "command",
      "name of a command in the daemon config's `commands` allow-list; its argv and timeout_ms "
      "come from there");
  return s;
}

std::shared_ptr<const TransformStep> configure(const nlohmann::json& params,
                                               const TransformEnv& env, FieldErrors& errors) {
  ParamReader reader(schema(), params, errors);
  std::string name = reader.string("command");
  if (!reader.ok()) return nullptr;
  auto it = env.commands.find(name);
  if (it == env.commands.end()) {
    std::string allowed;
    for (const auto& [key, spec] : env.commands) allowed += (allowed.empty() ? "" : ", ") + key;
    reader.error("command", nlohmann::json(name).dump() + " is not an allowed command (allowed: " +
                                (allowed.empty() ? "none" : allowed) + ")");
    return nullptr;
  }
  std::shared_ptr<CommandPool> pool;
  if (it->second.mode == CommandMode::kPool) pool = CommandPools::instance().get(name, it->second);
  return std::make_shared<ExecStep>(ExecCommand{std::move(name), it->second, std::move(pool)});
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "exec",
    .description = "pipes the document through an external command allow-listed by name in the "
                   "daemon config (`commands`), without a shell, killed at its timeout_ms; a "
                   "process per document, or a pool of long-lived ones (\"mode\": \"pool\"); "
                   "while the command's circuit breaker is open its documents wait",
    .streaming = true,
    .params = schema().specs(),
    .configure = configure});

}  // namespace
}  // namespace docpipe
