#include "core/journal_record.h"

#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>

namespace docpipe {

namespace {

// Field order is part of the format (ordered_json keeps insertion order); invalid UTF-8 is
// replaced rather than refused, so that a record can always be written.
std::string dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Writes one flat JSON object the way dump() writes it, byte for byte, without building a
// json value: a record is written per document, and the map nlohmann builds was the largest CPU
// cost of the writer stage (14 % of it for 4 KiB identity documents, perf). Strings that need no
// escaping (the usual path) are copied as they are; anything else, and every double, goes through
// nlohmann's own serializer, so escaping, invalid UTF-8 replacement and number format stay its.
class RecordWriter {
 public:
  RecordWriter() { out_.reserve(512); }  // a copy's document record is ~450 bytes
  RecordWriter& text(std::string_view key, std::string_view value) {
    start(key);
    if (plain(value)) {
      out_ += '"';
      out_ += value;
      out_ += '"';
    } else {
      out_ += dump(nlohmann::ordered_json(std::string(value)));
    }
    return *this;
  }
  template <typename Integer>
  RecordWriter& integer(std::string_view key, Integer value) {
    start(key);
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, value);
    out_.append(buf, r.ptr);
    return *this;
  }
  // What dump() writes for a double (its serializer's dump_float), without building a json
  // value and a serializer per record: null for NaN and infinities, else the shortest text that
  // reads back as the same double (Grisu2, nlohmann's own to_chars).
  RecordWriter& real(std::string_view key, double value) {
    start(key);
    if (!std::isfinite(value)) {
      out_ += "null";
      return *this;
    }
    char buf[64];  // the serializer's own number buffer size
    out_.append(buf, nlohmann::detail::to_chars(buf, buf + sizeof buf, value));
    return *this;
  }
  // Nothing when empty.
  RecordWriter& text_if(std::string_view key, std::string_view value) {
    if (!value.empty()) text(key, value);
    return *this;
  }
  // {"size":..,"mtime_ns":..,"ino":..,"dev":..}; nothing when not known.
  RecordWriter& stamp(std::string_view key, const FileStamp& f) {
    if (!f.known()) return *this;
    start(key);
    out_ += '{';
    const std::pair<const char*, int64_t> parts[] = {{"size", static_cast<int64_t>(f.size)},
                                                     {"mtime_ns", f.mtime_ns},
                                                     {"ino", static_cast<int64_t>(f.ino)},
                                                     {"dev", static_cast<int64_t>(f.dev)}};
    for (const auto& [name, value] : parts) {
      if (out_.back() != '{') out_ += ',';
      out_ += '"';
      out_ += name;
      out_ += "\":";
      char buf[24];
      auto r = std::to_chars(buf, buf + sizeof buf, value);
      out_.append(buf, r.ptr);
    }
    out_ += '}';
    return *this;
  }
  // `json` is a JSON object's text, written as it is; nothing when empty.
  RecordWriter& object(std::string_view key, std::string_view json) {
    if (json.empty()) return *this;
    start(key);
    out_ += json;
    return *this;
  }
  std::string done() {
    out_ += '}';
    return std::move(out_);
  }

 private:
  // Printable ASCII other than '"' and '\\': dump() writes these bytes unchanged.
  static bool plain(std::string_view v) {
    for (unsigned char c : v) {
      if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') return false;
    }
    return true;
  }
  void start(std::string_view key) {  // keys are ours: plain
    out_ += out_.empty() ? '{' : ',';
    out_ += '"';
    out_ += key;
    out_ += "\":";
  }
  std::string out_;
};

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
  return RecordWriter()
      .text("input", input)
      .text("output", output)
      .text("state", record_state_name(state))
      .integer("bytes_in", bytes_in)
      .integer("bytes_out", bytes_out)
      .text("sha256", sha256)
      .object("metadata", metadata)
      .integer("attempts", attempts)
      .real("duration_seconds", duration_seconds)
      .text("error", error)
      .text_if("input_sha256", input_sha256)
      .text_if("chain", chain)
      .text_if("reason", reason)
      .stamp("input_stat", input_stat)
      .stamp("output_stat", output_stat)
      .done();
}

std::string IntentRecord::to_json() const {
  return RecordWriter()
      .text("intent", "commit")
      .text("input", input)
      .text("output", output)
      .text("sha256", sha256)
      .integer("bytes_in", bytes_in)
      .integer("bytes_out", bytes_out)
      .integer("attempts", attempts)
      .object("metadata", metadata)
      .done();
}

const char* input_action_step_name(InputActionRecord::Step s) {
  switch (s) {
    case InputActionRecord::Step::kBegin:
      return "begin";
    case InputActionRecord::Step::kDone:
      return "done";
    case InputActionRecord::Step::kFailed:
      break;
  }
  return "failed";
}

InputActionRecord InputActionRecord::finished(std::string input, std::string action, bool done,
                                              std::string error) {
  InputActionRecord r;
  r.step = done ? Step::kDone : Step::kFailed;
  r.input = std::move(input);
  r.action = std::move(action);
  r.error = std::move(error);
  return r;
}

std::string InputActionRecord::to_json() const {
  RecordWriter w;
  w.text("intent", "input_action").text("step", input_action_step_name(step));
  w.text("input", input).text("action", action);
  if (step == Step::kBegin) {
    w.text("base", base).text("path", path).text("target", target);
    w.integer("dev", dev).integer("ino", ino).integer("size", size).integer("mtime_ns", mtime_ns);
    w.text("output", output).text("sha256", sha256);
  } else {
    w.text("error", error);
  }
  return w.done();
}

namespace {

// A record's "metadata" object as text ("" if none, or if it is not an object).
std::string metadata_of(const nlohmann::json& record) {
  auto it = record.find("metadata");
  if (it == record.end() || !it->is_object()) return {};
  return it->dump();
}

// A record's stamp object (input_stat, output_stat); left as is when absent or malformed (an
// unknown stamp only makes the next unchanged check hash the input).
void stamp_of_field(const nlohmann::json& record, const char* key, FileStamp& out) {
  auto it = record.find(key);
  if (it == record.end() || !it->is_object()) return;
  auto num = [&](const char* k) -> int64_t {
    auto v = it->find(k);
    return v != it->end() && v->is_number_integer() ? v->get<int64_t>() : 0;
  };
  out = FileStamp{.size = static_cast<uint64_t>(num("size")),
                  .mtime_ns = num("mtime_ns"),
                  .ino = static_cast<uint64_t>(num("ino")),
                  .dev = static_cast<uint64_t>(num("dev"))};
}

}  // namespace

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
  } else if (j.contains("intent") && j["intent"] == "input_action") {
    InputActionRecord r;
    std::string step;
    f.text("step", step);
    if (step == "begin") {
      r.step = InputActionRecord::Step::kBegin;
    } else if (step == "done") {
      r.step = InputActionRecord::Step::kDone;
    } else {
      r.step = InputActionRecord::Step::kFailed;
    }
    f.text("input", r.input);
    f.text("action", r.action);
    f.text("base", r.base);
    f.text("path", r.path);
    f.text("target", r.target);
    f.number("dev", r.dev);
    f.number("ino", r.ino);
    f.number("size", r.size);
    f.number("mtime_ns", r.mtime_ns);
    f.text("output", r.output);
    f.text("sha256", r.sha256);
    f.text("error", r.error);
    out = std::move(r);
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
    r.metadata = metadata_of(j);
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
    f.text("input_sha256", r.input_sha256);
    f.text("chain", r.chain);
    f.text("reason", r.reason);
    stamp_of_field(j, "input_stat", r.input_stat);
    stamp_of_field(j, "output_stat", r.output_stat);
    r.metadata = metadata_of(j);
    out = std::move(r);
  }
  if (Status st = f.status(); !st) return st.error();
  return out;
}

}  // namespace docpipe
