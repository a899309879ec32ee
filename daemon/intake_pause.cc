#include "daemon/intake_pause.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <limits>

#include "core/fs_util.h"
#include "core/path_util.h"
#include "core/time_util.h"

namespace docpipe {

std::string pause_file_path(const std::string& spool_root) { return spool_root + "/paused.json"; }

Result<std::optional<IntakePause>> load_intake_pause(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    // Only a file that is not there means open; anything else (EACCES, EIO) is unreadable.
    if (errno == ENOENT) return std::optional<IntakePause>();
    return errno_error("stat " + path, errno);
  }
  Result<std::string> text = read_file(path);
  if (!text) return text.error();
  nlohmann::json doc = nlohmann::json::parse(*text, nullptr, false);
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::kCorruptInput, path + ": " + why);
  };
  if (doc.is_discarded() || !doc.is_object()) return bad("not a JSON object");
  IntakePause p;
  const auto since = doc.find("since_ms");
  const auto uid = doc.find("by_uid");
  const auto reason = doc.find("reason");
  if (since == doc.end() || !since->is_number_integer()) return bad("no integer \"since_ms\"");
  if (uid == doc.end() || !uid->is_number_unsigned() ||
      uid->get<uint64_t>() > std::numeric_limits<uid_t>::max()) {
    return bad("no \"by_uid\" that is a uid");
  }
  if (reason != doc.end() && !reason->is_string()) return bad("\"reason\" is not a string");
  p.since_ms = since->get<int64_t>();
  p.by_uid = uid->get<uid_t>();
  if (reason != doc.end()) p.reason = pause_reason(reason->get_ref<const std::string&>());
  return std::optional<IntakePause>(std::move(p));
}

Status store_intake_pause(const std::string& path, const std::optional<IntakePause>& pause,
                          bool durable) {
  if (pause) {
    nlohmann::json doc{
        {"since_ms", pause->since_ms}, {"by_uid", pause->by_uid}, {"reason", pause->reason}};
    return write_file_atomic(
        path, doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", durable);
  }
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return ok();
    return errno_error("remove " + path, errno);
  }
  return durable ? fsync_dir(std::string(parent_path(path))) : ok();
}

std::string pause_reason(std::string_view text) {
  if (text.size() <= kMaxPauseReasonChars) return std::string(text);
  // Cut before a UTF-8 continuation byte never: the reason stays valid UTF-8 for JSON.
  size_t n = kMaxPauseReasonChars;
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return std::string(text.substr(0, n)) + "...";
}

nlohmann::json intake_pause_json(const std::optional<IntakePause>& pause) {
  if (!pause) return {{"state", "open"}};
  return {{"state", "paused"},
          {"since", format_utc(pause->since_ms)},
          {"since_ms", pause->since_ms},
          {"by_uid", pause->by_uid},
          {"reason", pause->reason}};
}

}  // namespace docpipe
