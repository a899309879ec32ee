#include "core/journal_record.h"

#include <nlohmann/json.hpp>

namespace docpipe {

namespace {

// Field order is part of the format (ordered_json keeps insertion order); invalid UTF-8 is
// replaced rather than refused, so that a record can always be written.
std::string dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Reads one optional field of `obj` into `out`; a present field of another type is an error.
class Fields {
 public:
  explicit Fields(const nlohmann::json& obj) : obj_(obj) {}

  void text(const char* key, std::string& out) {
    if (const nlohmann::json* v = find(key, &nlohmann::json::is_string))
      out = v->get<std::string>();
  }
  template <typename Number>
  void number(const char* key, Number& out) {
    if (const nlohmann::json* v = find(key, &nlohmann::json::is_number)) out = v->get<Number>();
  }
  Status status() const {
    if (bad_.empty()) return ok();
    return make_error(ErrorCode::kCorruptInput,
                      "journal record: \"" + bad_ + "\" has the wrong type");
  }

 private:
  const nlohmann::json* find(const char* key, bool (nlohmann::json::*is)() const noexcept) {
    auto it = obj_.find(key);
    if (it == obj_.end()) return nullptr;
    if (!((*it).*is)()) {
      if (bad_.empty()) bad_ = key;
      return nullptr;
    }
    return &*it;
  }

  const nlohmann::json& obj_;
  std::string bad_;  // the first field of the wrong type
};

RecordState parse_state(const std::string& s) {
  if (s == "succeeded") return RecordState::kSucceeded;
  if (s == "skipped") return RecordState::kSkipped;
  return RecordState::kFailed;
}

}  // namespace

const char* record_state_name(RecordState s) {
  switch (s) {
    case RecordState::kSucceeded:
      return "succeeded";
    case RecordState::kSkipped:
      return "skipped";
    case RecordState::kFailed:
      break;
  }
  return "failed";
}

std::string JournalHeader::to_json() const {
  nlohmann::ordered_json j;
  j["id"] = id;
  j["journal"] = version;
  j["submitted_at_ms"] = submitted_at_ms;
  return dump(j);
}

std::string DocumentRecord::to_json() const {
  nlohmann::ordered_json j;
  j["input"] = input;
  j["output"] = output;
  j["state"] = record_state_name(state);
  j["bytes_in"] = bytes_in;
  j["bytes_out"] = bytes_out;
  j["sha256"] = sha256;
  j["attempts"] = attempts;
  j["duration_seconds"] = duration_seconds;
  j["error"] = error;
  return dump(j);
}

std::string IntentRecord::to_json() const {
  nlohmann::ordered_json j;
  j["intent"] = "commit";
  j["input"] = input;
  j["output"] = output;
  j["sha256"] = sha256;
  j["bytes_in"] = bytes_in;
  j["bytes_out"] = bytes_out;
  j["attempts"] = attempts;
  return dump(j);
}

Result<JournalRecord> parse_journal_record(std::string_view payload) {
  const nlohmann::json j = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return make_error(ErrorCode::kCorruptInput, "journal record: not a JSON object");
  }
  Fields f(j);
  JournalRecord out;
  if (j.contains("journal")) {
    JournalHeader h;
    h.version = 0;  // a header must say its version
    f.number("journal", h.version);
    f.text("id", h.id);
    f.number("submitted_at_ms", h.submitted_at_ms);
    out = std::move(h);
  } else if (j.contains("intent")) {
    IntentRecord r;
    std::string kind;
    f.text("intent", kind);
    f.text("input", r.input);
    f.text("output", r.output);
    f.text("sha256", r.sha256);
    f.number("bytes_in", r.bytes_in);
    f.number("bytes_out", r.bytes_out);
    f.number("attempts", r.attempts);
    out = std::move(r);
  } else {
    DocumentRecord r;
    std::string state;
    f.text("input", r.input);
    f.text("output", r.output);
    f.text("state", state);
    r.state = parse_state(state);
    f.number("bytes_in", r.bytes_in);
    f.number("bytes_out", r.bytes_out);
    f.text("sha256", r.sha256);
    f.number("attempts", r.attempts);
    f.number("duration_seconds", r.duration_seconds);
    f.text("error", r.error);
    out = std::move(r);
  }
  if (Status st = f.status(); !st) return st.error();
  return out;
}

}  // namespace docpipe
