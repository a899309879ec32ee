#include "daemon/notify_record.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/fs_util.h"
#include "core/time_util.h"

namespace docpipe {

using nlohmann::ordered_json;

const char* notify_channel_name(NotifyChannel c) {
  return c == NotifyChannel::kWebhook ? "webhook" : "command";
}

const char* delivery_state_name(DeliveryState s) {
  switch (s) {
    case DeliveryState::kPending:
      return "pending";
    case DeliveryState::kDelivered:
      return "delivered";
    case DeliveryState::kFailed:
      return "failed";
  }
  return "pending";
}

bool NotifyRecord::pending() const {
  for (const NotifyChannelState& c : channels) {
    if (c.state == DeliveryState::kPending) return true;
  }
  return false;
}

std::optional<NotifyRecord> make_notify_record(const std::string& id, JobState state,
                                               const NotifySpec& spec,
                                               const std::string& report_text) {
  if (!spec.wants(state)) return std::nullopt;
  NotifyRecord r;
  r.id = id;
  r.succeeded_folder = state == JobState::kSucceeded;
  r.body = report_text;
  r.webhook_format = spec.webhook_format;
  if (spec.webhook)
    r.channels.push_back({.channel = NotifyChannel::kWebhook, .target = *spec.webhook});
  if (spec.command)
    r.channels.push_back({.channel = NotifyChannel::kCommand, .target = *spec.command});
  if (r.channels.empty()) return std::nullopt;
  return r;
}

namespace {

// The UTF-8 sequence length a lead byte announces; 0 for a byte that starts none.
size_t utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;  // not C0/C1: overlong
  if ((lead >> 4) == 0xe) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;  // not F5..F7: past U+10FFFF
  return 0;
}

// The code point of the valid sequence `s` (utf8_length bytes).
uint32_t code_point(std::string_view s) {
  const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(s[i])); };
  if (s.size() == 2) return ((b(0) & 0x1f) << 6) | (b(1) & 0x3f);
  if (s.size() == 3) return ((b(0) & 0x0f) << 12) | ((b(1) & 0x3f) << 6) | (b(2) & 0x3f);
  return ((b(0) & 0x07) << 18) | ((b(1) & 0x3f) << 12) | ((b(2) & 0x3f) << 6) | (b(3) & 0x3f);
}

// Characters that would break the one line or disguise it: C1 controls (NEL), line and
// paragraph separators, bidirectional marks, embeddings, overrides and isolates (a file name
// "invoice\u202Etxt.exe" shown as "invoiceexe.txt"), the byte order mark; and what is not a
// character (surrogates, overlong or out-of-range forms that passed the lead-byte test).
bool shown_as_space(uint32_t cp, size_t len) {
  const bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
  return overlong || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
         (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 || cp == 0x200e ||
         cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) ||
         cp == 0xfeff;
}

// How one ASCII character reads in a line of chat text.
std::string_view chat_ascii(const char& c) {
  switch (c) {
    case '&':
      return "&amp;";
    case '<':
      return "&lt;";
    case '>':
      return "&gt;";
    default:
      break;
  }
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f ? std::string_view(" ") : std::string_view(&c, 1);
}

// Appends `text` to `out` as one line of chat text (see report_summary), a whole character at a
// time, stopping before `out` would pass `limit` bytes; false when it stopped short.
bool append_chat_text(std::string& out, std::string_view text, size_t limit) {
  size_t i = 0;
  while (i < text.size()) {
    size_t len = utf8_length(static_cast<unsigned char>(text[i]));
    bool valid = len != 0 && i + len <= text.size();
    for (size_t k = 1; valid && k < len; ++k) {
      valid = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    }
    std::string_view piece;
    if (!valid) {
      piece = "\xef\xbf\xbd";  // U+FFFD for a byte that starts no character
      len = 1;
    } else if (len == 1) {
      piece = chat_ascii(text[i]);
    } else {
      piece = text.substr(i, len);
      if (shown_as_space(code_point(piece), len)) piece = " ";
    }
    if (out.size() + piece.size() > limit) return false;
    out += piece;
    i += len;
  }
  return true;
}

}  // namespace

std::string report_summary(const std::string& report_text) {
  const nlohmann::json r = nlohmann::json::parse(report_text, nullptr, false);
  auto str = [&r](const char* key) {
    return r.is_object() && r.contains(key) && r[key].is_string() ? r[key].get<std::string>()
                                                                  : std::string();
  };
  auto count = [&r](const char* key) -> int64_t {
    if (!r.is_object() || !r.contains("counts") || !r["counts"].is_object()) return 0;
    const nlohmann::json& c = r["counts"];
    return c.contains(key) && c[key].is_number_integer() ? c[key].get<int64_t>() : 0;
  };
  std::string head = "docpipe job " + str("id") + " " + str("state") + ": " +
                     std::to_string(count("succeeded")) + " succeeded, " +
                     std::to_string(count("failed")) + " failed, " +
                     std::to_string(count("skipped")) + " skipped";
  if (count("cancelled") > 0) head += ", " + std::to_string(count("cancelled")) + " cancelled";
  head += " of " + std::to_string(count("total"));
  if (r.is_object() && r.contains("duration_seconds") && r["duration_seconds"].is_number()) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, " (%.1f s)", r["duration_seconds"].get<double>());
    head += seconds;
  }
  std::string tail;
  const nlohmann::json* failed = r.is_object() && r.contains("failed_documents") &&
                                         r["failed_documents"].is_array() &&
                                         !r["failed_documents"].empty()
                                     ? &r["failed_documents"][0]
                                     : nullptr;
  if (failed != nullptr && failed->is_object()) {
    tail = "; first failure: " + failed->value("input", std::string()) + ": " +
           failed->value("error", std::string());
  } else if (!str("reason").empty()) {
    tail = "; reason: " + str("reason");
  }
  constexpr std::string_view kCut = "...";
  std::string out;
  if (!append_chat_text(out, head + tail, kMaxSummaryBytes)) {
    // Cut between characters, with room for the mark.
    out.clear();
    (void)append_chat_text(out, head + tail, kMaxSummaryBytes - kCut.size());
    out += kCut;
  }
  return out;
}

std::string webhook_body(const NotifyRecord& record) {
  if (record.webhook_format == WebhookFormat::kReport) return record.body;
  nlohmann::ordered_json j;
  j["text"] = report_summary(record.body);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void fail_unrecorded(NotifyRecord& record, const std::string& error) {
  for (NotifyChannelState& c : record.channels) {
    c.state = DeliveryState::kFailed;
    c.last_error = error;
    c.next_attempt_ms = 0;
  }
}

std::string notify_record_to_json(const NotifyRecord& r) {
  ordered_json j;
  j["notify_record"] = 1;
  j["id"] = r.id;
  j["folder"] = r.succeeded_folder ? "done" : "failed";
  ordered_json channels = ordered_json::array();
  for (const NotifyChannelState& c : r.channels) {
    channels.push_back({{"channel", notify_channel_name(c.channel)},
                        {"target", c.target},
                        {"state", delivery_state_name(c.state)},
                        {"attempts", c.attempts},
                        {"last_error", c.last_error},
                        {"http_status", c.http_status},
                        {"last_attempt_ms", c.last_attempt_ms},
                        {"next_attempt_ms", c.next_attempt_ms}});
  }
  j["channels"] = std::move(channels);
  j["webhook_format"] = webhook_format_name(r.webhook_format);
  j["body"] = r.body;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

Result<NotifyRecord> parse_notify_record(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  auto bad = [](const std::string& why) {
    return make_error(ErrorCode::kCorruptInput, "notification record: " + why);
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  NotifyRecord r;
  try {
    if (j.value("notify_record", 0) != 1) return bad("unknown format (\"notify_record\" is not 1)");
    r.id = j.at("id").get<std::string>();
    const std::string folder = j.at("folder").get<std::string>();
    if (folder != "done" && folder != "failed") return bad("folder is neither done nor failed");
    r.succeeded_folder = folder == "done";
    r.body = j.at("body").get<std::string>();
    // Records written before webhook_format existed send the report.
    const std::string format = j.value("webhook_format", std::string("report"));
    std::optional<WebhookFormat> f = parse_webhook_format(format);
    if (!f) return bad("unknown webhook_format " + format);
    r.webhook_format = *f;
    for (const nlohmann::json& c : j.at("channels")) {
      NotifyChannelState s;
      const std::string channel = c.at("channel").get<std::string>();
      if (channel != "webhook" && channel != "command") return bad("unknown channel " + channel);
      s.channel = channel == "webhook" ? NotifyChannel::kWebhook : NotifyChannel::kCommand;
      s.target = c.at("target").get<std::string>();
      const std::string state = c.at("state").get<std::string>();
      s.state = state == "delivered" ? DeliveryState::kDelivered
                : state == "failed"  ? DeliveryState::kFailed
                                     : DeliveryState::kPending;
      s.attempts = c.at("attempts").get<int>();
      s.last_error = c.at("last_error").get<std::string>();
      s.http_status = c.at("http_status").get<int>();
      s.last_attempt_ms = c.at("last_attempt_ms").get<int64_t>();
      s.next_attempt_ms = c.at("next_attempt_ms").get<int64_t>();
      r.channels.push_back(std::move(s));
    }
  } catch (const nlohmann::json::exception& e) {
    return bad(std::string("a field is missing or of the wrong type (") + e.what() + ")");
  }
  if (r.channels.empty()) return bad("no channels");
  return r;
}

std::string report_with_notify(const NotifyRecord& r) {
  ordered_json report = ordered_json::parse(r.body, nullptr, false);
  if (report.is_discarded() || !report.is_object()) report = ordered_json::object();
  set_notify_section(report, r);
  return report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

void set_notify_section(ordered_json& report, const NotifyRecord& r) {
  ordered_json section = ordered_json::object();
  for (const NotifyChannelState& c : r.channels) {
    ordered_json s;
    s[c.channel == NotifyChannel::kWebhook ? "url" : "command"] = c.target;
    s["state"] = delivery_state_name(c.state);
    s["attempts"] = c.attempts;
    if (!c.last_error.empty()) s["last_error"] = c.last_error;
    if (c.http_status != 0) s["http_status"] = c.http_status;
    if (c.last_attempt_ms != 0) s["last_attempt_at"] = format_utc(c.last_attempt_ms);
    if (c.state == DeliveryState::kPending && c.next_attempt_ms != 0) {
      s["next_attempt_at"] = format_utc(c.next_attempt_ms);
    }
    section[notify_channel_name(c.channel)] = std::move(s);
  }
  report["notify"] = std::move(section);
}

std::string notify_folder(const std::string& spool_root) { return spool_root + "/notify"; }

std::string notify_record_path(const std::string& spool_root, const std::string& id) {
  return notify_folder(spool_root) + "/" + id + ".json";
}

Status store_notify_record(const std::string& spool_root, const NotifyRecord& record,
                           bool durable) {
  const std::string path = notify_record_path(spool_root, record.id);
  if (!record.pending()) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return errno_error("remove " + path, errno);
    }
    if (durable) return fsync_dir(notify_folder(spool_root));
    return ok();
  }
  // The folder by hand, not make_dirs: its errors keep their errno, which tells the job table a
  // full spool (retried) from a folder that will never take the record (ENOTDIR, EACCES, EROFS).
  const std::string folder = notify_folder(spool_root);
  if (::mkdir(folder.c_str(), 0755) != 0 && errno != EEXIST) {
    return errno_error("create folder " + folder, errno);
  }
  struct stat sb;
  if (::stat(folder.c_str(), &sb) != 0) return errno_error("stat " + folder, errno);
  if (!S_ISDIR(sb.st_mode)) return errno_error(folder + " is there but not a folder", ENOTDIR);
  return write_file_atomic(path, notify_record_to_json(record), durable);
}

}  // namespace docpipe
