#pragma once
// What cluster nodes say to each other through NATS JetStream (docs/design.md "Several nodes"):
// the names of subjects and buckets, and the JSON of each message. All parsing is strict: a
// message that does not parse is refused with what is wrong, never half-used.
//
//   <S>.doc.<job>       work-queue stream <S>: one message per document (DocMessage)
//   <S>.outcome.<job>   stream <S>_OUTCOMES: one per document finished (OutcomeMessage)
//   <S>.intent.<job>    core NATS request to the coordinator before an if_exists skip/fail rename
//   KV <S>_jobs         job id -> JobRecord: the coordinator and its lease
//   KV <S>_nodes        node -> NodeRecord: each node's heartbeat

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/document_source.h"
#include "core/result.h"
#include "pipeline/pipeline_job.h"

namespace docpipe {

// Job ids may hold '.', which separates subject tokens and may not start a KV key: '.' becomes
// '~' in a subject token and '=' in a key (neither is allowed in a job id).
// Parses a message from another node or the servers, refusing nesting past kMaxJsonDepth
// before anything is built (a hostile message must not exhaust a node's stack): a discarded
// value when it is too deep or malformed.
nlohmann::json parse_message_json(std::string_view text);

std::string job_subject_token(const std::string& job_id);
std::string job_kv_key(const std::string& job_id);
std::string job_id_from_kv_key(const std::string& key);

struct ClusterNames {
  std::string stream;  // "<S>": documents
  std::string outcomes_stream;
  std::string jobs_bucket;
  std::string nodes_bucket;
  std::string docs_consumer;  // the durable pull consumer every node shares
  explicit ClusterNames(const std::string& s);
  std::string doc_subject(const std::string& job) const;
  std::string docs_filter() const;  // "<S>.doc.>"
  std::string outcome_subject(const std::string& job) const;
  std::string outcomes_filter() const;
  std::string intent_subject(const std::string& job) const;
  std::string prefix;
};

struct DocMessage {
  std::string job;
  PortableDocument doc;
  // The job record's submitted_at_ms: tells this job's documents from those of an earlier job
  // with the same id (a worker may still hold that one's record).
  int64_t at = 0;
  std::string to_json() const;
};
Result<DocMessage> parse_doc_message(const std::string& text);

struct OutcomeMessage {
  std::string job;
  std::string node;         // where it was processed
  DocumentOutcome outcome;  // doc.input_path and doc.relative_path set; no folders
  std::string to_json() const;
};
Result<OutcomeMessage> parse_outcome_message(const std::string& text);

struct IntentMessage {
  std::string input;
  std::string output;
  std::string sha256;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  int attempts = 1;
  std::string metadata;  // a JSON object's text, or empty
  std::string to_json() const;
};
Result<IntentMessage> parse_intent_message(const std::string& text);

// kFinished: the coordinator recorded every outcome and handed the job to its job table; the
// record stays (bucket TTL) so that a node that comes back with the job in its active/ folder
// does not run it again.
enum class ClusterJobState { kRunning, kCancelling, kFinished };
const char* cluster_job_state_name(ClusterJobState s);

struct JobRecord {
  std::string id;
  std::string coordinator;  // node name
  uint64_t epoch = 1;       // +1 at each takeover
  ClusterJobState state = ClusterJobState::kRunning;
  std::string text;        // the pinned job text (active/ID.json of its first coordinator)
  std::string submitter;   // SubmitterStore::encode of whom it acts for
  uint64_t documents = 0;  // counted at validation
  int64_t submitted_at_ms = 0;
  uint64_t beat = 0;             // bumped at every lease renewal, so the revision moves
  int64_t finished_at_ms = 0;    // kFinished: when (the coordinator's wall clock)
  bool outcomes_purged = false;  // kFinished: its outcome messages were removed from the stream
  std::string to_json() const;
};
Result<JobRecord> parse_job_record(const std::string& text);

struct NodeRecord {
  std::string node;
  int64_t at_ms = 0;  // wall clock of the node when written
  uint64_t held = 0;
  uint64_t max_ack_pending = 0;
  uint64_t jobs_coordinated = 0;
  std::string version;
  std::string to_json() const;
};
Result<NodeRecord> parse_node_record(const std::string& text);

}  // namespace docpipe
