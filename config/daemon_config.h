#pragma once
// The daemon config (DESIGN.md "Daemon config"): strict JSON, unknown keys and wrong types are
// errors naming the key; relative paths resolve against the config file's folder.
// Loading throws ConfigError (control plane: start-up and reload only).

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/transform.h"  // CommandSpec

namespace docpipe {

struct DaemonConfig {
  std::string spool_dir;        // absolute
  std::string metrics_listen = "127.0.0.1:9464";
  std::string control_socket;   // absolute; default <spool_dir>/control.sock
  // Root and members of this group see and cancel every job; others only their own. "" (the
  // default): nobody but root. A group name or a numeric gid, resolved when the config loads.
  std::string admin_group;
  std::optional<gid_t> admin_gid;
  // Control connections open at once; one more is told so and closed.
  int64_t max_control_connections = 64;
  // A control connection with no request in flight that sends nothing for this long is closed.
  int64_t control_idle_timeout_ms = 60000;
  int workers = 0;              // transformer threads; default: number of cores
  int io_threads = 2;
  int64_t max_in_flight_documents = 256;
  int64_t memory_budget_bytes = 268435456;
  int64_t max_active_jobs = 16;  // jobs admitted into the pipeline at once; the rest wait queued
  int64_t settle_ms = 500;
  // Larger job files are rejected before a byte is read (also by `docpipe validate`/`submit`):
  // a job file is a few KiB, and a 4 GiB one must not be loaded into memory.
  int64_t max_job_file_bytes = 1048576;
  int64_t rescan_interval_ms = 30000;
  bool durability_fsync = true;  // "durability": "fsync" | "none"
  int64_t shutdown_grace_ms = 10000;
  std::vector<std::string> allowed_input_roots{"/"};   // absolute
  std::vector<std::string> allowed_output_roots{"/"};  // absolute
  std::string log_level = "info";   // debug | info | warn | error
  std::string log_format = "text";  // text | json
  std::map<std::string, CommandSpec> commands;
};

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The defaults, with paths relative to `base_dir` (the working directory when no file is given).
DaemonConfig default_config(const std::string& base_dir);

// Parses config text; `base_dir` is the config file's folder. Throws ConfigError naming the key
// ("config.json: workers: expected a positive integer, got \"two\"").
DaemonConfig parse_config(const std::string& text, const std::string& base_dir,
                          const std::string& file_name_for_errors);

// Reads and parses a file. Throws ConfigError (including when the file cannot be read).
DaemonConfig load_config(const std::string& path);

// Checks cross-field rules (positive counts, listen address form HOST:PORT). Throws ConfigError.
void validate_config(const DaemonConfig& config);

}  // namespace docpipe
