#pragma once
// The daemon config (DESIGN.md "Daemon config"): strict JSON, unknown keys and wrong types are
// errors naming the key; relative paths resolve against the config file's folder.
// Loading throws ConfigError (control plane: start-up and reload only).

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/http_tokens.h"
#include "config/quota_config.h"
#include "core/transform.h"  // CommandSpec

namespace docpipe {

// The optional "cluster" section (docs/design.md "Several nodes"): several daemons share jobs
// through NATS JetStream. Absent (`enabled` false): one node, no NATS, exactly as before.
struct ClusterConfig {
  bool enabled = false;  // the section is present
  // Server URLs, at least one: nats://HOST[:PORT] or tls://HOST[:PORT], stored with the port made
  // explicit (4222 if left out). No user or password in a URL: status and logs show URLs.
  std::vector<std::string> nats;
  // Stream name: also the prefix of subjects ("<stream>.doc.<job>") and of the KV buckets
  // ("<stream>_jobs", "<stream>_nodes"). Letters, digits, '-' and '_'.
  std::string stream = "DOCPIPE";
  std::string node;      // this node's name, unique in the cluster; default: the host name
  int64_t replicas = 1;  // stream and bucket replicas: 1, or 3 on a 3-server cluster (R3)
  // Document messages this node holds unacknowledged at once (its share of the work queue);
  // 0: max_in_flight_documents. A node fetches only while it holds fewer.
  int64_t max_ack_pending = 0;
  // Unacknowledged for this long, a document is redelivered to another node. Nodes send
  // in-progress acknowledgements for documents they still work on every ack_wait_ms / 3.
  int64_t ack_wait_ms = 30000;
  // A document delivered this many times without an outcome (its nodes died on it) fails.
  int64_t max_deliver = 10;
  // A coordinator renews its lease on a job every lease_ms / 3; a job whose lease was not renewed
  // for lease_ms (seen by a node connected all that time) is taken over by another node.
  int64_t lease_ms = 15000;
  // Documents a coordinator keeps published and not yet finished, per job; 0: 4 x max_ack_pending.
  int64_t publish_window = 0;
  int64_t reconnect_wait_ms = 1000;  // first reconnect delay; doubles up to the max
  int64_t reconnect_max_wait_ms = 10000;
  // Authentication and TLS, as libnats offers them (all optional; paths absolute once loaded).
  std::string credentials;  // a .creds file (JWT and NKey seed)
  std::string nkey_seed;    // a file holding an NKey seed
  std::string user;
  std::string password;
  std::string token;
  std::string tls_ca;    // CA bundle that signs the servers' certificates (implies TLS)
  std::string tls_cert;  // client certificate chain, with tls_key (mutual TLS)
  std::string tls_key;
  std::string tls_hostname;  // expected server name when it differs from the URL's host

  bool operator==(const ClusterConfig&) const = default;
};

// "retention": how long finished and rejected jobs stay in the spool (docs/design.md
// "Retention"). 0: no limit of that kind; a folder without a rule keeps everything.
struct RetentionRule {
  int64_t max_age_days = 0;
  int64_t max_jobs = 0;
};
struct RetentionConfig {
  RetentionRule done;
  RetentionRule failed;
  RetentionRule rejected;
  // How often the spool is measured (docpipe_spool_files, docpipe_spool_bytes) and pruned.
  int64_t interval_ms = 60000;
};

// "notify": how completion notifications are delivered (docs/design.md "Completion notifications
// (issue 14)"). Delays double from retry_base_ms up to retry_max_ms, each jittered x0.5..x1.5.
struct NotifyConfig {
  int64_t max_attempts = 10;      // per channel; then the notification fails
  int64_t retry_base_ms = 1000;   // the delay after the first failed attempt
  int64_t retry_max_ms = 300000;  // the longest delay between attempts
  int64_t timeout_ms = 10000;     // one webhook attempt, connection included
  BreakerConfig breaker = {};     // per webhook host
};

struct DaemonConfig {
  std::string spool_dir;  // absolute
  std::string metrics_listen = "127.0.0.1:9464";
  // Bearer tokens for /jobs/ID on the metrics listener (config/http_tokens.h); "" (default):
  // /jobs/ID is off. The file is read by the daemon only, at start and at each reload
  // (load_config_http_tokens), so that CLI users who read this config need not read it.
  std::string http_tokens_file;
  std::shared_ptr<const HttpTokens> http_tokens;
  std::string control_socket;  // absolute; default <spool_dir>/control.sock
  // Root and members of this group see and cancel every job; others only their own. "" (the
  // default): nobody but root. A group name or a numeric gid, resolved when the config loads.
  std::string admin_group;
  std::optional<gid_t> admin_gid;
  // Control connections open at once; one more is told so and closed.
  int64_t max_control_connections = 64;
  // A control connection with no request in flight that sends nothing for this long is closed.
  int64_t control_idle_timeout_ms = 60000;
  int workers = 0;  // transformer threads; default: number of cores
  // Documents in OCR at once (ocr, pdf.text with ocr "auto"), whatever `workers` allows; default:
  // number of cores. Tesseract keeps a core busy per page.
  int ocr_concurrency = 0;
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
  std::string log_level = "info";                      // debug | info | warn | error
  std::string log_format = "text";                     // text | json
  std::map<std::string, CommandSpec> commands;
  ClusterConfig cluster;  // "cluster": takes effect at start only (a reload keeps the old one)
  RetentionConfig retention;
  // "quotas": caps per submitter on queued jobs and priority (config/quota_config.h); a reload
  // applies to the submits that follow.
  QuotaConfig quotas;
  // Hosts a job's notify.webhook may name: "name" (any port) or "name:port"; empty: none.
  std::vector<std::string> allowed_webhook_hosts;
  NotifyConfig notify;
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

// The default "cluster.node": `host_name` cut to 64 characters, each character outside
// A-Z a-z 0-9 _ . - replaced by '-' ("node" for an empty name). Node names are KV keys and appear
// in status and metrics, hence the narrow set.
std::string cluster_node_from_host_name(std::string_view host_name);

// The daemon's part of loading: reads http_tokens_file into config.http_tokens (nothing when the
// key is unset). Throws ConfigError naming the key and the file's problem.
void load_config_http_tokens(DaemonConfig& config);

// Checks cross-field rules (positive counts, listen address form HOST:PORT). Throws ConfigError.
void validate_config(const DaemonConfig& config);

}  // namespace docpipe
