#pragma once
// A job's "notify" (docs/design.md "Completion notifications (issue 14)"): where the daemon tells
// that the job ended: a webhook (an http or https URL whose host the daemon config allow-lists in
// `allowed_webhook_hosts`) and/or an allow-listed command (`commands`), each handed the report.
//
// parse_notify() reads the job file's object (pure: shapes and values); check_notify() checks it
// against the daemon config (the host allowed, the command known and run as a process), so that
// a job naming a host the operator did not allow is refused when it is submitted, not when it
// ends.

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/field_error.h"
#include "core/report.h"
#include "core/transform.h"  // CommandSpec

namespace docpipe {

// A webhook URL taken apart: http or https, a host (a name, an IPv4 address or a bracketed IPv6
// address, lower-cased), the port (given, or the scheme's), and the rest (path and query).
struct WebhookUrl {
  std::string scheme;  // "http" | "https"
  std::string host;    // lower-case; IPv6 with its brackets
  int port = 0;
  bool port_given = false;
  std::string authority() const { return host + ":" + std::to_string(port); }  // "h:443"
};

// Longer URLs are refused (a job file's URL is a few hundred bytes at most).
inline constexpr size_t kMaxWebhookUrlBytes = 2048;

// nullopt with `problem` set when the URL is not one docpipe sends to: another scheme, user
// information ("user:pass@"), a character outside the printable ASCII set, a backslash, an empty
// or malformed host or port. Strict on purpose: what passes here is read the same way by libcurl,
// which the sender checks again (host and port) before it connects.
std::optional<WebhookUrl> parse_webhook_url(std::string_view url, std::string& problem);

// An `allowed_webhook_hosts` entry: "name" (any port) or "name:port" ("[v6]:port"). nullopt and
// `problem` when it is neither. Names are lower-cased.
struct AllowedHost {
  std::string host;
  std::optional<int> port;
  std::string key() const;  // how the entry is shown and keyed: "host" or "host:port"
};
std::optional<AllowedHost> parse_allowed_host(std::string_view entry, std::string& problem);

// The first entry of `allowed` that lets `url` through (its key(), the circuit breaker's and the
// metrics' name for the host); nullopt when none does. Entries that do not parse match nothing.
std::optional<std::string> allowed_host_for(const WebhookUrl& url,
                                            const std::vector<std::string>& allowed);

enum NotifyOn : unsigned {
  kNotifySucceeded = 1,
  kNotifyFailed = 2,
  kNotifyCancelled = 4,
  kNotifyAll = 7,
};

// What a webhook's body is: the report JSON (kReport, the default), or {"text": SUMMARY} for the
// incoming webhooks of chat services (Slack, Mattermost, Rocket.Chat, Google Chat), which take
// nothing else. The command channel always reads the report.
enum class WebhookFormat { kReport, kText };
const char* webhook_format_name(WebhookFormat f);  // "report", "text"
// nullopt for any other name.
std::optional<WebhookFormat> parse_webhook_format(std::string_view name);

struct NotifySpec {
  std::optional<std::string> webhook;  // the URL as given
  std::optional<std::string> command;  // a name in the daemon config's `commands`
  unsigned on = kNotifyAll;            // NotifyOn bits
  WebhookFormat webhook_format = WebhookFormat::kReport;
  bool wants(JobState state) const;
};

// The "notify" object of a job file, at JSON path "notify". Appends every problem to `errors`.
std::optional<NotifySpec> parse_notify(const nlohmann::json& value, FieldErrors& errors);

// Against the daemon config: the webhook's host must be allowed, the command must be allow-listed
// and run as a process ("mode": "pool" commands speak a per-document protocol, not a report).
void check_notify(const NotifySpec& notify, const std::vector<std::string>& allowed_webhook_hosts,
                  const std::map<std::string, CommandSpec>& commands, FieldErrors& errors);

}  // namespace docpipe
