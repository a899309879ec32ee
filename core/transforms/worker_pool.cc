#include "core/transforms/worker_pool.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <thread>

#include "core/transforms/child_reaper.h"
#include "core/transforms/spawn_child.h"
#include "core/transforms/worker_protocol.h"
#include "core/transforms/worker_sandbox.h"

namespace docpipe {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
namespace wp = worker_protocol;

// The parent-death signal fires when the *thread* that started a worker exits, and transformer
// threads come and go (a reload changes their number). So workers are started from one thread
// that lives as long as the process; it never holds anything else.
class SpawnerThread {
 public:
  static SpawnerThread& instance() {
    static SpawnerThread* t = new SpawnerThread;  // never destroyed: the thread outlives main()
    return *t;
  }

  template <typename F>
  auto run(F f) -> decltype(f()) {
    // Shared with the queued call, so that neither side outlives what it uses.
    auto task = std::make_shared<std::packaged_task<decltype(f())()>>(std::move(f));
    auto result = task->get_future();
    {
      std::lock_guard lock(mu_);
      tasks_.emplace_back([task] { (*task)(); });
    }
    cv_.notify_one();
    return result.get();
  }

 private:
  SpawnerThread() {
    std::thread([this] { loop(); }).detach();
  }
  void loop() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return !tasks_.empty(); });
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
};

struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  int take() { return std::exchange(fd, -1); }
};

Status set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return errno_error("fcntl", errno);
  }
  return ok();
}

std::string mib(uint64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

std::string signal_name(int sig) {
  const char* what = sigdescr_np(sig);
  return std::to_string(sig) + ", " + (what != nullptr ? what : "unknown signal");
}

}  // namespace

Error worker_death_error(const WorkerKey& key, int status) {
  const std::string& op = key.op;
  if (WIFEXITED(status) && WEXITSTATUS(status) == wp::kExitOutOfMemory) {
    return make_error(ErrorCode::kTooLarge, op + ": worker exceeded its memory limit (" +
                                                mib(key.limits.memory_bytes) +
                                                ", worker_memory_bytes)");
  }
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU) {
    return make_error(ErrorCode::kTooLarge, op + ": worker exceeded its CPU time limit (" +
                                                std::to_string(key.limits.cpu_seconds) + " s)");
  }
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) {
    return make_error(ErrorCode::kInternal,
                      op + ": worker was killed for a forbidden system call (signal " +
                          signal_name(SIGSYS) + ")");
  }
  if (WIFSIGNALED(status)) {
    return make_error(ErrorCode::kInternal,
                      op + ": worker crashed (signal " + signal_name(WTERMSIG(status)) + ")");
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == wp::kExitSetup) {
    return make_error(ErrorCode::kInternal,
                      op + ": worker could not set up its sandbox (see the daemon's log)");
  }
  return make_error(ErrorCode::kInternal, op + ": worker exited unexpectedly (status " +
                                              std::to_string(WEXITSTATUS(status)) + ")");
}

namespace {

// Waits for `fd` to be ready for `events`, or for the worker to exit, at most `wait`. Returns
// false once the worker has exited.
bool wait_ready(const WorkerProcess& w, int fd, short events, milliseconds wait) {
  pollfd fds[2] = {{fd, events, 0}, {w.pidfd(), POLLIN, 0}};
  const int n = w.pidfd() >= 0 ? 2 : 1;
  if (::poll(fds, static_cast<nfds_t>(n), static_cast<int>(wait.count())) < 0) return true;
  return n == 1 || fds[1].revents == 0 || fds[0].revents != 0;
}

}  // namespace

// ---- WorkerProcess ----------------------------------------------------------------------------

Result<std::unique_ptr<WorkerProcess>> WorkerProcess::start(const WorkerKey& key) {
  prepare_for_children();
  const std::string op_error = key.op + ": cannot start its worker";
  // O_CLOEXEC: a child another thread starts meanwhile must not inherit these ends.
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return errno_error(op_error + ": pipe", errno);
  Fd in_r(in[0]), in_w(in[1]);
  if (::pipe2(out, O_CLOEXEC) != 0) return errno_error(op_error + ": pipe", errno);
  Fd out_r(out[0]), out_w(out[1]);

  const std::string parent = std::to_string(::getpid());
  const std::string memory = std::to_string(key.limits.memory_bytes);
  const std::string cpu = std::to_string(key.limits.cpu_seconds);
  std::vector<std::string> argv_s = {"docpipe", "__transform-worker", key.op, parent, memory,
                                     cpu,       key.variant};
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s = worker_environment(key.limits);
  std::vector<char*> env;
  for (std::string& e : env_s) env.push_back(e.data());
  env.push_back(nullptr);

  std::unique_ptr<WorkerProcess> w(new WorkerProcess(key));
  const int rc = SpawnerThread::instance().run([&] {
    SpawnSpec spec;
    spec.file = "/proc/self/exe";
    spec.argv = argv.data();
    spec.envp = env.data();
    spec.stdin_fd = in_r.fd;
    spec.stdout_fd = out_w.fd;  // stderr stays the daemon's
    const int err = spawn_child(spec, &w->pid_);
    return err;
  });
  if (rc != 0) {
    w->reaped_ = true;
    return errno_error(op_error, rc);
  }
  w->to_fd_ = in_w.take();
  w->from_fd_ = out_r.take();
  w->pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, w->pid_, 0));
  for (int fd : {w->to_fd_, w->from_fd_}) {
    Status st = set_nonblocking(fd);
    if (!st) return make_error(st.error().code, op_error + ": " + st.error().message);
  }
  // The worker's ends: closed here, so that its death reads as EOF.
  ::close(in_r.take());
  ::close(out_w.take());

  // The hello says the sandbox is in place.
  wp::Hello hello;
  size_t got = 0;
  const auto deadline = Clock::now() + kStartTimeout;
  while (got < sizeof hello) {
    const ssize_t r =
        ::read(w->from_fd_, reinterpret_cast<char*>(&hello) + got, sizeof hello - got);
    if (r > 0) {
      got += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) return worker_death_error(key, w->reap(milliseconds(1000)));
    if (errno != EAGAIN && errno != EINTR) return errno_error(op_error + ": read", errno);
    if (Clock::now() > deadline) {
      return make_error(ErrorCode::kInternal, op_error + ": no answer within " +
                                                  std::to_string(kStartTimeout.count()) + " ms");
    }
    wait_ready(*w, w->from_fd_, POLLIN, milliseconds(50));
  }
  if (hello.magic != wp::kMagic) {
    return make_error(ErrorCode::kInternal, op_error +
                                                ": it answered with something else (is "
                                                "run_transform_worker_if_asked in main?)");
  }
  return w;
}

WorkerProcess::~WorkerProcess() {
  kill_and_reap();
  for (int fd : {to_fd_, from_fd_, pidfd_})
    if (fd >= 0) ::close(fd);
}

bool WorkerProcess::alive() const {
  if (reaped_) return false;
  if (pidfd_ >= 0) {
    pollfd p{pidfd_, POLLIN, 0};
    return ::poll(&p, 1, 0) == 0;
  }
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == 0;
}

int WorkerProcess::reap(milliseconds grace) {
  if (reaped_) return status_;
  const auto deadline = Clock::now() + grace;
  while (alive() && Clock::now() < deadline) {
    pollfd p{pidfd_, POLLIN, 0};
    if (pidfd_ >= 0) {
      ::poll(&p, 1, 10);
    } else {
      ::usleep(1000);
    }
  }
  ::kill(pid_, SIGKILL);  // a no-op on a zombie
  while (::waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  forget_child(pid_);
  return status_;
}

void WorkerProcess::kill_and_reap() {
  if (reaped_ || pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  reap(milliseconds(0));
}

// ---- WorkerPool -------------------------------------------------------------------------------

WorkerPool& WorkerPool::instance() {
  static WorkerPool* pool = new WorkerPool;  // never destroyed: workers die with us anyway
  return *pool;
}

Result<std::unique_ptr<WorkerProcess>> WorkerPool::take(const WorkerKey& key) {
  for (;;) {
    std::unique_ptr<WorkerProcess> w;
    {
      std::lock_guard lock(mu_);
      auto it = idle_.find(key);
      if (it == idle_.end() || it->second.empty()) break;
      w = std::move(it->second.back());
      it->second.pop_back();
      --idle_total_;
    }
    if (w->alive()) return w;
    // Died while idle (killed from outside): its replacement is started below.
  }
  return WorkerProcess::start(key);
}

void WorkerPool::give_back(std::unique_ptr<WorkerProcess> worker) {
  // Retired once it has used half its CPU limit, so that the next document has the other half.
  if (worker->cpu_usec / 1000000 >= static_cast<uint64_t>(worker->key().limits.cpu_seconds) / 2) {
    return;  // the destructor kills it
  }
  std::lock_guard lock(mu_);
  if (idle_total_ >= max_idle_) return;
  idle_[worker->key()].push_back(std::move(worker));
  ++idle_total_;
}

void WorkerPool::set_max_idle(size_t n) {
  std::map<WorkerKey, std::vector<std::unique_ptr<WorkerProcess>>> dropped;
  std::lock_guard lock(mu_);
  max_idle_ = n;
  if (idle_total_ > n) {
    dropped.swap(idle_);
    idle_total_ = 0;
  }
}

size_t WorkerPool::idle_count() {
  std::lock_guard lock(mu_);
  return idle_total_;
}

}  // namespace docpipe
