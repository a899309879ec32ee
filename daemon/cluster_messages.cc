#include "daemon/cluster_messages.h"

#include <nlohmann/json.hpp>

#include "core/json_util.h"

namespace docpipe {

namespace {

using nlohmann::json;

std::string replace_dots(std::string s, char with) {
  for (char& c : s)
    if (c == '.') c = with;
  return s;
}

// Reads fields of one message, remembering the first problem.
class Fields {
 public:
  Fields(const std::string& text, const char* what) : what_(what) {
    j_ = parse_message_json(text);
    if (!j_.is_object()) problem_ = "not a JSON object (or nested too deep)";
  }
  // An optional object, as its text ("" if absent).
  std::string object_text(const char* key) {
    const json* v = find(key, false);
    if (v == nullptr) return {};
    if (!v->is_object()) return bad(key, "an object"), std::string();
    return v->dump();
  }
  std::string str(const char* key, bool required = true) {
    const json* v = find(key, required);
    if (v == nullptr) return {};
    if (!v->is_string()) return bad(key, "a string"), std::string();
    return v->get<std::string>();
  }
  uint64_t num(const char* key, bool required = true) {
    const json* v = find(key, required);
    if (v == nullptr) return 0;
    if (!v->is_number_unsigned()) return bad(key, "a non-negative integer"), 0;
    return v->get<uint64_t>();
  }
  int64_t inum(const char* key, bool required = true) {
    const json* v = find(key, required);
    if (v == nullptr) return 0;
    if (!v->is_number_integer()) return bad(key, "an integer"), 0;
    return v->get<int64_t>();
  }
  double real(const char* key) {
    const json* v = find(key, false);
    if (v == nullptr) return 0;
    if (!v->is_number()) return bad(key, "a number"), 0;
    return v->get<double>();
  }
  bool flag(const char* key) {
    const json* v = find(key, false);
    if (v == nullptr) return false;
    if (!v->is_boolean()) return bad(key, "true or false"), false;
    return v->get<bool>();
  }
  void fail(std::string why) {
    if (problem_.empty()) problem_ = std::move(why);
  }
  Status status() const {
    if (problem_.empty()) return ok();
    return make_error(ErrorCode::kCorruptInput, std::string("bad ") + what_ + ": " + problem_);
  }

 private:
  const json* find(const char* key, bool required) {
    if (!problem_.empty()) return nullptr;
    auto it = j_.find(key);
    if (it == j_.end()) {
      if (required) fail(std::string("no \"") + key + "\"");
      return nullptr;
    }
    return &*it;
  }
  void bad(const char* key, const char* expected) {
    fail(std::string("\"") + key + "\" is not " + expected);
  }

  const char* what_;
  json j_;
  std::string problem_;
};

const char* state_text(DocumentState s) { return document_state_name(s); }

std::optional<DocumentState> state_of(const std::string& s) {
  for (DocumentState d : {DocumentState::kSucceeded, DocumentState::kFailed,
                          DocumentState::kSkipped, DocumentState::kCancelled}) {
    if (s == document_state_name(d)) return d;
  }
  return std::nullopt;
}

}  // namespace

nlohmann::json parse_message_json(std::string_view text) {
  if (json_max_depth(text, kMaxJsonDepth) > static_cast<size_t>(kMaxJsonDepth)) {
    return json(json::value_t::discarded);
  }
  return json::parse(text, nullptr, false);
}

std::string job_subject_token(const std::string& job_id) { return replace_dots(job_id, '~'); }
std::string job_kv_key(const std::string& job_id) { return replace_dots(job_id, '='); }
std::string job_id_from_kv_key(const std::string& key) {
  std::string s = key;
  for (char& c : s)
    if (c == '=') c = '.';
  return s;
}

ClusterNames::ClusterNames(const std::string& s)
    : stream(s),
      outcomes_stream(s + "_OUTCOMES"),
      jobs_bucket(s + "_jobs"),
      nodes_bucket(s + "_nodes"),
      docs_consumer("docpipe-workers"),
      prefix(s) {}

std::string ClusterNames::doc_subject(const std::string& job) const {
  return prefix + ".doc." + job_subject_token(job);
}
std::string ClusterNames::docs_filter() const { return prefix + ".doc.>"; }
std::string ClusterNames::outcome_subject(const std::string& job) const {
  return prefix + ".outcome." + job_subject_token(job);
}
std::string ClusterNames::outcomes_filter() const { return prefix + ".outcome.>"; }
std::string ClusterNames::intent_subject(const std::string& job) const {
  return prefix + ".intent." + job_subject_token(job);
}

std::string DocMessage::to_json() const {
  json j{{"job", job},
         {"in", doc.input_path},
         {"rel", doc.relative_path},
         {"open", doc.open_path},
         {"at", at}};
  if (!doc.root.empty()) j["root"] = doc.root;
  return j.dump();
}

Result<DocMessage> parse_doc_message(const std::string& text) {
  Fields f(text, "document message");
  DocMessage m;
  m.job = f.str("job");
  m.doc.input_path = f.str("in");
  m.doc.relative_path = f.str("rel");
  m.doc.open_path = f.str("open");
  m.doc.root = f.str("root", false);
  m.at = f.inum("at", false);
  if (Status st = f.status(); !st) return st.error();
  return m;
}

std::string OutcomeMessage::to_json() const {
  const DocumentOutcome& o = outcome;
  json j{{"job", job},
         {"node", node},
         {"in", o.doc.input_path},
         {"rel", o.doc.relative_path},
         {"out", o.output_path},
         {"state", state_text(o.state)},
         {"bytes_in", o.bytes_in},
         {"bytes_out", o.bytes_out},
         {"attempts", o.attempts},
         {"duration", o.duration_seconds}};
  if (!o.sha256.empty()) j["sha256"] = o.sha256;
  if (!o.error.empty()) j["error"] = o.error;
  if (!o.metadata.empty()) j["metadata"] = json::parse(o.metadata, nullptr, false);
  return j.dump();
}

Result<OutcomeMessage> parse_outcome_message(const std::string& text) {
  Fields f(text, "outcome message");
  OutcomeMessage m;
  m.job = f.str("job");
  m.node = f.str("node");
  DocumentOutcome& o = m.outcome;
  o.doc.input_path = f.str("in");
  o.doc.relative_path = f.str("rel");
  o.output_path = f.str("out");
  const std::string state = f.str("state");
  o.bytes_in = f.num("bytes_in");
  o.bytes_out = f.num("bytes_out");
  o.attempts = static_cast<int>(f.num("attempts"));
  o.duration_seconds = f.real("duration");
  o.sha256 = f.str("sha256", false);
  o.error = f.str("error", false);
  o.metadata = f.object_text("metadata");
  if (Status st = f.status(); !st) return st.error();
  std::optional<DocumentState> s = state_of(state);
  if (!s) return make_error(ErrorCode::kCorruptInput, "bad outcome message: state " + state);
  o.state = *s;
  return m;
}

std::string IntentMessage::to_json() const {
  json j{{"in", input},          {"out", output},          {"sha256", sha256},
         {"bytes_in", bytes_in}, {"bytes_out", bytes_out}, {"attempts", attempts}};
  if (!metadata.empty()) j["metadata"] = json::parse(metadata, nullptr, false);
  return j.dump();
}

Result<IntentMessage> parse_intent_message(const std::string& text) {
  Fields f(text, "intent message");
  IntentMessage m;
  m.input = f.str("in");
  m.output = f.str("out");
  m.sha256 = f.str("sha256");
  m.bytes_in = f.num("bytes_in");
  m.bytes_out = f.num("bytes_out");
  m.attempts = static_cast<int>(f.num("attempts"));
  m.metadata = f.object_text("metadata");
  if (Status st = f.status(); !st) return st.error();
  return m;
}

const char* cluster_job_state_name(ClusterJobState s) {
  switch (s) {
    case ClusterJobState::kRunning:
      return "running";
    case ClusterJobState::kCancelling:
      return "cancelling";
    case ClusterJobState::kFinished:
      return "finished";
  }
  return "?";
}

std::string JobRecord::to_json() const {
  return json{{"id", id},
              {"coordinator", coordinator},
              {"epoch", epoch},
              {"state", cluster_job_state_name(state)},
              {"finished_at_ms", finished_at_ms},
              {"outcomes_purged", outcomes_purged},
              {"text", text},
              {"submitter", submitter},
              {"documents", documents},
              {"submitted_at_ms", submitted_at_ms},
              {"beat", beat}}
      .dump();
}

Result<JobRecord> parse_job_record(const std::string& text) {
  Fields f(text, "job record");
  JobRecord r;
  r.id = f.str("id");
  r.coordinator = f.str("coordinator");
  r.epoch = f.num("epoch");
  const std::string state = f.str("state");
  r.text = f.str("text");
  r.submitter = f.str("submitter");
  r.documents = f.num("documents");
  r.submitted_at_ms = f.inum("submitted_at_ms");
  r.beat = f.num("beat");
  r.finished_at_ms = f.inum("finished_at_ms", false);
  r.outcomes_purged = f.flag("outcomes_purged");
  bool known = false;
  for (ClusterJobState s :
       {ClusterJobState::kRunning, ClusterJobState::kCancelling, ClusterJobState::kFinished}) {
    if (state == cluster_job_state_name(s)) {
      r.state = s;
      known = true;
    }
  }
  if (!known) f.fail("state " + state);
  if (Status st = f.status(); !st) return st.error();
  return r;
}

std::string NodeRecord::to_json() const {
  return json{{"node", node},
              {"at_ms", at_ms},
              {"held", held},
              {"max_ack_pending", max_ack_pending},
              {"jobs_coordinated", jobs_coordinated},
              {"version", version}}
      .dump();
}

Result<NodeRecord> parse_node_record(const std::string& text) {
  Fields f(text, "node record");
  NodeRecord r;
  r.node = f.str("node");
  r.at_ms = f.inum("at_ms");
  r.held = f.num("held");
  r.max_ack_pending = f.num("max_ack_pending");
  r.jobs_coordinated = f.num("jobs_coordinated");
  r.version = f.str("version", false);
  if (Status st = f.status(); !st) return st.error();
  return r;
}

}  // namespace docpipe
