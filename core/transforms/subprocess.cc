#include "core/transforms/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <mutex>

#include "core/transforms/child_reaper.h"
#include "core/transforms/spawn_child.h"

namespace docpipe {
namespace {

constexpr size_t kReadBlock = 64u << 10;
// Reads per pipe per round, so that a child writing fast cannot starve its stdin.
constexpr int kMaxReadsPerRound = 16;

// The child's PATH is the daemon's, read once, so that the lookup posix_spawnp does (in the
// daemon's environment) and the child agree.
const std::string& path_entry() {
  static std::once_flag once;
  static std::string entry;
  std::call_once(once, [] {
    const char* path = std::getenv("PATH");
    entry = std::string("PATH=") + (path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  });
  return entry;
}

struct Pipe {
  int fd[2] = {-1, -1};
  ~Pipe() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
  int take(int i) {
    int f = fd[i];
    fd[i] = -1;
    return f;
  }
};

Status set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
    return errno_error("exec: fcntl", errno);
  return ok();
}

}  // namespace

Result<std::unique_ptr<Subprocess>> Subprocess::start(const std::vector<std::string>& argv) {
  if (argv.empty()) return make_error(ErrorCode::kInvalidArgument, "exec: empty argv");
  prepare_for_children();
  const std::string& path = path_entry();
  // O_CLOEXEC: a child another thread spawns meanwhile must not inherit these ends.
  Pipe in, out, err;
  if (::pipe2(in.fd, O_CLOEXEC) != 0 || ::pipe2(out.fd, O_CLOEXEC) != 0 ||
      ::pipe2(err.fd, O_CLOEXEC) != 0) {
    return errno_error("exec: cannot create pipes", errno);
  }

  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::string lang = "LANG=C.UTF-8";
  char* env[] = {const_cast<char*>(path.c_str()), lang.data(), nullptr};

  SpawnSpec spec;
  spec.file = argv[0].c_str();
  spec.search_path = true;
  spec.argv = args.data();
  spec.envp = env;
  spec.stdin_fd = in.fd[0];
  spec.stdout_fd = out.fd[1];
  spec.stderr_fd = err.fd[1];
  spec.own_process_group = true;  // one kill() reaches all its descendants
  pid_t pid = -1;
  const int rc = spawn_child(spec, &pid);
  if (rc != 0) return errno_error("exec: cannot start " + argv[0], rc);

  std::unique_ptr<Subprocess> p(new Subprocess());
  p->pid_ = pid;
  p->stdin_fd_ = in.take(1);
  p->stdout_fd_ = out.take(0);
  p->stderr_fd_ = err.take(0);
  // Linux >= 5.3; without it, exits are noticed by polling waitid() each round.
  p->pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  for (int fd : {p->stdin_fd_, p->stdout_fd_, p->stderr_fd_}) {
    Status st = set_nonblocking(fd);
    if (!st) return st.error();  // the destructor kills and reaps the child
  }
  return p;
}

Subprocess::~Subprocess() {
  kill_and_reap();
  close_fd(stdin_fd_);
  close_fd(stdout_fd_);
  close_fd(stderr_fd_);
  close_fd(pidfd_);
}

void Subprocess::close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

void Subprocess::close_stdin() { close_fd(stdin_fd_); }

// The child is a zombie now, so its pid (the group id) cannot be reused yet: kill whatever is
// left in its group (a background process it started), whose pipes would otherwise stay open.
void Subprocess::on_exit() {
  exited_ = true;
  ::kill(-pid_, SIGKILL);
  close_fd(pidfd_);
}

void Subprocess::check_exit() {
  if (exited_) return;
  siginfo_t info{};
  // WNOWAIT leaves the zombie in place until reap().
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0) {
    if (info.si_pid == pid_) on_exit();
  } else if (errno == ECHILD) {
    // Reaped behind our back (SIGCHLD ignored): the pid may belong to another process by now,
    // so its group is not killed; nothing is left to wait for.
    exited_ = true;
    reaped_ = true;
    close_fd(pidfd_);
    after_reap();
  }
}

Status Subprocess::pump(std::string_view& input, std::string& out, std::chrono::milliseconds wait) {
  if (stdin_fd_ < 0) input = {};
  pollfd fds[4];
  int n = 0;
  int in_at = -1, out_at = -1, err_at = -1, pid_at = -1;
  if (stdin_fd_ >= 0 && !input.empty()) {
    in_at = n;
    fds[n++] = pollfd{stdin_fd_, POLLOUT, 0};
  }
  if (stdout_fd_ >= 0) {
    out_at = n;
    fds[n++] = pollfd{stdout_fd_, POLLIN, 0};
  }
  if (stderr_fd_ >= 0) {
    err_at = n;
    fds[n++] = pollfd{stderr_fd_, POLLIN, 0};
  }
  if (!exited_ && pidfd_ >= 0) {
    pid_at = n;
    fds[n++] = pollfd{pidfd_, POLLIN, 0};
  }
  // Without a pidfd the exit is only seen by asking, so do not sleep long between asks.
  if (!exited_ && pidfd_ < 0) wait = std::min(wait, std::chrono::milliseconds(10));
  const int ready = ::poll(fds, static_cast<nfds_t>(n), static_cast<int>(wait.count()));
  if (ready < 0) {
    if (errno == EINTR) return ok();
    return errno_error("exec: poll", errno);
  }
  if (out_at >= 0 && fds[out_at].revents != 0) {
    Status st = read_stdout(out);
    if (!st) return st;
  }
  if (err_at >= 0 && fds[err_at].revents != 0) {
    Status st = read_stderr();
    if (!st) return st;
  }
  if (in_at >= 0 && fds[in_at].revents != 0) {
    Status st = write_stdin(input);
    if (!st) return st;
  }
  if (pid_at >= 0 ? fds[pid_at].revents != 0 : !exited_) check_exit();
  return ok();
}

Status Subprocess::read_stdout(std::string& out) {
  for (int i = 0; i < kMaxReadsPerRound; ++i) {
    const size_t old_size = out.size();
    out.resize(old_size + kReadBlock);
    const ssize_t r = ::read(stdout_fd_, out.data() + old_size, kReadBlock);
    out.resize(old_size + static_cast<size_t>(std::max<ssize_t>(r, 0)));
    if (r > 0) continue;
    if (r == 0) {
      close_fd(stdout_fd_);
    } else if (errno != EAGAIN && errno != EINTR) {
      return errno_error("exec: read from the command's stdout", errno);
    }
    break;
  }
  return ok();
}

Status Subprocess::read_stderr() {
  char buf[kReadBlock];
  for (int i = 0; i < kMaxReadsPerRound; ++i) {
    const ssize_t r = ::read(stderr_fd_, buf, sizeof buf);
    if (r > 0) {
      stderr_.append(buf, static_cast<size_t>(r));
      if (stderr_.size() > 2 * kStderrTailBytes) {
        stderr_.erase(0, stderr_.size() - kStderrTailBytes);
        stderr_truncated_ = true;
      }
      continue;
    }
    if (r == 0) {
      close_fd(stderr_fd_);
    } else if (errno != EAGAIN && errno != EINTR) {
      return errno_error("exec: read from the command's stderr", errno);
    }
    break;
  }
  return ok();
}

Status Subprocess::write_stdin(std::string_view& input) {
  while (!input.empty()) {
    const ssize_t w = ::write(stdin_fd_, input.data(), std::min(input.size(), kReadBlock));
    if (w > 0) {
      input.remove_prefix(static_cast<size_t>(w));
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (w < 0 && errno == EPIPE) {
      // The command stopped reading (it may not need all of its input): the rest is dropped,
      // and its exit status says whether that was fine.
      close_fd(stdin_fd_);
      input = {};
      break;
    }
    return errno_error("exec: write to the command's stdin", errno);
  }
  return ok();
}

Result<int> Subprocess::reap() {
  if (reaped_) return make_error(ErrorCode::kInternal, "exec: the command's exit status is lost");
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  reaped_ = true;
  if (r < 0) return errno_error("exec: waitpid", errno);
  status_ = status;
  after_reap();
  return status;
}

void Subprocess::kill_and_reap() {
  if (reaped_ || pid_ <= 0) return;
  // Before reaping: until then the group id cannot name another process group.
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);  // in case it had not joined its group yet
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  status_ = status;
  reaped_ = true;
  exited_ = true;
  after_reap();
}

void Subprocess::signal_group(int sig) {
  if (reaped_ || pid_ <= 0) return;
  ::kill(-pid_, sig);
}

bool Subprocess::wait_exit(std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    check_exit();
    if (exited_) return true;
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    if (pidfd_ >= 0) {
      pollfd p{pidfd_, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(left.count()));
    } else {
      // Without a pidfd the exit is only seen by asking.
      pollfd none{-1, 0, 0};
      ::poll(&none, 0, static_cast<int>(std::min<int64_t>(left.count(), 10)));
    }
  }
}

// What the group kill missed: descendants that called setsid or setpgid were re-parented to us
// (a subreaper) when their parent exited, and are killed and reaped here.
void Subprocess::after_reap() {
  forget_child(pid_);
  sweep_escaped_children();
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* what = sigdescr_np(sig);
    return "was killed by signal " + std::to_string(sig) + " (" +
           (what != nullptr ? what : "unknown") + ")";
  }
  return "ended (wait status " + std::to_string(status) + ")";
}

void Subprocess::clear_stderr() {
  // What was written so far is in the pipe by now: read it (without waiting) to drop it too.
  // Bounded: a process that floods its stderr cannot hold the caller here.
  for (int round = 0; stderr_fd_ >= 0 && round < 64; ++round) {
    stderr_.clear();
    (void)read_stderr();
    if (stderr_.empty()) break;
  }
  stderr_.clear();
  stderr_truncated_ = false;
}

std::string Subprocess::stderr_tail() const {
  std::string_view tail = stderr_;
  if (tail.size() > kStderrTailBytes) tail.remove_prefix(tail.size() - kStderrTailBytes);
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r' || tail.back() == ' '))
    tail.remove_suffix(1);
  return (stderr_truncated_ || stderr_.size() > kStderrTailBytes ? "..." : "") + std::string(tail);
}

}  // namespace docpipe
