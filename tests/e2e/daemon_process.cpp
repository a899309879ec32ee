#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "tests/e2e/harness.h"

// The process half of the e2e harness (harness.h): the CLI run as a command, and DaemonProcess.

extern char** environ;

namespace e2e {

namespace {

std::runtime_error sys_error(const std::string& what, int err) {
  return std::runtime_error(what + ": " + std::strerror(err));
}

int decode_wait_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// The child's environment: the test's, minus what would make the daemon talk to systemd, plus
// `extra` ("NAME=VALUE" entries).
std::vector<std::string> child_environment(const std::vector<std::string>& extra) {
  static const char* const kDropped[] = {"NOTIFY_SOCKET", "JOURNAL_STREAM", "WATCHDOG_USEC",
                                         "WATCHDOG_PID",  "LISTEN_FDS",     "LISTEN_PID"};
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    bool drop = std::any_of(std::begin(kDropped), std::end(kDropped), [&](const char* name) {
      size_t n = std::strlen(name);
      return entry.size() > n && entry.substr(0, n) == name && entry[n] == '=';
    });
    if (!drop) env.emplace_back(entry);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

// stdin from /dev/null; stdout to `out_path`, stderr to `err_path` (the same file if equal).
pid_t spawn_with_files(const std::vector<std::string>& argv, const std::string& out_path,
                       const std::string& err_path, bool append,
                       const std::vector<std::string>& extra_env = {}) {
  if (argv.empty()) throw std::runtime_error("spawn: empty argv");
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings = child_environment(extra_env);
  std::vector<char*> env;
  for (std::string& e : env_strings) env.push_back(e.data());
  env.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // No O_CLOEXEC: these descriptors are what the child keeps across exec.
  int flags = O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(), flags, 0644);
  if (err_path == out_path) {
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(), flags, 0644);
  }
  // The test runner may block or ignore signals; the child starts with the defaults.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, &attr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw sys_error("spawn " + argv[0], rc);
  return pid;
}

// Waits for `pid` with a deadline; on timeout kills and reaps it, then returns nullopt.
std::optional<int> wait_with_deadline(pid_t pid, milliseconds timeout) {
  int status = 0;
  bool exited = poll_until(timeout, [&] {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    return r == pid || (r < 0 && errno != EINTR);
  });
  if (exited) return decode_wait_status(status);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return std::nullopt;
}

}  // namespace

CommandResult run_command(const std::vector<std::string>& argv, const std::string& scratch_dir,
                          milliseconds timeout) {
  static std::atomic<int> counter{0};
  std::string stem = scratch_dir + "/command-" + std::to_string(counter++);
  pid_t pid = spawn_with_files(argv, stem + ".out", stem + ".err", false);
  std::optional<int> code = wait_with_deadline(pid, timeout);
  if (!code) throw std::runtime_error(argv[0] + " did not exit within the deadline");
  return CommandResult{*code, read_file(stem + ".out"), read_file(stem + ".err")};
}

CommandResult docpipe(const std::vector<std::string>& args, const std::string& scratch_dir) {
  std::vector<std::string> argv{docpipe_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, scratch_dir);
}

pid_t spawn_process(const std::vector<std::string>& argv, const std::string& log_path,
                    const std::vector<std::string>& extra_env) {
  return spawn_with_files(argv, log_path, log_path, true, extra_env);
}

DaemonProcess::DaemonProcess(std::string spool, std::vector<std::string> extra_args,
                             std::string log_path)
    : spool_(std::move(spool)), extra_args_(std::move(extra_args)), log_path_(std::move(log_path)) {
  static std::atomic<int> counter{0};
  if (log_path_.empty()) log_path_ = spool_ + ".daemon-" + std::to_string(counter++) + ".log";
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

void DaemonProcess::spawn() {
  std::vector<std::string> argv{binary_,        "run", "--spool", spool_, "--metrics-listen",
                                metrics_listen_};
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  pid_ = spawn_process(argv, log_path_, extra_env_);
  reaped_ = false;
}

void DaemonProcess::start(milliseconds timeout) {
  spawn();
  bool ready = poll_until(timeout, [&] {
    if (try_exit_code()) return true;
    return log().find(" docpipe ready ") != std::string::npos;
  });
  if (reaped_) throw failure("exited with code " + std::to_string(exit_code_) + " before ready");
  if (!ready) throw failure("not ready after " + std::to_string(timeout.count()) + " ms");
  std::string text = log();
  size_t at = text.find(" metrics listening address=");
  if (at == std::string::npos) throw failure("no \"metrics listening\" line before ready");
  at = text.find('=', at) + 1;
  size_t end = text.find_first_of(" \n", at);
  metrics_address_ = text.substr(at, end - at);
}

std::string DaemonProcess::log() const {
  return file_exists(log_path_) ? read_file(log_path_) : std::string();
}

std::vector<std::string> DaemonProcess::log_lines_with(
    const std::vector<std::string>& needles) const {
  std::vector<std::string> out;
  std::istringstream in(log());
  std::string line;
  while (std::getline(in, line)) {
    bool all = std::all_of(needles.begin(), needles.end(),
                           [&](const std::string& n) { return line.find(n) != std::string::npos; });
    if (all) out.push_back(line);
  }
  return out;
}

std::vector<std::string> DaemonProcess::wait_for_log_lines(const std::vector<std::string>& needles,
                                                           milliseconds timeout) const {
  std::vector<std::string> lines;
  poll_until(timeout, [&] {
    lines = log_lines_with(needles);
    return !lines.empty();
  });
  return lines;
}

std::optional<int> DaemonProcess::try_exit_code() {
  if (reaped_) return exit_code_;
  if (pid_ <= 0) return std::nullopt;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) != pid_) return std::nullopt;
  reaped_ = true;
  exit_code_ = decode_wait_status(status);
  return exit_code_;
}

int DaemonProcess::wait_exit(milliseconds timeout) {
  if (!poll_until(timeout, [&] { return try_exit_code().has_value(); })) {
    throw failure("still running " + std::to_string(timeout.count()) + " ms after it was stopped");
  }
  return exit_code_;
}

int DaemonProcess::terminate(milliseconds timeout) {
  if (!reaped_ && pid_ > 0) ::kill(pid_, SIGTERM);
  const int code = wait_exit(timeout);
  // A failed stop says why only in the daemon's log (a sanitizer's report goes there too), and
  // the test's folder with the log is gone once the test ends: show its end now.
  if (code != 0) {
    const std::string text = log();
    std::cerr << "daemon (pid " << pid_ << ") exited with " << code
              << " on SIGTERM; its log ends:\n"
              << text.substr(text.size() > 20000 ? text.size() - 20000 : 0) << "\n";
  }
  return code;
}

void DaemonProcess::expect_running() {
  if (try_exit_code()) throw failure("exited unexpectedly with code " + std::to_string(exit_code_));
}

JobOutcome DaemonProcess::wait_for_job(const std::string& id, milliseconds timeout) {
  JobOutcome outcome;
  bool found = poll_until(timeout, [&] {
    expect_running();
    for (const char* folder : {"done", "failed"}) {
      std::string dir = spool_ + "/" + folder + "/";
      if (file_exists(dir + id + ".json") && file_exists(dir + id + ".report.json")) {
        outcome.folder = folder;
        return true;
      }
    }
    return false;
  });
  if (!found) {
    std::string where;
    for (const char* folder : {"incoming", "active", "done", "failed", "rejected"}) {
      where += std::string(" ") + folder + "/[";
      for (const std::string& f : list_files(spool_ + "/" + folder)) where += " " + f;
      where += " ]";
    }
    throw failure("job " + id + " did not finish within " + std::to_string(timeout.count()) +
                  " ms; spool:" + where);
  }
  std::string dir = spool_ + "/" + outcome.folder + "/";
  outcome.report = read_json(dir + id + ".report.json");
  outcome.manifest_path = dir + id + ".manifest.jsonl";
  return outcome;
}

nlohmann::json DaemonProcess::wait_for_rejection(const std::string& file_name,
                                                 milliseconds timeout) {
  std::string file = spool_ + "/rejected/" + file_name;
  std::string error_file = file + ".error.json";
  if (!poll_until(timeout, [&] {
        expect_running();
        return file_exists(file) && file_exists(error_file);
      })) {
    throw failure(file_name + " was not rejected within " + std::to_string(timeout.count()) +
                  " ms");
  }
  return read_json(error_file);
}

std::optional<double> DaemonProcess::metric(
    std::string_view name, const std::map<std::string, std::string>& labels) const {
  return metric_value(parse_prometheus_text(scrape()), name, labels);
}

std::optional<double> DaemonProcess::wait_for_metric(
    std::string_view name, const std::map<std::string, std::string>& labels, double value,
    milliseconds timeout) const {
  std::optional<double> last;
  poll_until(timeout, [&] {
    last = metric(name, labels);
    return last == value;
  });
  return last;
}

std::string DaemonProcess::scrape() const {
  HttpResponse r = http_get(metrics_address_, "/metrics");
  if (r.status != 200) {
    throw std::runtime_error("GET /metrics on " + metrics_address_ + ": status " +
                             std::to_string(r.status));
  }
  return r.body;
}

uint64_t DaemonProcess::peak_rss_bytes() const {
  std::string status = read_file("/proc/" + std::to_string(pid_) + "/status");
  size_t at = status.find("VmHWM:");
  if (at == std::string::npos) throw std::runtime_error("no VmHWM in /proc/PID/status");
  return std::strtoull(status.c_str() + at + 6, nullptr, 10) * 1024;
}

uint64_t DaemonProcess::bytes_read() const {
  std::string io = read_file("/proc/" + std::to_string(pid_) + "/io");
  size_t at = io.find("rchar:");
  if (at == std::string::npos) throw std::runtime_error("no rchar in /proc/PID/io");
  return std::strtoull(io.c_str() + at + 6, nullptr, 10);
}

std::runtime_error DaemonProcess::failure(const std::string& what) const {
  return std::runtime_error("docpipe daemon (pid " + std::to_string(pid_) + ", spool " + spool_ +
                            ") " + what + "\n---- daemon log ----\n" + log() + "--------------");
}

}  // namespace e2e
