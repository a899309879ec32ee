#include "core/notify_spec.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/json_util.h"

namespace docpipe {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  });
  return out;
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

bool is_v6_char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
         c == '.';
}

// "1".."65535"; nullopt otherwise (no sign, no leading '+', at most 5 digits).
std::optional<int> parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v < 1 || v > 65535) return std::nullopt;
  return v;
}

// host[:port] or [v6][:port]: the host lower-cased and the port if given. `problem` says what is
// wrong otherwise.
bool split_host_port(std::string_view s, std::string& host, std::optional<int>& port,
                     std::string& problem) {
  std::string_view rest;
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos || close == 1) {
      problem = "malformed IPv6 address (expected \"[address]\")";
      return false;
    }
    std::string_view inner = s.substr(1, close - 1);
    if (!std::all_of(inner.begin(), inner.end(), is_v6_char)) {
      problem = "malformed IPv6 address";
      return false;
    }
    host = lower(s.substr(0, close + 1));
    rest = s.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') {
      problem = "unexpected text after the IPv6 address";
      return false;
    }
  } else {
    const size_t colon = s.find(':');
    std::string_view name = s.substr(0, colon);
    if (name.empty()) {
      problem = "no host";
      return false;
    }
    if (!std::all_of(name.begin(), name.end(), is_name_char)) {
      problem = "the host may hold only A-Z a-z 0-9 . - _";
      return false;
    }
    host = lower(name);
    rest = colon == std::string_view::npos ? std::string_view() : s.substr(colon);
  }
  if (rest.empty()) return true;
  std::optional<int> p = parse_port(rest.substr(1));
  if (!p) {
    problem = "the port must be a number 1..65535";
    return false;
  }
  port = p;
  return true;
}

}  // namespace

std::optional<WebhookUrl> parse_webhook_url(std::string_view url, std::string& problem) {
  if (url.size() > kMaxWebhookUrlBytes) {
    problem = "the URL is " + std::to_string(url.size()) + " bytes long, at most " +
              std::to_string(kMaxWebhookUrlBytes);
    return std::nullopt;
  }
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f ||
        c == '\\') {
      problem =
          "the URL may hold only printable ASCII without spaces or backslashes (percent-encode "
          "the rest)";
      return std::nullopt;
    }
  }
  const size_t sep = url.find("://");
  if (sep == std::string_view::npos) {
    problem = "expected an http:// or https:// URL";
    return std::nullopt;
  }
  WebhookUrl out;
  out.scheme = lower(url.substr(0, sep));
  if (out.scheme != "http" && out.scheme != "https") {
    problem = "only http:// and https:// URLs are allowed, got " + out.scheme + "://";
    return std::nullopt;
  }
  std::string_view rest = url.substr(sep + 3);
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.find('@') != std::string_view::npos) {
    problem =
        "user information (\"user:password@\") is not allowed in a webhook URL: it would show "
        "in the report and in status";
    return std::nullopt;
  }
  std::optional<int> port;
  if (!split_host_port(authority, out.host, port, problem)) return std::nullopt;
  out.port_given = port.has_value();
  out.port = port.value_or(out.scheme == "https" ? 443 : 80);
  return out;
}

std::string AllowedHost::key() const { return port ? host + ":" + std::to_string(*port) : host; }

std::optional<AllowedHost> parse_allowed_host(std::string_view entry, std::string& problem) {
  if (entry.find("://") != std::string_view::npos || entry.find('/') != std::string_view::npos) {
    problem = "expected a host name or host:port, not a URL";
    return std::nullopt;
  }
  AllowedHost out;
  if (!split_host_port(entry, out.host, out.port, problem)) return std::nullopt;
  return out;
}

std::optional<std::string> allowed_host_for(const WebhookUrl& url,
                                            const std::vector<std::string>& allowed) {
  for (const std::string& entry : allowed) {
    std::string problem;
    std::optional<AllowedHost> a = parse_allowed_host(entry, problem);
    if (!a || a->host != url.host) continue;
    if (a->port && *a->port != url.port) continue;
    return a->key();
  }
  return std::nullopt;
}

const char* webhook_format_name(WebhookFormat f) {
  return f == WebhookFormat::kText ? "text" : "report";
}

std::optional<WebhookFormat> parse_webhook_format(std::string_view name) {
  if (name == "report") return WebhookFormat::kReport;
  if (name == "text") return WebhookFormat::kText;
  return std::nullopt;
}

bool NotifySpec::wants(JobState state) const {
  switch (state) {
    case JobState::kSucceeded:
      return (on & kNotifySucceeded) != 0;
    case JobState::kFailed:
      return (on & kNotifyFailed) != 0;
    case JobState::kCancelled:
      return (on & kNotifyCancelled) != 0;
  }
  return false;
}

std::optional<NotifySpec> parse_notify(const nlohmann::json& value, FieldErrors& errors) {
  const size_t before = errors.size();
  JsonObjectReader r(value, "notify", errors);
  if (!r.is_object()) return std::nullopt;
  NotifySpec spec;
  if (auto url = r.string("webhook", false)) {
    std::string problem;
    if (parse_webhook_url(*url, problem)) {
      spec.webhook = std::move(*url);
    } else {
      r.error("webhook", problem);
    }
  }
  if (auto command = r.string("command", false)) spec.command = std::move(*command);
  if (auto format = r.string("webhook_format", false)) {
    if (std::optional<WebhookFormat> f = parse_webhook_format(*format)) {
      spec.webhook_format = *f;
    } else {
      r.error("webhook_format",
              "expected one of \"report\" (the report JSON), \"text\" "
              "({\"text\": a one-line summary}), got " +
                  describe_json(nlohmann::json(*format)));
    }
  }
  if (value.is_object() && value.contains("webhook_format") && !value.contains("webhook")) {
    r.error("webhook_format",
            "needs \"webhook\" (it shapes the webhook's body; the command channel always reads "
            "the report)");
  }
  if (const nlohmann::json* on = r.get("on")) {
    std::optional<std::vector<std::string>> names =
        read_string_array(*on, r.path_of("on"), false, errors);
    if (names) {
      spec.on = 0;
      for (size_t i = 0; i < names->size(); ++i) {
        const std::string& n = (*names)[i];
        unsigned bit = 0;
        if (n == "succeeded") bit = kNotifySucceeded;
        if (n == "failed") bit = kNotifyFailed;
        if (n == "cancelled") bit = kNotifyCancelled;
        const std::string path = json_index_path(r.path_of("on"), i);
        if (bit == 0) {
          errors.push_back({path, "expected one of \"succeeded\", \"failed\", \"cancelled\", got " +
                                      describe_json(nlohmann::json(n))});
        } else if ((spec.on & bit) != 0) {
          errors.push_back({path, "\"" + n + "\" is listed twice"});
        }
        spec.on |= bit;
      }
    }
  }
  if (value.is_object() && !value.contains("webhook") && !value.contains("command")) {
    errors.push_back({"notify", "expected \"webhook\", \"command\" or both"});
  }
  r.reject_unknown_keys();
  if (errors.size() != before) return std::nullopt;
  return spec;
}

void check_notify(const NotifySpec& notify, const std::vector<std::string>& allowed_webhook_hosts,
                  const std::map<std::string, CommandSpec>& commands, FieldErrors& errors) {
  if (notify.webhook) {
    std::string problem;
    std::optional<WebhookUrl> url = parse_webhook_url(*notify.webhook, problem);
    if (url && !allowed_host_for(*url, allowed_webhook_hosts)) {
      std::string allowed;
      for (const std::string& h : allowed_webhook_hosts)
        allowed += (allowed.empty() ? "" : ", ") + h;
      errors.push_back(
          {"notify.webhook",
           "host \"" + url->authority() +
               "\" is not in the daemon config's allowed_webhook_hosts (" +
               (allowed.empty() ? std::string("none allowed") : "allowed: " + allowed) +
               "); an operator must add \"" + url->host + "\" or \"" + url->authority() +
               "\" to allowed_webhook_hosts"});
    }
  }
  if (notify.command) {
    auto it = commands.find(*notify.command);
    if (it == commands.end()) {
      std::string known;
      for (const auto& [name, spec] : commands) known += (known.empty() ? "" : ", ") + name;
      errors.push_back({"notify.command",
                        "unknown command " + describe_json(nlohmann::json(*notify.command)) +
                            ": not in the daemon config's commands (" +
                            (known.empty() ? std::string("none configured") : "known: " + known) +
                            ")"});
    } else if (it->second.mode == CommandMode::kPool) {
      errors.push_back({"notify.command",
                        "command \"" + *notify.command +
                            "\" runs as a pool (\"mode\": \"pool\"), which speaks the per-document "
                            "protocol; a notification needs a command run once per report"});
    }
  }
}

}  // namespace docpipe
