// The daemon config's "cluster" section (docs/design.md "Several nodes: sharing jobs through
// NATS JetStream"): NATS URLs, names, timings, credentials and TLS, every problem collected.

#include "config/cluster_config_parser.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/json_util.h"
#include "core/path_util.h"

namespace docpipe {
namespace {

using nlohmann::json;

constexpr int64_t kMax = JsonObjectReader::kMax;

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

}  // namespace

std::string cluster_node_from_host_name(std::string_view host_name) {
  std::string node(host_name.substr(0, kMaxNodeChars));
  for (char& ch : node) {
    if (!all_of_chars(std::string_view(&ch, 1), "_.-")) ch = '-';
  }
  if (node.empty()) node = "node";
  return node;
}

ClusterConfig parse_cluster_config(const nlohmann::json& value, const std::string& base_dir,
                                   FieldErrors& errors) {
  return ClusterParser(base_dir, errors).parse(value);
}

}  // namespace docpipe
