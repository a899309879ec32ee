// exec: pipes the document through an external command that the daemon config allow-lists by
// name (`commands`); a job names only the key, never an argv. The command runs without a shell in
// its own process group (see subprocess.h), streaming: each chunk is written to its stdin while
// its stdout is collected, so neither side can block the other. Memory per call is what the
// command writes while a chunk goes in, and at finish() what it writes after its input ends.

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include <chrono>
#include <nlohmann/json.hpp>

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
};

class ExecTransform : public DocumentTransform {
 public:
  ExecTransform(std::shared_ptr<const ExecCommand> command, std::function<Status()> interrupted)
      : command_(std::move(command)), interrupted_(std::move(interrupted)) {}

  Status update(std::string_view in, std::string& out) override {
    Status st = start();
    if (!st) return st;
    return drive(in, out, false);
  }

  Status finish(std::string& out) override {
    Status st = start();
    if (!st) return st;
    proc_->close_stdin();
    st = drive({}, out, true);
    if (!st) return st;
    Result<int> status = proc_->reap();
    if (!status) return with_name(status.error());
    return exit_status(*status);
  }

 private:
  Status start() {
    if (proc_ != nullptr) return ok();
    Result<std::unique_ptr<Subprocess>> p = Subprocess::start(command_->spec.argv);
    if (!p) return with_name(p.error());
    proc_ = std::move(p).value();
    deadline_ = Clock::now() + milliseconds(command_->spec.timeout_ms);
    return ok();
  }

  // Pumps until `in` is written (or refused: the command closed its stdin) or, when finishing,
  // until the command has exited and closed its output.
  Status drive(std::string_view in, std::string& out, bool finishing) {
    for (;;) {
      if (finishing ? proc_->done() : in.empty() || !proc_->stdin_open()) return ok();
      const Clock::time_point now = Clock::now();
      if (now >= deadline_) {
        proc_->kill_and_reap();
        return make_error(ErrorCode::kTimeout, prefix() + " timed out after " +
                                                   std::to_string(command_->spec.timeout_ms) +
                                                   " ms and was killed" + stderr_note());
      }
      if (interrupted_) {
        Status st = interrupted_();
        if (!st) {
          proc_->kill_and_reap();
          return make_error(st.error().code, prefix() + " was killed: " + st.error().message);
        }
      }
      const auto left = std::chrono::ceil<milliseconds>(deadline_ - now);
      Status st = proc_->pump(in, out, std::min(kPollInterval, left));
      if (!st) {
        proc_->kill_and_reap();
        return with_name(st.error());
      }
    }
  }

  Status exit_status(int status) const {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return ok();
    if (WIFEXITED(status)) {
      return make_error(
          ErrorCode::kCorruptInput,
          prefix() + " exited with status " + std::to_string(WEXITSTATUS(status)) + stderr_note());
    }
    const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    const char* what = sigdescr_np(sig);
    return make_error(ErrorCode::kInternal,
                      prefix() + " was killed by signal " + std::to_string(sig) + " (" +
                          (what != nullptr ? what : "unknown") + ")" + stderr_note());
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
  std::function<Status()> interrupted_;
  std::unique_ptr<Subprocess> proc_;  // started by the first call; killed and reaped with this
  Clock::time_point deadline_;
};

class ExecStep : public TransformStep {
 public:
  explicit ExecStep(ExecCommand command)
      : command_(std::make_shared<const ExecCommand>(std::move(command))) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext& doc) const override {
    return std::make_unique<ExecTransform>(command_, doc.check_interrupted);
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
  return std::make_shared<ExecStep>(ExecCommand{std::move(name), it->second});
}

const TransformRegistration kRegistration(TransformInfo{
    "exec",
    "pipes the document through an external command allow-listed by name in the daemon config "
    "(`commands`), without a shell, killed at its timeout_ms",
    true, schema().specs(), configure});

}  // namespace
}  // namespace docpipe
