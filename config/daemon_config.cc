#include "config/daemon_config.h"

#include <grp.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/fs_util.h"
#include "core/json_util.h"
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

std::optional<gid_t> resolve_group(const std::string& text) {
  if (!text.empty() && text.size() <= 10 &&
      text.find_first_not_of("0123456789") == std::string::npos) {
    unsigned long v = std::stoul(text);
    if (v >= static_cast<gid_t>(-1)) return std::nullopt;
    return static_cast<gid_t>(v);
  }
  std::vector<char> buf(16384);
  struct group gr {};
  struct group* found = nullptr;
  int rc;
  while ((rc = ::getgrnam_r(text.c_str(), &gr, buf.data(), buf.size(), &found)) == ERANGE &&
         buf.size() < (1u << 22)) {
    buf.resize(buf.size() * 2);
  }
  if (rc != 0 || found == nullptr) return std::nullopt;
  return gr.gr_gid;
}

std::string too_many_threads(int64_t n) {
  return "too many threads: " + std::to_string(n) + " (at most " + std::to_string(kMaxThreads) +
         ")";
}

// An exec pool's bounds (docs/design.md "exec pools (issue 13)"): each process is a real
// process and a thread's worth of pipes; a wait past an hour or a day is a typo.
constexpr int64_t kMaxPoolSize = 64;
constexpr int64_t kMaxPoolDocuments = 1000000000;
constexpr int64_t kMaxPoolWaitMs = 600000;
constexpr int64_t kMinHealthIntervalMs = 100;
constexpr int64_t kMaxHealthIntervalMs = 86400000;

// The "cluster" section's bounds (docs/design.md "Several nodes").
constexpr int64_t kMaxReplicas = 5;  // JetStream's own limit
constexpr int64_t kMaxAckPendingCap = 100000;
constexpr int64_t kMaxWaitMs = 3600000;  // ack_wait_ms and lease_ms: an hour
constexpr int64_t kMaxPublishWindow = 1000000;
constexpr int64_t kMaxReconnectWaitMs = 60000;
constexpr int64_t kMaxReconnectMaxWaitMs = 600000;
constexpr size_t kMaxStreamChars = 32;  // it prefixes subjects and bucket names
constexpr size_t kMaxNodeChars = 64;
constexpr int kDefaultNatsPort = 4222;

bool all_of_chars(std::string_view s, std::string_view extra) {
  return std::all_of(s.begin(), s.end(), [extra](char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           extra.find(ch) != std::string_view::npos;
  });
}

// PORT text 1..65535, or nullopt.
std::optional<int> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5 ||
      text.find_first_not_of("0123456789") != std::string_view::npos) {
    return std::nullopt;
  }
  int port = std::stoi(std::string(text));
  if (port < 1 || port > 65535) return std::nullopt;
  return port;
}

// nats://HOST[:PORT] or tls://HOST[:PORT] with the port made explicit, or nullopt. HOST is a name,
// an IPv4 address or a bracketed IPv6 address; nothing may follow the port (no path, no query).
std::optional<std::string> normalize_nats_url(std::string_view url) {
  std::string_view scheme;
  for (std::string_view s : {"nats://", "tls://"}) {
    if (url.substr(0, s.size()) == s) scheme = s;
  }
  if (scheme.empty()) return std::nullopt;
  std::string_view rest = url.substr(scheme.size());
  std::string_view host;
  std::string_view after_host;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos || close == 1) return std::nullopt;
    if (rest.substr(1, close - 1).find_first_not_of("0123456789abcdefABCDEF:.") !=
        std::string_view::npos) {
      return std::nullopt;
    }
    host = rest.substr(0, close + 1);
    after_host = rest.substr(close + 1);
  } else {
    size_t colon = rest.find(':');
    host = rest.substr(0, colon);
    after_host = colon == std::string_view::npos ? std::string_view() : rest.substr(colon);
    if (host.empty() || !all_of_chars(host, ".-")) return std::nullopt;
  }
  int port = kDefaultNatsPort;
  if (!after_host.empty()) {
    if (after_host.front() != ':') return std::nullopt;
    std::optional<int> p = parse_port(after_host.substr(1));
    if (!p) return std::nullopt;
    port = *p;
  }
  return std::string(scheme) + std::string(host) + ":" + std::to_string(port);
}

// The "cluster" section; every problem is collected.
class ClusterParser {
 public:
  ClusterParser(const std::string& base_dir, FieldErrors& errors)
      : base_(base_dir), errors_(errors) {}

  ClusterConfig parse(const json& value) {
    ClusterConfig c;
    c.enabled = true;
    JsonObjectReader r(value, "cluster", errors_);
    if (!r.is_object()) return c;
    if (auto v = urls(r)) c.nats = std::move(*v);
    if (auto v = name(r, "stream", kMaxStreamChars, "_-")) c.stream = *v;
    if (auto v = name(r, "node", kMaxNodeChars, "_.-")) {
      c.node = *v;
    } else if (r.get("node") == nullptr) {
      c.node = default_node(r);
    }
    if (auto v = r.integer("replicas", 1, kMaxReplicas)) c.replicas = *v;
    if (auto v = r.integer("max_ack_pending", 0, kMaxAckPendingCap)) c.max_ack_pending = *v;
    if (auto v = r.integer("ack_wait_ms", 1000, kMaxWaitMs)) c.ack_wait_ms = *v;
    if (auto v = r.integer("max_deliver", 2, 1000)) c.max_deliver = *v;
    if (auto v = r.integer("lease_ms", 3000, kMaxWaitMs)) c.lease_ms = *v;
    if (auto v = r.integer("publish_window", 0, kMaxPublishWindow)) c.publish_window = *v;
    reconnect(r, c);
    if (auto v = path(r, "credentials")) c.credentials = *v;
    if (auto v = path(r, "nkey_seed")) c.nkey_seed = *v;
    if (auto v = secret(r, "user")) c.user = *v;
    if (auto v = secret(r, "password")) c.password = *v;
    if (auto v = secret(r, "token")) c.token = *v;
    if (const json* v = r.get("tls")) tls(*v, c);
    r.reject_unknown_keys();
    check_auth(c);
    return c;
  }

 private:
  std::optional<std::vector<std::string>> urls(JsonObjectReader& r) {
    const json* value = r.require("nats");
    if (value == nullptr) return std::nullopt;
    std::optional<std::vector<std::string>> v =
        read_string_array(*value, r.path_of("nats"), false, errors_);
    if (!v) return std::nullopt;
    bool ok = true;
    for (size_t i = 0; i < v->size(); ++i) {
      std::string& url = (*v)[i];
      std::string at = json_index_path(r.path_of("nats"), i);
      if (url.find('@') != std::string::npos) {
        // Not echoed: the URL holds a password or a token.
        errors_.push_back({at,
                           "expected no user, password or token in the URL (status and logs "
                           "show server URLs; use cluster.user and cluster.password, or "
                           "cluster.token)"});
        ok = false;
      } else if (std::optional<std::string> normal = normalize_nats_url(url)) {
        url = *normal;
      } else {
        errors_.push_back({at,
                           "expected a URL nats://HOST:PORT or tls://HOST:PORT (port "
                           "1..65535, 4222 if left out), got " +
                               describe_json(json(url))});
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return v;
  }

  // 1..max_chars letters, digits and `extra`.
  std::optional<std::string> name(JsonObjectReader& r, std::string_view key, size_t max_chars,
                                  std::string_view extra) {
    std::optional<std::string> v = r.string(key, true);
    if (!v) return std::nullopt;
    if (v->empty() || v->size() > max_chars || !all_of_chars(*v, extra)) {
      std::string allowed;
      for (char ch : extra) allowed += std::string(" ") + ch;
      r.error(key, "expected 1.." + std::to_string(max_chars) + " characters A-Z a-z 0-9" +
                       allowed + ", got " + describe_json(json(*v)));
      return std::nullopt;
    }
    return v;
  }

  std::string default_node(JsonObjectReader& r) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) {
      r.error("node", std::string("cannot read the host name for the default (set the key): ") +
                          std::strerror(errno));
      return {};
    }
    return cluster_node_from_host_name(host);
  }

  void reconnect(JsonObjectReader& r, ClusterConfig& c) {
    if (auto v = r.integer("reconnect_wait_ms", 100, kMaxReconnectWaitMs)) {
      c.reconnect_wait_ms = *v;
    }
    std::optional<int64_t> max = r.integer("reconnect_max_wait_ms", 1, kMaxReconnectMaxWaitMs);
    if (max && *max < c.reconnect_wait_ms) {
      // The delay doubles from reconnect_wait_ms up to this cap; a smaller cap is a typo.
      r.error("reconnect_max_wait_ms", "expected at least cluster.reconnect_wait_ms (" +
                                           std::to_string(c.reconnect_wait_ms) + "), got " +
                                           std::to_string(*max));
    } else if (max) {
      c.reconnect_max_wait_ms = *max;
    }
    if (!max && c.reconnect_max_wait_ms < c.reconnect_wait_ms) {
      // Only reconnect_wait_ms given, above the default cap: the cap follows it.
      c.reconnect_max_wait_ms = c.reconnect_wait_ms;
    }
  }

  // A file path, resolved against the config file's folder; not opened here (the daemon reports
  // an unreadable one when it connects, naming the key).
  std::optional<std::string> path(JsonObjectReader& r, std::string_view key) {
    std::optional<std::string> v = r.string(key, false);
    if (!v) return std::nullopt;
    if (v->find('\0') != std::string::npos) {
      r.error(key, "expected a path, got a string holding a NUL byte");
      return std::nullopt;
    }
    return resolve_path(base_, *v);
  }

  // A user name, password or token: a non-empty string, never echoed in an error.
  std::optional<std::string> secret(JsonObjectReader& r, std::string_view key) {
    const json* v = r.get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) {
      r.error(key, std::string("expected string, got ") + v->type_name());
      return std::nullopt;
    }
    if (v->get_ref<const std::string&>().empty()) {
      r.error(key, "expected a non-empty string");
      return std::nullopt;
    }
    return v->get<std::string>();
  }

  void tls(const json& value, ClusterConfig& c) {
    JsonObjectReader t(value, "cluster.tls", errors_);
    if (!t.is_object()) return;
    if (auto v = path(t, "ca")) c.tls_ca = *v;
    if (auto v = path(t, "cert")) c.tls_cert = *v;
    if (auto v = path(t, "key")) c.tls_key = *v;
    if (auto v = t.string("hostname", false)) c.tls_hostname = *v;
    t.reject_unknown_keys();
    bool has_cert = t.get("cert") != nullptr;
    bool has_key = t.get("key") != nullptr;
    if (has_cert && !has_key) t.error("cert", "requires cluster.tls.key (mutual TLS needs both)");
    if (has_key && !has_cert) t.error("key", "requires cluster.tls.cert (mutual TLS needs both)");
    if (value.empty()) {
      // The struct has no "TLS on" flag apart from these keys: an empty object would be lost.
      errors_.push_back({"cluster.tls",
                         "expected at least one of \"ca\", \"cert\", \"key\", "
                         "\"hostname\" (tls:// URLs alone turn TLS on)"});
    }
  }

  // user goes with password. A server takes one way to authenticate per connection, and libnats
  // would quietly prefer one of several (credentials and an NKey seed even set the same
  // callback), so at most one of: user and password, token, credentials, nkey_seed.
  void check_auth(const ClusterConfig& c) {
    const bool user = !c.user.empty();
    const bool password = !c.password.empty();
    if (user && !password && !has_error("cluster.password")) {
      errors_.push_back({"cluster.user", "requires cluster.password"});
    }
    if (password && !user && !has_error("cluster.user")) {
      errors_.push_back({"cluster.password", "requires cluster.user"});
    }
    std::vector<std::string> given;
    if (user || password) given.push_back(user ? "cluster.user" : "cluster.password");
    if (!c.token.empty()) given.push_back("cluster.token");
    if (!c.credentials.empty()) given.push_back("cluster.credentials");
    if (!c.nkey_seed.empty()) given.push_back("cluster.nkey_seed");
    for (size_t i = 1; i < given.size(); ++i) {
      errors_.push_back({given[i], "cannot be used with " + given[0] +
                                       " (give one way to authenticate: user and password, "
                                       "token, credentials or nkey_seed)"});
    }
  }

  bool has_error(std::string_view path) const {
    return std::any_of(errors_.begin(), errors_.end(),
                       [path](const FieldError& e) { return e.path == path; });
  }

  const std::string base_;
  FieldErrors& errors_;
};

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
    if (const json* v = r.get("cluster")) c.cluster = ClusterParser(base_, errors_).parse(*v);
    r.reject_unknown_keys();
    return c;
  }

 private:
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

std::string cluster_node_from_host_name(std::string_view host_name) {
  std::string node(host_name.substr(0, kMaxNodeChars));
  for (char& ch : node) {
    if (!all_of_chars(std::string_view(&ch, 1), "_.-")) ch = '-';
  }
  if (node.empty()) node = "node";
  return node;
}

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

void validate_config(const DaemonConfig& config) {
  FieldErrors errors;
  check_config(config, errors);
  if (!errors.empty()) throw ConfigError(format_errors("", errors));
}

}  // namespace docpipe
