// What cluster nodes say to each other (daemon/cluster_messages.h): every message type survives a
// round trip through its JSON, and a message with a missing field, a field of the wrong type or
// an unknown state is refused with an error naming what is wrong, never half-used.

#include "daemon/cluster_messages.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/submitter_store.h"

using docpipe::ClusterJobState;
using docpipe::ClusterNames;
using docpipe::DocMessage;
using docpipe::DocumentState;
using docpipe::IntentMessage;
using docpipe::JobRecord;
using docpipe::NodeRecord;
using docpipe::OutcomeMessage;
using nlohmann::json;

namespace {

// `text` with `key` removed / replaced by `value`.
std::string without(const std::string& text, const std::string& key) {
  json j = json::parse(text);
  j.erase(key);
  return j.dump();
}
std::string with(const std::string& text, const std::string& key, const json& value) {
  json j = json::parse(text);
  j[key] = value;
  return j.dump();
}

// Each required key of `text` removed, then given a value of the wrong type: `parse` refuses
// every variant, naming the key.
template <typename Parse>
void check_strict(const std::string& text, const std::vector<std::string>& required, Parse parse,
                  const json& wrong_type_for_strings = 7,
                  const json& wrong_type_for_numbers = "7") {
  const json original = json::parse(text);
  for (const std::string& key : required) {
    CAPTURE(key);
    auto missing = parse(without(text, key));
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().message.find("\"" + key + "\"") != std::string::npos);
    const json wrong =
        original.at(key).is_string() ? wrong_type_for_strings : wrong_type_for_numbers;
    auto mistyped = parse(with(text, key, wrong));
    REQUIRE_FALSE(mistyped.has_value());
    CHECK(mistyped.error().message.find("\"" + key + "\"") != std::string::npos);
  }
  for (const std::string& junk : {std::string("[]"), std::string("not json"), std::string(""),
                                  std::string("\"text\""), std::string("{\"job\": 1")}) {
    CAPTURE(junk);
    CHECK_FALSE(parse(junk).has_value());
  }
}

}  // namespace

TEST_CASE("cluster messages: job ids map to subject tokens and KV keys and back") {
  CHECK(docpipe::job_subject_token("report.2026-12.a") == "report~2026-12~a");
  CHECK(docpipe::job_kv_key("report.2026-12.a") == "report=2026-12=a");
  CHECK(docpipe::job_id_from_kv_key(docpipe::job_kv_key("report.2026-12.a")) == "report.2026-12.a");
  CHECK(docpipe::job_subject_token("plain_id-1") == "plain_id-1");
  CHECK(docpipe::job_kv_key(".lead") == "=lead");  // a key may not start with '.'
  ClusterNames names("DP");
  CHECK(names.doc_subject("a.b") == "DP.doc.a~b");
  CHECK(names.outcome_subject("a.b") == "DP.outcome.a~b");
  CHECK(names.intent_subject("a.b") == "DP.intent.a~b");
  CHECK(names.docs_filter() == "DP.doc.>");
  CHECK(names.outcomes_filter() == "DP.outcome.>");
  CHECK(names.outcomes_stream == "DP_OUTCOMES");
  CHECK(names.jobs_bucket == "DP_jobs");
  CHECK(names.nodes_bucket == "DP_nodes");
}

TEST_CASE("cluster messages: a document message round-trips and is parsed strictly") {
  DocMessage m;
  m.job = "j.1";
  m.doc.input_path = "/in/a b/é.txt";
  m.doc.relative_path = "a b/é.txt";
  m.doc.open_path = "a b/é.txt";
  auto back = docpipe::parse_doc_message(m.to_json());
  REQUIRE(back.has_value());
  CHECK(back->job == m.job);
  CHECK(back->doc.input_path == m.doc.input_path);
  CHECK(back->doc.relative_path == m.doc.relative_path);
  CHECK(back->doc.open_path == m.doc.open_path);
  CHECK(back->doc.root.empty());

  m.doc.root = "/srv/files";  // input.files: the allowed root travels too
  back = docpipe::parse_doc_message(m.to_json());
  REQUIRE(back.has_value());
  CHECK(back->doc.root == "/srv/files");
  check_strict(m.to_json(), {"job", "in", "rel", "open"}, docpipe::parse_doc_message);
  CHECK_FALSE(docpipe::parse_doc_message(with(m.to_json(), "root", 3)).has_value());
}

TEST_CASE("cluster messages: an outcome message round-trips every state and is parsed strictly") {
  for (DocumentState state : {DocumentState::kSucceeded, DocumentState::kFailed,
                              DocumentState::kSkipped, DocumentState::kCancelled}) {
    OutcomeMessage m;
    m.job = "j";
    m.node = "n2";
    m.outcome.doc.input_path = "/in/x.txt";
    m.outcome.doc.relative_path = "x.txt";
    m.outcome.output_path = "/out/x.txt.gz";
    m.outcome.state = state;
    m.outcome.bytes_in = 1ull << 40;
    m.outcome.bytes_out = 17;
    m.outcome.attempts = 3;
    m.outcome.duration_seconds = 0.25;
    if (state == DocumentState::kSucceeded) {
      m.outcome.sha256 = std::string(64, 'a');
      m.outcome.metadata = R"({"pages":3,"title":"Q1"})";
    }
    if (state == DocumentState::kFailed) m.outcome.error = "read /in/x.txt: Permission denied";
    CAPTURE(m.to_json());
    auto back = docpipe::parse_outcome_message(m.to_json());
    REQUIRE(back.has_value());
    CHECK(back->job == "j");
    CHECK(back->node == "n2");
    CHECK(back->outcome.doc.input_path == "/in/x.txt");
    CHECK(back->outcome.doc.relative_path == "x.txt");
    CHECK(back->outcome.output_path == "/out/x.txt.gz");
    CHECK(back->outcome.state == state);
    CHECK(back->outcome.bytes_in == 1ull << 40);
    CHECK(back->outcome.bytes_out == 17);
    CHECK(back->outcome.attempts == 3);
    CHECK(back->outcome.duration_seconds == doctest::Approx(0.25));
    CHECK(back->outcome.sha256 == m.outcome.sha256);
    CHECK(back->outcome.error == m.outcome.error);
    CHECK(back->outcome.metadata == m.outcome.metadata);
  }
  OutcomeMessage m;
  m.job = "j";
  m.node = "n1";
  m.outcome.doc.input_path = "/in/x";
  m.outcome.doc.relative_path = "x";
  m.outcome.output_path = "/out/x";
  const std::string text = m.to_json();
  check_strict(text,
               {"job", "node", "in", "rel", "out", "state", "bytes_in", "bytes_out", "attempts"},
               docpipe::parse_outcome_message);
  for (const json& bad : {json("done"), json(""), json("SUCCEEDED")}) {
    auto r = docpipe::parse_outcome_message(with(text, "state", bad));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.find("state") != std::string::npos);
  }
  CHECK_FALSE(docpipe::parse_outcome_message(with(text, "bytes_in", -1)).has_value());
  CHECK_FALSE(docpipe::parse_outcome_message(with(text, "attempts", 1.5)).has_value());
  CHECK_FALSE(docpipe::parse_outcome_message(with(text, "duration", "fast")).has_value());
  CHECK_FALSE(docpipe::parse_outcome_message(with(text, "sha256", false)).has_value());
  CHECK_FALSE(docpipe::parse_outcome_message(with(text, "error", json::array())).has_value());
  CHECK_FALSE(docpipe::parse_outcome_message(with(text, "metadata", "pages 3")).has_value());
}

TEST_CASE("cluster messages: an intent message round-trips and is parsed strictly") {
  IntentMessage m;
  m.input = "/in/a";
  m.output = "/out/a";
  m.sha256 = std::string(64, 'f');
  m.bytes_in = 10;
  m.bytes_out = 20;
  m.attempts = 2;
  m.metadata = R"({"author":"Ann","pages":1})";
  auto back = docpipe::parse_intent_message(m.to_json());
  REQUIRE(back.has_value());
  CHECK(back->input == m.input);
  CHECK(back->output == m.output);
  CHECK(back->sha256 == m.sha256);
  CHECK(back->bytes_in == 10);
  CHECK(back->bytes_out == 20);
  CHECK(back->attempts == 2);
  CHECK(back->metadata == m.metadata);
  CHECK_FALSE(docpipe::parse_intent_message(with(m.to_json(), "metadata", 7)).has_value());
  check_strict(m.to_json(), {"in", "out", "sha256", "bytes_in", "bytes_out", "attempts"},
               docpipe::parse_intent_message);
}

TEST_CASE("cluster messages: a job record round-trips both states and is parsed strictly") {
  for (ClusterJobState state : {ClusterJobState::kRunning, ClusterJobState::kCancelling}) {
    JobRecord r;
    r.id = "j.2";
    r.coordinator = "n3";
    r.epoch = 4;
    r.state = state;
    r.text = R"({"id": "j.2", "input": {"dir": "/in"}})";
    r.submitter = "uid=1000";
    r.documents = 20000;
    r.submitted_at_ms = 1764579463000;
    r.beat = 99;
    auto back = docpipe::parse_job_record(r.to_json());
    REQUIRE(back.has_value());
    CHECK(back->id == r.id);
    CHECK(back->coordinator == r.coordinator);
    CHECK(back->epoch == 4);
    CHECK(back->state == state);
    CHECK(back->text == r.text);
    CHECK(back->submitter == r.submitter);
    CHECK(back->documents == 20000);
    CHECK(back->submitted_at_ms == r.submitted_at_ms);
    CHECK(back->beat == 99);
  }
  JobRecord r;
  r.id = "j";
  r.coordinator = "n1";
  const std::string text = r.to_json();
  check_strict(text,
               {"id", "coordinator", "epoch", "state", "text", "submitter", "documents",
                "submitted_at_ms", "beat"},
               docpipe::parse_job_record);
  for (const json& bad : {json("done"), json("Running"), json("")}) {
    auto parsed = docpipe::parse_job_record(with(text, "state", bad));
    REQUIRE_FALSE(parsed.has_value());
    CHECK(parsed.error().message.find("state") != std::string::npos);
  }
  CHECK_FALSE(docpipe::parse_job_record(with(text, "epoch", -1)).has_value());
  CHECK(docpipe::parse_job_record(with(text, "submitted_at_ms", -5)).has_value());  // a signed time
}

TEST_CASE("cluster messages: a node record round-trips and is parsed strictly") {
  NodeRecord r;
  r.node = "n2";
  r.at_ms = 1764579463123;
  r.held = 3;
  r.max_ack_pending = 4;
  r.jobs_coordinated = 1;
  r.version = "0.11.0";
  auto back = docpipe::parse_node_record(r.to_json());
  REQUIRE(back.has_value());
  CHECK(back->node == "n2");
  CHECK(back->at_ms == r.at_ms);
  CHECK(back->held == 3);
  CHECK(back->max_ack_pending == 4);
  CHECK(back->jobs_coordinated == 1);
  CHECK(back->version == "0.11.0");
  check_strict(r.to_json(), {"node", "at_ms", "held", "max_ack_pending", "jobs_coordinated"},
               docpipe::parse_node_record);
  auto no_version = docpipe::parse_node_record(without(r.to_json(), "version"));  // optional
  REQUIRE(no_version.has_value());
  CHECK(no_version->version.empty());
  CHECK_FALSE(docpipe::parse_node_record(with(r.to_json(), "version", 11)).has_value());
  CHECK_FALSE(docpipe::parse_node_record(with(r.to_json(), "held", -1)).has_value());
}

namespace docpipe {

TEST_CASE("cluster messages: a message nested 100000 deep is refused before it is parsed") {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  auto outcome = parse_outcome_message(deep);
  REQUIRE_FALSE(outcome);
  CHECK(outcome.error().message == "bad outcome message: not a JSON object (or nested too deep)");
  CHECK(parse_message_json(deep).is_discarded());
  CHECK_FALSE(SubmitterStore::decode("{\"x\":" + deep + "}"));
  CHECK(parse_message_json("{\"a\": [1]}").is_object());
}

}  // namespace docpipe
