#include "daemon/notify_record.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
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
  if (spec.webhook)
    r.channels.push_back({.channel = NotifyChannel::kWebhook, .target = *spec.webhook});
  if (spec.command)
    r.channels.push_back({.channel = NotifyChannel::kCommand, .target = *spec.command});
  if (r.channels.empty()) return std::nullopt;
  return r;
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
