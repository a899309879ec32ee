#pragma once
// The coordinator of one cluster job (docs/design.md "Several nodes"): on its own thread it
// claims the job's record (or confirms it holds it), publishes one message per document of the
// job's walk (at most publish_window unfinished at once), and hands every outcome that comes back
// on "<S>.outcome.<job>" to the job's document_finished(), once per document. When the walk is
// done (or the job cancelled) and every published document has an outcome, it removes the job's
// record and calls job_finished().
//
// Its journal is rebuilt from the outcome stream: it reads the job's outcomes from the start of
// the stream, so a coordinator that restarted, or took the job over from a dead node, records
// what was done before and publishes only what has no outcome yet.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <chrono>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "daemon/nats_client.h"
#include "pipeline/pipeline_job.h"

namespace docpipe {

class ClusterNode;

class Coordinator {
 public:
  // `fresh`: a job new to the cluster (not resumed from active/ nor taken over): a record of its
  // id is another job's.
  Coordinator(ClusterNode& node, std::shared_ptr<PipelineJob> job, bool fresh);
  ~Coordinator();  // stop() and join
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  void start();
  // The user cancelled: publish no more, mark the record cancelling (workers answer the rest
  // cancelled), finish once the published documents have outcomes.
  void cancel();
  // The daemon stops: the thread ends without job_finished() (the job resumes at the next start).
  void stop();
  const std::string& id() const { return id_; }
  // The job is over here (finished, or coordinated elsewhere now): the thread has returned.
  bool over() const { return finished_.load(); }
  // Its record names this node: the job is coordinated through the cluster.
  bool claimed() const { return claimed_.load(); }
  // Published and without an outcome yet (status).
  size_t outstanding() const;

 private:
  void run();
  bool claim();
  bool open_outcomes();
  void drain_outcomes(int64_t wait_ms);
  void record(const std::string& data);
  bool publish_more();
  void republish_lost();
  bool outcomes_all_read();
  void open_publisher();
  bool finish();
  void abandon(const std::string& why);
  void intent(natsMsg* msg);
  void close_intents();  // no intent callback runs once it returns
  static void on_intent(natsConnection*, natsSubscription*, natsMsg* msg, void* self);
  static void on_publish_error(jsCtx*, jsPubAckErr*, void* self);

  ClusterNode& node_;
  std::shared_ptr<PipelineJob> job_;
  const std::string id_;
  const bool fresh_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> cancel_{false};
  bool cancel_written_ = false;
  std::atomic<bool> finished_{false};
  std::atomic<bool> claimed_{false};

  mutable std::mutex mu_;  // recorded_ and outstanding_: the intent callback reads them too
  std::unordered_set<uint64_t> recorded_;        // hashes of inputs with an outcome recorded
  // A document message: taken from the walk, then published.
  struct PendingDoc {
    std::string input;
    std::string body;
    std::string msg_id;
  };
  // Published, no outcome yet, by input (kept whole to publish again if the stream loses it:
  // at most publish_window of them).
  std::unordered_map<std::string, PendingDoc> outstanding_;
  std::vector<PendingDoc> batch_;  // not yet acknowledged by the stream (kept to publish again)
  jsCtx* js_ = nullptr;  // this coordinator's, for asynchronous publishes
  std::atomic<int>* publish_errors_ = new std::atomic<int>(0);  // ErrHandler's closure
  bool keep_counter_ = false;  // a context was dropped with publishes pending: never freed
  bool walk_done_ = false;
  bool caught_up_ = false;  // the outcomes in the stream when it started are all read
  NatsSubPtr outcomes_;
  NatsSubPtr intents_;
  std::atomic<bool> intents_closing_{false};
  std::atomic<int> in_intent_{0};
  uint64_t last_outcome_seq_ = 0;  // stream sequence of the last outcome read
  std::chrono::steady_clock::time_point last_consumer_check_{};
  // When an outcome was last read or documents published; the check for lost documents
  // (republish_lost) waits for a quiet spell after it.
  std::chrono::steady_clock::time_point last_progress_ = std::chrono::steady_clock::now();
  int republish_rounds_ = 0;  // in the Nats-Msg-Id of a document published again
  std::string msg_id_prefix_;    // "<job>:<submitted_at_ms>:" (Nats-Msg-Id of its documents)
  int64_t submitted_at_ms_ = 0;  // its record's: in every document message
};

}  // namespace docpipe
