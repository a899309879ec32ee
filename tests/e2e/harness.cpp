#include "tests/e2e/harness.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace e2e {

namespace fs = std::filesystem;

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

std::string scratch_base() { return ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"; }

std::vector<std::string> dot_files_under(const std::string& root) {
  std::vector<std::string> found;
  if (!file_exists(root)) return found;
  for (const std::string& rel : list_files(root)) {
    const size_t slash = rel.rfind('/');
    if (rel[slash == std::string::npos ? 0 : slash + 1] == '.') found.push_back(rel);
  }
  return found;
}

void write_config(const std::string& path, const std::string& text) {
  write_file(path + ".new", text);
  if (::rename((path + ".new").c_str(), path.c_str()) != 0) {
    throw sys_error("rename " + path + ".new", errno);
  }
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string docpipe_binary() { return DOCPIPE_BINARY; }

void skip_test(const std::string& reason) {
  const char* required = std::getenv("DOCPIPE_REQUIRE_ALL_TESTS");
  if (required != nullptr && std::string_view(required) != "" &&
      std::string_view(required) != "0") {
    FAIL("cannot run, and DOCPIPE_REQUIRE_ALL_TESTS is set: " << reason);
  }
  MESSAGE("SKIPPED: " << reason);
}

bool poll_until(milliseconds timeout, const std::function<bool()>& predicate) {
  Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    if (predicate()) return true;
    if (Clock::now() >= deadline) return predicate();
    std::this_thread::sleep_for(milliseconds(5));
  }
}

// ---- TempDir and files ----

TempDir::TempDir(const std::string& base) {
  std::string pattern = base + "/docpipe-e2e.XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) throw sys_error("mkdtemp " + pattern, errno);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const std::string& path, std::string_view content) {
  fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(content.data(), static_cast<std::streamsize>(content.size()));
  f.close();
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(path, ec));
}

void make_dirs(const std::string& path) { fs::create_directories(path); }

std::vector<std::string> list_files(const std::string& root) {
  std::vector<std::string> out;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_directory()) out.push_back(fs::relative(entry.path(), root).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

nlohmann::json read_json(const std::string& path) {
  std::string text = read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": not JSON: " + e.what());
  }
}

std::vector<nlohmann::json> read_json_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_file(path));
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    try {
      out.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(path + ":" + std::to_string(n) + ": not JSON: " + e.what());
    }
  }
  return out;
}

std::string gunzip(std::string_view compressed) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw std::runtime_error("inflateInit2 failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  zs.avail_in = static_cast<uInt>(compressed.size());
  std::string out;
  char buf[65536];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      std::string msg = zs.msg != nullptr ? zs.msg : "truncated input";
      inflateEnd(&zs);
      throw std::runtime_error("gunzip: " + msg);
    }
    out.append(buf, sizeof buf - zs.avail_out);
  }
  bool trailing = zs.avail_in != 0;
  inflateEnd(&zs);
  if (trailing) throw std::runtime_error("gunzip: trailing data after the gzip stream");
  return out;
}

std::string gzip(std::string_view data) {
  z_stream zs{};
  if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("deflateInit2 failed");
  }
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buf[65536];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = deflate(&zs, Z_FINISH);
    out.append(buf, sizeof buf - zs.avail_out);
  }
  deflateEnd(&zs);
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("EVP_Digest failed");
  }
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

nlohmann::json make_job(const std::string& id, const std::string& input_dir,
                        const std::string& output_dir, nlohmann::json transforms) {
  return nlohmann::json{{"id", id},
                        {"input", {{"dir", input_dir}}},
                        {"output", {{"dir", output_dir}}},
                        {"transforms", std::move(transforms)}};
}

std::string describe_difference(std::string_view expected, std::string_view actual) {
  if (expected == actual) return "";
  size_t at = 0;
  while (at < expected.size() && at < actual.size() && expected[at] == actual[at]) ++at;
  size_t from = at < 40 ? 0 : at - 40;
  auto excerpt = [&](std::string_view s) {
    return "\"" + std::string(s.substr(std::min(from, s.size()), 100)) + "\"";
  };
  return "sizes " + std::to_string(expected.size()) + " (expected) and " +
         std::to_string(actual.size()) + " (actual), first difference at byte " +
         std::to_string(at) + ":\n  expected " + excerpt(expected) + "\n  actual   " +
         excerpt(actual);
}

void drop_job(const std::string& spool, const std::string& name, const nlohmann::json& job) {
  std::string tmp = spool + "/incoming/." + name + ".tmp";
  std::string dest = spool + "/incoming/" + name;
  write_file(tmp, job.dump(2) + "\n");
  if (::rename(tmp.c_str(), dest.c_str()) != 0) throw sys_error("rename " + tmp, errno);
}

// ---- processes ----

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
  return wait_exit(timeout);
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

std::runtime_error DaemonProcess::failure(const std::string& what) const {
  return std::runtime_error("docpipe daemon (pid " + std::to_string(pid_) + ", spool " + spool_ +
                            ") " + what + "\n---- daemon log ----\n" + log() + "--------------");
}

}  // namespace e2e
