#pragma once
// A completion notification waiting to be delivered: SPOOL/notify/ID.json, written atomically
// (and fsynced with durability fsync) before the job's report moves to done/ or failed/, and
// removed once every channel has ended (delivered or failed). It carries what delivery needs:
// the report's text as it was written (the body sent), and each channel's target and progress,
// so that a restart resumes where it stopped (attempts are never counted twice, at most one
// attempt is lost with a crash in the middle of it: at-least-once).
//
// The report in done/ or failed/ gets a "notify" section with each channel's state, rewritten
// (atomically) after each attempt; `docpipe status ID` shows it.

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/notify_spec.h"
#include "core/report.h"
#include "core/result.h"

namespace docpipe {

enum class NotifyChannel { kWebhook, kCommand };
const char* notify_channel_name(NotifyChannel c);  // "webhook", "command"

enum class DeliveryState { kPending, kDelivered, kFailed };
const char* delivery_state_name(DeliveryState s);  // "pending", "delivered", "failed"

struct NotifyChannelState {
  NotifyChannel channel = NotifyChannel::kWebhook;
  std::string target = "";  // the URL, or the command's name
  DeliveryState state = DeliveryState::kPending;
  int attempts = 0;
  std::string last_error = "";  // of the last failed attempt; "" if none
  int http_status = 0;          // of the last webhook attempt that got an answer; 0 if none
  int64_t last_attempt_ms = 0;  // wall clock of the last attempt's end
  int64_t next_attempt_ms = 0;  // wall clock; while pending after a failed attempt
};

struct NotifyRecord {
  std::string id = "";
  bool succeeded_folder = true;  // the report is in done/ (else failed/)
  std::string body = "";         // the report JSON as written, without its "notify" section
  WebhookFormat webhook_format = WebhookFormat::kReport;  // what the webhook is sent
  std::vector<NotifyChannelState> channels;
  bool pending() const;  // some channel is still pending
};

// The record for a job that ended in `state` with `report_text` (report_to_json), or nullopt
// when its notify asks for nothing in that state.
std::optional<NotifyRecord> make_notify_record(const std::string& id, JobState state,
                                               const NotifySpec& spec,
                                               const std::string& report_text);

// A chat line's length: Slack, Mattermost, Rocket.Chat and Google Chat take far longer texts, but a
// notification is a glance; the report has the rest.
inline constexpr size_t kMaxSummaryBytes = 1000;

// One line for a chat channel from a report's text (report_to_json): "docpipe job ID STATE: 5
// succeeded, 3 failed, 0 skipped of 8 (12.3 s); first failure: PATH: ERROR" (the reason instead
// when no document failed). Control characters become spaces; '&', '<' and '>' are escaped as
// Slack asks (&amp; &lt; &gt;), so that a file name cannot mention a channel or forge a link; at
// most kMaxSummaryBytes, cut between UTF-8 characters and marked with "...".
std::string report_summary(const std::string& report_text);

// What the webhook of `record` is sent: the report (webhook_format "report"), or
// {"text": report_summary(...)} ("text").
std::string webhook_body(const NotifyRecord& record);

// Ends every channel of a record that could not be written (daemon/job_table_finish.cc): each
// `failed` with `error` as its last_error, no attempt made.
void fail_unrecorded(NotifyRecord& record, const std::string& error);

std::string notify_record_to_json(const NotifyRecord& record);
// A record as notify_record_to_json wrote it; a kCorruptInput error names what is wrong.
Result<NotifyRecord> parse_notify_record(const std::string& text);

// The report's text with its "notify" section: {"webhook": {"url", "state", "attempts",
// "last_error", "http_status", "last_attempt_at", "next_attempt_at"}, "command": {...}}.
std::string report_with_notify(const NotifyRecord& record);
// Sets `report`'s "notify" section to what `record` says of each channel.
void set_notify_section(nlohmann::ordered_json& report, const NotifyRecord& record);

// Where records live: SPOOL/notify/ID.json.
std::string notify_folder(const std::string& spool_root);
std::string notify_record_path(const std::string& spool_root, const std::string& id);

// Writes the record atomically; a record with nothing pending is removed instead.
Status store_notify_record(const std::string& spool_root, const NotifyRecord& record, bool durable);

}  // namespace docpipe
