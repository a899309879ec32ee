#pragma once
// End-to-end test harness: runs the real docpipe binary (DOCPIPE_BINARY) as a child process and
// talks to it only the way users do: through spool folders, files, its log, its exit code and
// its /metrics endpoint. Setup problems (a spawn failure, a daemon that never gets ready, a job
// that never finishes) throw std::runtime_error with the daemon's log attached, which doctest
// reports as a failure of the test that hit it.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tests/e2e/http_metrics.h"

namespace e2e {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Generous enough for sanitizer builds on a busy 2-core machine; a healthy run takes far less.
inline constexpr milliseconds kStartTimeout{20000};
inline constexpr milliseconds kJobTimeout{120000};
inline constexpr milliseconds kExitTimeout{30000};

std::string docpipe_binary();

// A test that cannot run here says why and passes, unless DOCPIPE_REQUIRE_ALL_TESTS is set (as
// scripts/test does for CI): then the missing prerequisite fails it, so that a proof cannot
// silently disappear. Use as `if (...) return skip_test("reason");`.
void skip_test(const std::string& reason);

// Calls `predicate` every few milliseconds until it returns true (-> true) or `timeout` passes
// (-> false). The short pause between polls is the only sleep the tests use.
bool poll_until(milliseconds timeout, const std::function<bool()>& predicate);

// A fresh folder from mkdtemp(), removed with everything in it by the destructor.
class TempDir {
 public:
  // `base` is the parent folder ("/tmp" by default).
  explicit TempDir(const std::string& base = "/tmp");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(std::string_view child) const { return path_ + "/" + std::string(child); }

 private:
  std::string path_;
};

// Where tests with many small files put their TempDir: /dev/shm when writable, else /tmp.
std::string scratch_base();

// Files. These throw std::runtime_error naming the path on failure.
void write_file(const std::string& path, std::string_view content);  // creates parent folders
std::string read_file(const std::string& path);
bool file_exists(const std::string& path);
void make_dirs(const std::string& path);
// Every non-folder entry below `root`, as paths relative to it, sorted.
std::vector<std::string> list_files(const std::string& root);
nlohmann::json read_json(const std::string& path);
// Files below `root` whose name starts with '.' (docpipe's temp files all do), relative to it.
std::vector<std::string> dot_files_under(const std::string& root);
// Replaces a config file whole (write aside, rename), the way an operator's tooling should.
void write_config(const std::string& path, const std::string& text);

// The lines of `text`, without their newlines (a final newline adds no empty line).
std::vector<std::string> lines_of(const std::string& text);
// One JSON value per non-empty line.
std::vector<nlohmann::json> read_json_lines(const std::string& path);

std::string gunzip(std::string_view compressed);  // throws on corrupt input
std::string gzip(std::string_view data);
std::string sha256_hex(std::string_view data);

// A job over every file below `input_dir` (absolute paths, so that nothing resolves against the
// spool), copying when `transforms` is empty.
nlohmann::json make_job(const std::string& id, const std::string& input_dir,
                        const std::string& output_dir,
                        nlohmann::json transforms = nlohmann::json::array());

// "" if equal, else where and how two texts first differ, for test messages.
std::string describe_difference(std::string_view expected, std::string_view actual);

// Writes `job` to incoming/.NAME.tmp and renames it to incoming/NAME, so that the daemon never
// sees a partial file (the way the DESIGN recommends producers hand over jobs).
void drop_job(const std::string& spool, const std::string& name, const nlohmann::json& job);

// A finished job as found in the spool.
struct JobOutcome {
  std::string folder;  // "done" or "failed"
  nlohmann::json report;
  std::string manifest_path;
};

// The result of a short-lived command (the CLI).
struct CommandResult {
  int exit_code = -1;  // 128 + signal number if it was killed
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) with stdout and stderr captured through files in `scratch_dir`.
CommandResult run_command(const std::vector<std::string>& argv, const std::string& scratch_dir,
                          milliseconds timeout = kExitTimeout);

// Runs `docpipe ARGS...` (the normal build), its output captured in `scratch_dir`.
CommandResult docpipe(const std::vector<std::string>& args, const std::string& scratch_dir);

// `docpipe status --spool SPOOL --json`, parsed (the command must succeed).
nlohmann::json daemon_status(const std::string& spool, const std::string& scratch);

// Spawns `argv` with stdin from /dev/null and stdout+stderr appended to `log_path`; the
// environment is the test's minus variables that would change the daemon's behaviour
// (NOTIFY_SOCKET, JOURNAL_STREAM, ...), plus `extra_env` ("NAME=VALUE" entries). Returns the
// pid; throws on failure.
pid_t spawn_process(const std::vector<std::string>& argv, const std::string& log_path,
                    const std::vector<std::string>& extra_env = {});

// A `docpipe run` child process. The destructor kills it (SIGKILL) if it is still running.
class DaemonProcess {
 public:
  // Runs `docpipe run --spool SPOOL --metrics-listen 127.0.0.1:0 EXTRA...`, logging to
  // `log_path` (default: SPOOL.daemon-N.log, next to the spool).
  DaemonProcess(std::string spool, std::vector<std::string> extra_args, std::string log_path = "");
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  // Before spawn(): listen somewhere else than 127.0.0.1:0.
  void set_metrics_listen(std::string address) { metrics_listen_ = std::move(address); }
  // Before spawn(): run another build of the daemon (e.g. DOCPIPE_TEST_BINARY, with the
  // fault-injection transforms) instead of docpipe_binary().
  void set_binary(std::string path) { binary_ = std::move(path); }
  // Before spawn(): add "NAME=VALUE" to the daemon's environment (e.g. NOTIFY_SOCKET, which
  // spawn_process otherwise drops).
  void add_env(std::string entry) { extra_env_.push_back(std::move(entry)); }

  // Spawns the process; returns at once.
  void spawn();
  // Spawns it and waits for "docpipe ready", parsing the metrics address on the way.
  void start(milliseconds timeout = kStartTimeout);

  pid_t pid() const { return pid_; }
  const std::string& spool() const { return spool_; }
  const std::string& log_path() const { return log_path_; }
  const std::string& metrics_address() const { return metrics_address_; }  // "127.0.0.1:PORT"
  std::string log() const;
  // Log lines containing every one of `needles`.
  std::vector<std::string> log_lines_with(const std::vector<std::string>& needles) const;
  // Polls the log until some line contains every one of `needles`; returns all such lines
  // (empty on timeout).
  std::vector<std::string> wait_for_log_lines(const std::vector<std::string>& needles,
                                              milliseconds timeout = kJobTimeout) const;

  // The exit code if the process has exited (reaping it), else nullopt. Never blocks.
  std::optional<int> try_exit_code();
  // Waits for the process to exit; throws on timeout.
  int wait_exit(milliseconds timeout = kExitTimeout);
  // SIGTERM, then wait_exit().
  int terminate(milliseconds timeout = kExitTimeout);

  // Throws (with the log) if the process has exited.
  void expect_running();

  // Waits for ID.report.json and ID.json in done/ or failed/ (the job file moves last).
  JobOutcome wait_for_job(const std::string& id, milliseconds timeout = kJobTimeout);

  // Waits for rejected/NAME and rejected/NAME.error.json; returns the error file's JSON.
  nlohmann::json wait_for_rejection(const std::string& file_name,
                                    milliseconds timeout = kJobTimeout);

  // GET /metrics; throws if the status is not 200.
  std::string scrape() const;
  // One sample from a fresh scrape, if present.
  std::optional<double> metric(std::string_view name,
                               const std::map<std::string, std::string>& labels = {}) const;
  // Polls /metrics until the sample equals `value`; returns the last value seen.
  std::optional<double> wait_for_metric(std::string_view name,
                                        const std::map<std::string, std::string>& labels,
                                        double value, milliseconds timeout = kJobTimeout) const;
  // Peak resident set size so far (VmHWM from /proc/PID/status), in bytes.
  uint64_t peak_rss_bytes() const;
  // Bytes the daemon has read so far through read(2) and its kin (rchar in /proc/PID/io): what
  // it read, whatever its memory accounting.
  uint64_t bytes_read() const;

 private:
  std::runtime_error failure(const std::string& what) const;

  std::string spool_;
  std::vector<std::string> extra_args_;
  std::string log_path_;
  std::string metrics_listen_ = "127.0.0.1:0";
  std::string binary_ = docpipe_binary();
  std::vector<std::string> extra_env_;
  std::string metrics_address_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int exit_code_ = -1;
};

}  // namespace e2e
