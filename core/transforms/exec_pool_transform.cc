#include "core/transforms/exec_pool_transform.h"

#include <chrono>

#include "core/command_breaker.h"
#include "core/transforms/pool_protocol.h"

namespace docpipe {
namespace {

namespace pp = pool_protocol;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// check_interrupted() is asked at least this often while the process works.
constexpr milliseconds kPollInterval{50};
// A process that closed a pipe mid-document gets this long to exit by itself, so that the error
// names its own exit status rather than our SIGKILL.
constexpr milliseconds kExitGrace{1000};

// One document through one pool process. The process is checked out by the first call, and given
// back (or ended) in settle(), the one place where the document's outcome is decided.
class PoolTransform : public DocumentTransform, private pp::FrameDecoder::Sink {
 public:
  PoolTransform(std::shared_ptr<CommandPool> pool, std::string command, int64_t timeout_ms,
                const DocumentContext& doc)
      : pool_(std::move(pool)),
        command_(std::move(command)),
        timeout_ms_(timeout_ms),
        interrupted_(doc.check_interrupted),
        breakers_(doc.breakers) {}

  ~PoolTransform() override {
    // Abandoned mid-document (a later step failed, the job was cancelled): the process is in the
    // middle of a document and cannot be reused.
    if (!settled_ && proc_ != nullptr) {
      (void)settle(PoolDocumentOutcome::kInterrupted, RecycleReason::kCancelled,
                   make_error(ErrorCode::kCancelled, pool_->label() + ": document abandoned"));
    }
  }

  Status update(std::string_view in, std::string& out) override {
    if (settled_) return result_;  // answered early: the rest of the input is not needed
    Status st = begin();
    if (!st) return st;
    std::string resumed;  // resuming a call stopped at kMaxCallOutputBytes
    if (more_) {
      resumed.swap(held_);
      resumed.append(in);
      in = resumed;
      more_ = false;
    }
    st = drive(in, out, false, out.size());
    if (st && more_) held_.assign(in);
    return st;
  }

  Status finish(std::string& out) override {
    if (settled_) return result_;
    Status st = begin();
    if (!st) return st;
    more_ = false;
    std::string_view no_input;
    return drive(no_input, out, true, out.size());
  }

  bool has_more() const override { return more_; }

 private:
  enum class Answer { kNone, kDone, kFailed };

  Status begin() {
    if (proc_ != nullptr) return ok();
    if (breakers_ != nullptr) {
      // Open: the document waits (kUnavailable), uncharged, and has not touched the pool.
      CommandAdmission admission = breakers_->admit(command_);
      if (!admission.admitted) {
        return make_error(ErrorCode::kUnavailable, pool_->label() + ": " + admission.reason);
      }
      run_ = std::move(admission.run);
    }
    Result<std::unique_ptr<PoolProcess>> p = pool_->acquire(interrupted_, &start_failed_);
    if (!p) {
      const ErrorCode code = p.error().code;
      const bool interrupted = code == ErrorCode::kCancelled || code == ErrorCode::kTimeout;
      return settle(
          interrupted ? PoolDocumentOutcome::kInterrupted : PoolDocumentOutcome::kUnavailable,
          std::nullopt, p.error());
    }
    proc_ = std::move(p).value();
    deadline_ = Clock::now() + milliseconds(timeout_ms_);
    return ok();
  }

  // Writes `in` as data frames (all of it, or until the process has answered), and when
  // finishing the end frame, while passing the process's data frames to `out`; returns once the
  // input is written, or the document is over (settled), or this call's output (from
  // `start_size`) passed kMaxCallOutputBytes (then more_, and `in` is what is left).
  Status drive(std::string_view& in, std::string& out, bool finishing, size_t start_size) {
    out_ = &out;
    for (;;) {
      if (wire_pos_ == wire_.size()) {
        wire_.clear();
        wire_pos_ = 0;
        if (answer_ != Answer::kNone) in = {};  // it has answered: it needs no more input
        if (!in.empty()) {
          const size_t n = std::min(in.size(), pp::kSendPayload);
          pp::append_header(wire_, pp::kData, static_cast<uint32_t>(n));
          wire_.append(in.substr(0, n));
          in.remove_prefix(n);
        } else if ((finishing || answer_ != Answer::kNone) && !end_sent_) {
          pp::append_header(wire_, pp::kEnd, 0);
          end_sent_ = true;
        }
      }
      const bool written = wire_pos_ == wire_.size();
      if (written && end_sent_ && answer_ != Answer::kNone) return complete();
      if (!finishing && written && in.empty() && answer_ == Answer::kNone) return ok();
      if (out.size() - start_size >= kMaxCallOutputBytes) {
        more_ = true;
        return ok();
      }
      Subprocess& proc = proc_->proc();
      if (proc.exited() || !proc.stdout_open() || !proc.stdin_open()) return crashed();
      const Clock::time_point now = Clock::now();
      if (now >= deadline_) return timed_out();
      if (interrupted_) {
        Status st = interrupted_();
        if (!st) {
          const bool timeout = st.error().code == ErrorCode::kTimeout;
          return settle(PoolDocumentOutcome::kInterrupted,
                        timeout ? RecycleReason::kTimeout : RecycleReason::kCancelled, st.error());
        }
      }
      const auto left = std::chrono::ceil<milliseconds>(deadline_ - now);
      std::string_view pending(wire_.data() + wire_pos_, wire_.size() - wire_pos_);
      const size_t before = pending.size();
      Status st = proc.pump(pending, raw_, std::min(kPollInterval, left));
      if (proc.stdin_open()) wire_pos_ += before - pending.size();
      if (!st) return crashed();
      st = proc_->decoder().feed(raw_, *this);
      raw_.clear();
      if (!st) return violation(st.error().message);
    }
  }

  Status complete() {
    if (!proc_->decoder().at_boundary()) {
      return violation("protocol violation: bytes after the document's status frame");
    }
    if (answer_ == Answer::kDone) return settle(PoolDocumentOutcome::kSucceeded, std::nullopt, {});
    return settle(
        PoolDocumentOutcome::kFailed, std::nullopt,
        make_error(ErrorCode::kCorruptInput, pool_->label() + " failed the document: " +
                                                 (failure_.empty() ? "(no message)" : failure_)));
  }

  Status crashed() {
    Subprocess& proc = proc_->proc();
    const bool exited = proc.wait_exit(kExitGrace);
    const std::string what = !proc.stdout_open() ? "closed its output" : "closed its input";
    proc.kill_and_reap();
    const std::string end = exited ? proc_->describe_end() : what + " and was killed";
    return settle(
        PoolDocumentOutcome::kCrashed, RecycleReason::kCrash,
        make_error(ErrorCode::kIo, who() + " " + end + " mid-document" + proc_->stderr_note()));
  }

  Status timed_out() {
    proc_->proc().kill_and_reap();
    return settle(PoolDocumentOutcome::kTimedOut, RecycleReason::kTimeout,
                  make_error(ErrorCode::kTimeout,
                             pool_->label() + " timed out after " + std::to_string(timeout_ms_) +
                                 " ms and was killed (pool process " +
                                 std::to_string(proc_->pid()) + ")" + proc_->stderr_note()));
  }

  Status violation(const std::string& message) {
    proc_->proc().kill_and_reap();
    return settle(PoolDocumentOutcome::kProtocol, RecycleReason::kProtocol,
                  make_error(ErrorCode::kInternal, who() + ": " + message + proc_->stderr_note()));
  }

  std::string who() const {
    return pool_->label() + ": pool process " + std::to_string(proc_->pid());
  }

  // The one place where a document's outcome in a pool is decided: it is counted, and its
  // process goes back to the pool (no reason) or is ended (`reason`). `error` is the document's
  // error, empty on success. A per-command circuit breaker hooks here.
  //
  // The command's breaker hears: a crash, a timeout, a protocol violation or a process that cannot
  // start is a failure (and the document's error becomes kCommandFailed: worth another attempt,
  // which waits while the breaker is open); a document the converter answered, done or failed
  // ("F": the converter is healthy, the document is not), is a success; a document interrupted,
  // refused during the pool's start backoff (the start that failed was counted once, by its own
  // document) or that found every process busy for queue_timeout_ms says nothing of the command.
  Status settle(PoolDocumentOutcome outcome, std::optional<RecycleReason> reason,
                std::optional<Error> error) {
    ++pool_->counters().documents[int(outcome)];
    if (run_.watched()) {
      std::optional<CommandFailure> failure;
      switch (outcome) {
        case PoolDocumentOutcome::kSucceeded:
        case PoolDocumentOutcome::kFailed:
          run_.succeeded();
          break;
        case PoolDocumentOutcome::kCrashed:
        case PoolDocumentOutcome::kProtocol:
          failure = CommandFailure::kCrashed;
          break;
        case PoolDocumentOutcome::kTimedOut:
          failure = CommandFailure::kTimedOut;
          break;
        case PoolDocumentOutcome::kUnavailable:
          if (start_failed_) {
            failure = CommandFailure::kCannotStart;
          } else {
            run_.abandon();
          }
          break;
        case PoolDocumentOutcome::kInterrupted:
          run_.abandon();
          break;
      }
      if (failure && error) {
        run_.failed(*failure, error->message);
        error->code = ErrorCode::kCommandFailed;
      }
    }
    if (proc_ != nullptr) pool_->release(std::move(proc_), reason);
    settled_ = true;
    more_ = false;
    result_ = error ? Status(*error) : ok();
    return result_;
  }

  // pp::FrameDecoder::Sink: what the process sends during a document.
  Status data(std::string_view piece) override {
    if (answer_ != Answer::kNone) {
      return make_error(ErrorCode::kInternal,
                        "protocol violation: a data frame after the document's status frame");
    }
    out_->append(piece);
    return ok();
  }
  Status control(char type, std::string_view payload) override {
    if (type != pp::kDone && type != pp::kFailed) {
      return make_error(ErrorCode::kInternal, std::string("protocol violation: a '") + type +
                                                  "' frame during a document");
    }
    if (answer_ != Answer::kNone) {
      return make_error(ErrorCode::kInternal,
                        "protocol violation: a second status frame for one document");
    }
    answer_ = type == pp::kDone ? Answer::kDone : Answer::kFailed;
    failure_.assign(payload);
    return ok();
  }

  std::shared_ptr<CommandPool> pool_;
  std::string command_;
  int64_t timeout_ms_;  // the command's per-document limit, from the moment it has a process
  std::function<Status()> interrupted_;
  CommandBreakers* breakers_;          // null: none
  CommandRun run_;                     // this document's run as its breaker admitted it
  bool start_failed_ = false;          // acquire() failed on a start it attempted
  std::unique_ptr<PoolProcess> proc_;  // checked out by the first call, until settle()
  Clock::time_point deadline_;
  bool settled_ = false;
  Status result_;
  std::string wire_;  // the frame being written: at most kSendPayload + a header
  size_t wire_pos_ = 0;
  bool end_sent_ = false;  // the end frame is in wire_ or written
  Answer answer_ = Answer::kNone;
  std::string failure_;
  std::string raw_;             // one round of the process's stdout, decoded at once
  std::string* out_ = nullptr;  // where data frames go during drive()
  bool more_ = false;           // the last call stopped at kMaxCallOutputBytes
  std::string held_;            // input it had not written then
};

}  // namespace

std::unique_ptr<DocumentTransform> make_pool_transform(std::shared_ptr<CommandPool> pool,
                                                       const std::string& command,
                                                       int64_t timeout_ms,
                                                       const DocumentContext& doc) {
  return std::make_unique<PoolTransform>(std::move(pool), command, timeout_ms, doc);
}

}  // namespace docpipe
