#include "config/daemon_config.h"

#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "config/cluster_config_parser.h"
#include "config/user_db.h"
#include "core/fs_util.h"
#include "core/json_util.h"
#include "core/notify_spec.h"
#include "core/path_util.h"

namespace docpipe {
namespace {

using nlohmann::json;

constexpr int64_t kMax = JsonObjectReader::kMax;
// More threads than this is a typo, not a machine; each one is a real std::thread.
constexpr int64_t kMaxThreads = 1024;

std::string absolute_base(const std::string& base_dir) {
  if (is_absolute_path(base_dir)) return normalize_path(base_dir);
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof cwd) == nullptr) {
    throw ConfigError(std::string("cannot determine the working directory: ") +
                      std::strerror(errno));
  }
  return resolve_path(cwd, base_dir);
}

// "" if `address` is HOST:PORT (HOST a name, an IPv4 address or a bracketed IPv6 address; PORT
// 0..65535, 0 meaning any free port), else what is wrong.
std::string listen_address_problem(const std::string& address) {
  const std::string expected =
      "expected HOST:PORT with a port 0..65535, got " + describe_json(json(address));
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) return expected;
  std::string host = address.substr(0, colon);
  std::string port = address.substr(colon + 1);
  bool bracketed = host.front() == '[' && host.back() == ']' && host.size() > 2;
  if (!bracketed && host.find_first_of(":[]/ ") != std::string::npos) return expected;
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return expected;
  if (std::stol(port) > 65535) return expected;
  return {};
}

// Each control connection holds a descriptor; far more than this would starve the watch folder
// and the pipeline of them.
constexpr int64_t kMaxControlConnections = 4096;

std::string too_many_threads(int64_t n) {
  return "too many threads: " + std::to_string(n) + " (at most " + std::to_string(kMaxThreads) +
         ")";
}

// An exec pool's bounds (docs/design.md "exec pools (issue 13)"): each process is a real
// process and a thread's worth of pipes; a wait past an hour or a day is a typo.
// retention: a century, a billion jobs, a day between passes.
constexpr int64_t kMaxRetentionDays = 36500;
constexpr int64_t kMaxRetentionJobs = 1000000000;
constexpr int64_t kMaxRetentionIntervalMs = 86400000;
constexpr int64_t kMaxPoolSize = 64;
constexpr int64_t kMaxPoolDocuments = 1000000000;
constexpr int64_t kMaxPoolWaitMs = 600000;
constexpr int64_t kMinHealthIntervalMs = 100;
constexpr int64_t kMaxHealthIntervalMs = 86400000;

// What each key of the file means for DaemonConfig; every problem is collected.
class ConfigParser {
 public:
  ConfigParser(const std::string& base_dir, FieldErrors& errors)
      : base_(base_dir), errors_(errors) {}

  DaemonConfig parse(const json& doc) {
    DaemonConfig c = default_config(base_);
    JsonObjectReader r(doc, "", errors_);
    if (!r.is_object()) return c;
    if (auto v = r.string("spool_dir", false)) c.spool_dir = resolve_path(base_, *v);
    c.control_socket = c.spool_dir + "/control.sock";
    if (auto v = r.string("control_socket", false)) c.control_socket = resolve_path(base_, *v);
    if (const json* v = r.get("admin_group")) admin_group(*v, r.path_of("admin_group"), c);
    if (auto v = r.integer("max_control_connections", 1, kMaxControlConnections)) {
      c.max_control_connections = *v;
    }
    if (auto v = r.integer("control_idle_timeout_ms", 1, kMax)) c.control_idle_timeout_ms = *v;
    if (auto v = r.string("metrics_listen", false)) {
      std::string problem = listen_address_problem(*v);
      if (problem.empty()) {
        c.metrics_listen = *v;
      } else {
        r.error("metrics_listen", problem);
      }
    }
    // Only the path: the daemon reads the file (load_config_http_tokens), not every CLI command
    // that reads this config, whose user need not be able to read it.
    if (auto v = r.string("http_tokens_file", true); v && !v->empty()) {
      c.http_tokens_file = resolve_path(base_, *v);
    }
    if (auto v = thread_count(r, "workers")) c.workers = *v;
    if (auto v = thread_count(r, "io_threads")) c.io_threads = *v;
    if (auto v = thread_count(r, "ocr_concurrency")) c.ocr_concurrency = *v;
    if (auto v = r.integer("max_in_flight_documents", 1, kMax)) c.max_in_flight_documents = *v;
    if (auto v = r.integer("memory_budget_bytes", 1, kMax)) c.memory_budget_bytes = *v;
    if (auto v = r.integer("max_active_jobs", 1, kMax)) c.max_active_jobs = *v;
    if (auto v = r.integer("settle_ms", 0, kMax)) c.settle_ms = *v;
    if (auto v = r.integer("max_job_file_bytes", 1, kMax)) c.max_job_file_bytes = *v;
    if (auto v = r.integer("rescan_interval_ms", 1, kMax)) c.rescan_interval_ms = *v;
    if (auto v = r.choice("durability", {"fsync", "none"})) c.durability_fsync = *v == "fsync";
    if (auto v = r.integer("shutdown_grace_ms", 0, kMax)) c.shutdown_grace_ms = *v;
    if (auto v = roots(r, "allowed_input_roots")) c.allowed_input_roots = std::move(*v);
    if (auto v = roots(r, "allowed_output_roots")) c.allowed_output_roots = std::move(*v);
    if (auto v = r.choice("log_level", {"debug", "info", "warn", "error"})) c.log_level = *v;
    if (auto v = r.choice("log_format", {"text", "json"})) c.log_format = *v;
    if (const json* v = r.get("commands")) c.commands = commands(*v);
    if (const json* v = r.get("cluster")) c.cluster = parse_cluster_config(*v, base_, errors_);
    if (const json* v = r.get("retention")) c.retention = retention(*v);
    if (const json* v = r.get("quotas")) c.quotas = parse_quota_config(*v, errors_);
    if (auto v = r.string_array("allowed_webhook_hosts", true)) webhook_hosts(*v, c);
    if (const json* v = r.get("notify")) c.notify = notify(*v);
    r.reject_unknown_keys();
    return c;
  }

 private:
  // "retention": {"done": {"max_age_days": 30, "max_jobs": 10000}, "failed": {...},
  // "rejected": {...}, "interval_ms": 60000}.
  RetentionConfig retention(const json& value) {
    RetentionConfig out;
    JsonObjectReader r(value, "retention", errors_);
    if (!r.is_object()) return out;
    const std::pair<const char*, RetentionRule*> folders[] = {
        {"done", &out.done}, {"failed", &out.failed}, {"rejected", &out.rejected}};
    for (const auto& [name, rule] : folders) {
      const json* v = r.get(name);
      if (v == nullptr) continue;
      JsonObjectReader f(*v, r.path_of(name), errors_);
      if (!f.is_object()) continue;
      if (auto days = f.integer("max_age_days", 1, kMaxRetentionDays)) rule->max_age_days = *days;
      if (auto jobs = f.integer("max_jobs", 1, kMaxRetentionJobs)) rule->max_jobs = *jobs;
      f.reject_unknown_keys();
    }
    if (auto v = r.integer("interval_ms", 100, kMaxRetentionIntervalMs)) out.interval_ms = *v;
    r.reject_unknown_keys();
    return out;
  }

  // "allowed_webhook_hosts": ["hooks.example.org", "127.0.0.1:8080"] (core/notify_spec.h).
  void webhook_hosts(const std::vector<std::string>& hosts, DaemonConfig& c) {
    bool ok = true;
    for (size_t i = 0; i < hosts.size(); ++i) {
      std::string problem;
      if (!parse_allowed_host(hosts[i], problem)) {
        errors_.push_back({json_index_path("allowed_webhook_hosts", i),
                           problem + ", got " + describe_json(json(hosts[i]))});
        ok = false;
      }
    }
    if (ok) c.allowed_webhook_hosts = hosts;
  }

  // "notify": {"max_attempts", "retry_base_ms", "retry_max_ms", "timeout_ms", "breaker"}.
  NotifyConfig notify(const json& value) {
    NotifyConfig out;
    JsonObjectReader r(value, "notify", errors_);
    if (!r.is_object()) return out;
    constexpr int64_t kDayMs = 86400000;
    if (auto v = r.integer("max_attempts", 1, 1000)) out.max_attempts = *v;
    if (auto v = r.integer("retry_base_ms", 10, kDayMs)) out.retry_base_ms = *v;
    if (auto v = r.integer("retry_max_ms", 10, kDayMs)) out.retry_max_ms = *v;
    if (auto v = r.integer("timeout_ms", 100, 600000)) out.timeout_ms = *v;
    if (out.retry_max_ms < out.retry_base_ms) {
      r.error("retry_max_ms",
              "must be at least retry_base_ms (" + std::to_string(out.retry_base_ms) + ")");
    }
    if (const json* b = r.get("breaker")) breaker(*b, r.path_of("breaker"), out.breaker);
    r.reject_unknown_keys();
    return out;
  }

  // A group name or a numeric gid (as a number or a string of digits); the name must exist now,
  // so that a typo is a start-up error and not an admin group nobody is in.
  void admin_group(const json& value, const std::string& path, DaemonConfig& c) {
    std::string text;
    if (value.is_number_unsigned()) {
      text = std::to_string(value.get<uint64_t>());
    } else if (auto s = read_string(value, path, true, errors_)) {
      text = *s;
    } else {
      return;
    }
    if (text.empty()) return;  // no admin group: only root sees every job
    std::optional<gid_t> gid = resolve_group(text);
    if (!gid) {
      errors_.push_back({path, "no such group " + describe_json(json(text))});
      return;
    }
    c.admin_group = text;
    c.admin_gid = gid;
  }

  std::optional<int> thread_count(JsonObjectReader& r, std::string_view key) {
    std::optional<int64_t> v = r.integer(key, 1, kMax);
    if (!v) return std::nullopt;
    if (*v > kMaxThreads) {
      r.error(key, too_many_threads(*v));
      return std::nullopt;
    }
    return static_cast<int>(*v);
  }

  std::optional<std::vector<std::string>> roots(JsonObjectReader& r, std::string_view key) {
    std::optional<std::vector<std::string>> v = r.string_array(key, false);
    if (!v) return std::nullopt;
    bool ok = true;
    for (size_t i = 0; i < v->size(); ++i) {
      std::string& root = (*v)[i];
      if (root.empty() || root.find('\0') != std::string::npos) {
        errors_.push_back({json_index_path(r.path_of(key), i), "expected a non-empty path"});
        ok = false;
        continue;
      }
      root = resolve_path(base_, root);
    }
    if (!ok) return std::nullopt;
    return v;
  }

  std::map<std::string, CommandSpec> commands(const json& value) {
    std::map<std::string, CommandSpec> out;
    JsonObjectReader all(value, "commands", errors_);
    if (!all.is_object()) return out;
    for (auto it = value.begin(); it != value.end(); ++it) {
      const std::string& name = it.key();
      std::string path = all.path_of(name);
      if (name.empty() || name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                                                 "vwxyz0123456789._-") != std::string::npos) {
        errors_.push_back({path, "invalid command name (expected A-Z a-z 0-9 . _ -)"});
        continue;
      }
      JsonObjectReader cmd(it.value(), path, errors_);
      if (!cmd.is_object()) continue;
      CommandSpec spec;
      bool ok = true;
      if (const json* argv = cmd.require("argv")) {
        std::optional<std::vector<std::string>> v =
            read_string_array(*argv, cmd.path_of("argv"), false, errors_);
        ok = v.has_value();
        if (v) {
          const std::string& program = v->front();
          // A relative path like "bin/tool" would depend on the daemon's working directory.
          if (program.empty() ||
              (!is_absolute_path(program) && program.find('/') != std::string::npos)) {
            errors_.push_back({json_index_path(cmd.path_of("argv"), 0),
                               "expected an absolute path or a bare program name, got " +
                                   describe_json(json(program))});
            ok = false;
          }
          spec.argv = std::move(*v);
        }
      } else {
        ok = false;
      }
      if (auto t = cmd.integer("timeout_ms", 1, kMax)) spec.timeout_ms = *t;
      if (auto m = cmd.choice("mode", {"process", "pool"})) {
        spec.mode = *m == "pool" ? CommandMode::kPool : CommandMode::kProcess;
      }
      if (const json* pool = cmd.get("pool")) {
        if (spec.mode != CommandMode::kPool) {
          cmd.error("pool", "only for a command with \"mode\": \"pool\"");
          ok = false;
        } else {
          ok = pool_settings(*pool, cmd.path_of("pool"), spec.pool) && ok;
        }
      }
      if (const json* b = cmd.get("breaker")) {
        if (!breaker(*b, cmd.path_of("breaker"), spec.breaker)) ok = false;
      }
      cmd.reject_unknown_keys();
      if (ok) out.emplace(name, std::move(spec));
    }
    return out;
  }

  // A command's "pool" object (docs/design.md "exec pools (issue 13)"); false on any problem.
  bool pool_settings(const json& value, const std::string& path, CommandPoolSettings& out) {
    const size_t errors_before = errors_.size();
    JsonObjectReader r(value, path, errors_);
    if (!r.is_object()) return false;
    if (auto v = r.integer("size", 1, kMaxPoolSize)) out.size = static_cast<int>(*v);
    if (auto v = r.integer("max_documents", 1, kMaxPoolDocuments)) out.max_documents = *v;
    if (auto v = r.integer("ready_timeout_ms", 1, kMaxPoolWaitMs)) out.ready_timeout_ms = *v;
    if (auto v = r.integer("health_interval_ms", kMinHealthIntervalMs, kMaxHealthIntervalMs)) {
      out.health_interval_ms = *v;
    }
    if (auto v = r.integer("health_timeout_ms", 1, kMaxPoolWaitMs)) out.health_timeout_ms = *v;
    if (auto v = r.integer("queue_timeout_ms", 1, kMaxHealthIntervalMs)) out.queue_timeout_ms = *v;
    if (auto v = r.integer("stop_grace_ms", 0, kMaxPoolWaitMs)) out.stop_grace_ms = *v;
    r.reject_unknown_keys();
    return errors_.size() == errors_before;
  }

  // A command's "breaker" (core/command_breaker.h): {"failures": 0..1000 (0 = off), "open_ms":
  // 100..86400000, "max_open_ms": open_ms..86400000}. False if anything in it is wrong.
  bool breaker(const json& value, const std::string& path, BreakerConfig& out) {
    const size_t before = errors_.size();
    JsonObjectReader r(value, path, errors_);
    if (!r.is_object()) return false;
    constexpr int64_t kDayMs = 86400000;
    if (auto v = r.integer("failures", 0, 1000)) out.failures = static_cast<int>(*v);
    if (auto v = r.integer("open_ms", 100, kDayMs)) out.open_ms = *v;
    const bool max_given = r.get("max_open_ms") != nullptr;
    if (auto v = r.integer("max_open_ms", 100, kDayMs)) out.max_open_ms = *v;
    if (errors_.size() == before && out.max_open_ms < out.open_ms) {
      if (max_given) {
        r.error("max_open_ms", "must be at least open_ms (" + std::to_string(out.open_ms) +
                                   "), got " + std::to_string(out.max_open_ms));
      } else {
        out.max_open_ms = out.open_ms;  // an open_ms above the default cap: never doubled
      }
    }
    r.reject_unknown_keys();
    return errors_.size() == before;
  }

  const std::string base_;
  FieldErrors& errors_;
};

// Rules that hold whatever set the values (file or command-line flags).
void check_config(const DaemonConfig& c, FieldErrors& errors) {
  auto at_least = [&errors](const char* key, int64_t value, int64_t min) {
    if (value < min) {
      errors.push_back({key, "expected " + describe_integer_range(min, kMax) + ", got " +
                                 std::to_string(value)});
    }
  };
  at_least("workers", c.workers, 1);
  at_least("io_threads", c.io_threads, 1);
  at_least("ocr_concurrency", c.ocr_concurrency, 1);
  at_least("max_in_flight_documents", c.max_in_flight_documents, 1);
  at_least("memory_budget_bytes", c.memory_budget_bytes, 1);
  at_least("max_active_jobs", c.max_active_jobs, 1);
  at_least("settle_ms", c.settle_ms, 0);
  at_least("max_job_file_bytes", c.max_job_file_bytes, 1);
  at_least("rescan_interval_ms", c.rescan_interval_ms, 1);
  at_least("shutdown_grace_ms", c.shutdown_grace_ms, 0);
  at_least("max_control_connections", c.max_control_connections, 1);
  at_least("control_idle_timeout_ms", c.control_idle_timeout_ms, 1);
  if (c.workers > kMaxThreads) errors.push_back({"workers", too_many_threads(c.workers)});
  if (c.io_threads > kMaxThreads) errors.push_back({"io_threads", too_many_threads(c.io_threads)});
  if (c.ocr_concurrency > kMaxThreads) {
    errors.push_back({"ocr_concurrency", too_many_threads(c.ocr_concurrency)});
  }
  std::string listen = listen_address_problem(c.metrics_listen);
  if (!listen.empty()) errors.push_back({"metrics_listen", listen});
  if (!is_absolute_path(c.spool_dir)) {
    errors.push_back({"spool_dir", "expected an absolute path, got \"" + c.spool_dir + "\""});
  }
  if (!is_absolute_path(c.control_socket)) {
    errors.push_back(
        {"control_socket", "expected an absolute path, got \"" + c.control_socket + "\""});
  } else if (c.control_socket.size() >= sizeof(sockaddr_un::sun_path)) {
    errors.push_back({"control_socket", "path too long for a Unix socket (" +
                                            std::to_string(c.control_socket.size()) + " bytes, " +
                                            "at most " +
                                            std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                                            "): " + c.control_socket});
  }
  for (const char* key : {"allowed_input_roots", "allowed_output_roots"}) {
    const auto& roots = std::string_view(key) == "allowed_input_roots" ? c.allowed_input_roots
                                                                       : c.allowed_output_roots;
    if (roots.empty()) errors.push_back({key, "expected a non-empty array of paths"});
    for (size_t i = 0; i < roots.size(); ++i) {
      if (!is_absolute_path(roots[i])) {
        errors.push_back({json_index_path(key, i), "expected an absolute path"});
      }
    }
  }
}

std::string format_errors(const std::string& prefix, const FieldErrors& errors) {
  std::string out;
  for (const FieldError& e : errors) {
    if (!out.empty()) out += '\n';
    if (!prefix.empty()) out += prefix + ": ";
    out += format_field_error(e);
  }
  return out;
}

}  // namespace

DaemonConfig default_config(const std::string& base_dir) {
  DaemonConfig c;
  c.spool_dir = resolve_path(absolute_base(base_dir), "var/spool");
  c.control_socket = c.spool_dir + "/control.sock";
  c.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  c.ocr_concurrency = c.workers;
  return c;
}

DaemonConfig parse_config(const std::string& text, const std::string& base_dir,
                          const std::string& file_name_for_errors) {
  FieldErrors errors;
  json doc;
  DaemonConfig config;
  if (parse_json_text(text, doc, errors)) {
    config = ConfigParser(absolute_base(base_dir), errors).parse(doc);
    if (errors.empty()) check_config(config, errors);
  }
  if (!errors.empty()) throw ConfigError(format_errors(file_name_for_errors, errors));
  return config;
}

DaemonConfig load_config(const std::string& path) {
  Result<std::string> text = read_file(path);
  if (!text) throw ConfigError("cannot read config: " + text.error().message);
  std::string dir(parent_path(resolve_path(absolute_base("."), path)));
  return parse_config(*text, dir, path);
}

void load_config_http_tokens(DaemonConfig& config) {
  config.http_tokens = nullptr;
  if (config.http_tokens_file.empty()) return;
  std::vector<std::string> problems;
  auto tokens = load_http_tokens(config.http_tokens_file, ::geteuid(), problems);
  if (!tokens) {
    std::string message;
    for (const std::string& p : problems) message += (message.empty() ? "" : "; ") + p;
    throw ConfigError("http_tokens_file: " + message);
  }
  config.http_tokens = std::make_shared<const HttpTokens>(std::move(*tokens));
}

void validate_config(const DaemonConfig& config) {
  FieldErrors errors;
  check_config(config, errors);
  if (!errors.empty()) throw ConfigError(format_errors("", errors));
}

}  // namespace docpipe
