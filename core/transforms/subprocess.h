#pragma once
// A child process for the exec transform: one allow-listed argv run without a shell, in its own
// process group, with stdin, stdout and stderr on non-blocking pipes that the caller pumps with
// poll(). Whatever happens (timeout, cancellation, an error, destruction) the whole group is
// killed and the child reaped, and descendants that left the group are swept up (see
// child_reaper.h), so no zombie or stray descendant outlives the document.

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace docpipe {

// How a reaped child ended, for an error: "exited with status 3", "was killed by signal 9
// (Killed)", or "ended (wait status N)".
std::string describe_wait_status(int status);

class Subprocess {
 public:
  // Keeps this much of the end of stderr for error messages.
  static constexpr size_t kStderrTailBytes = 8192;

  // Starts argv (argv[0] looked up in PATH) with only PATH and LANG=C.UTF-8 in its
  // environment, default signal dispositions and an empty signal mask.
  static Result<std::unique_ptr<Subprocess>> start(const std::vector<std::string>& argv);

  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  // One round of I/O: waits at most `wait` for any pipe to be ready (or the child to exit), then
  // writes what stdin takes from the front of `input` (removing it), appends what stdout has to
  // `out` and keeps the tail of stderr. If the child has closed its stdin, `input` is dropped.
  Status pump(std::string_view& input, std::string& out, std::chrono::milliseconds wait);

  // End of input: the child sees EOF on stdin.
  void close_stdin();
  bool stdin_open() const { return stdin_fd_ >= 0; }

  // The child has exited and both its stdout and stderr are at EOF.
  bool done() const { return exited_ && stdout_fd_ < 0 && stderr_fd_ < 0; }

  // Once done(): reaps the child and returns its wait status.
  Result<int> reap();

  // SIGKILL to the whole process group, then reaps the child. Idempotent.
  void kill_and_reap();

  // For long-lived children (exec pools): `sig` to the whole process group while the child is
  // not reaped yet (until then its pid, the group id, cannot name another group).
  void signal_group(int sig);
  // Waits at most `wait` for the child to exit (it is not reaped); whether it has.
  bool wait_exit(std::chrono::milliseconds wait);
  bool exited() const { return exited_; }
  bool stdout_open() const { return stdout_fd_ >= 0; }
  // The wait status kill_and_reap() or reap() collected (valid once reaped).
  int wait_status() const { return status_; }

  pid_t pid() const { return pid_; }
  // The last kStderrTailBytes of stderr, "..." in front if more was written.
  std::string stderr_tail() const;
  // Forgets what stderr holds so far, including what is waiting in the pipe (a pool process
  // before its next document: one document's error must not carry what the process wrote while
  // serving another's). What the process writes later, even about an earlier document, is kept.
  void clear_stderr();

 private:
  Subprocess() = default;
  void check_exit();
  void after_reap();
  void on_exit();
  Status read_stdout(std::string& out);
  Status read_stderr();
  Status write_stdin(std::string_view& input);
  void close_fd(int& fd);

  pid_t pid_ = -1;
  bool exited_ = false;  // the child is a zombie (or gone): its group has been killed
  bool reaped_ = false;
  int status_ = 0;
  int stdin_fd_ = -1;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  int pidfd_ = -1;  // readable once the child exits; -1 where pidfd_open is unavailable
  std::string stderr_;
  bool stderr_truncated_ = false;
};

}  // namespace docpipe
