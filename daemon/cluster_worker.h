#pragma once
// The worker side of a cluster node (cluster_worker.cc): document messages pulled from the
// work-queue stream run through this node's own pipeline as small batches (WorkerBatch), one per
// job per fetch, checked and opened as the job's coordinator would (allowed roots, submitter).

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/document_source.h"
#include "core/job_spec.h"
#include "daemon/cluster_messages.h"
#include "daemon/nats_client.h"
#include "pipeline/pipeline_job.h"

namespace docpipe {

class ClusterNode;

// A job as a worker knows it: its record, and its spec checked on this node.
struct WorkerJob {
  std::string id;
  ClusterJobState state = ClusterJobState::kRunning;
  bool gone = false;  // no record: the job is over (or never was)
  int64_t submitted_at_ms = 0;  // its record's (DocMessage::at): which job of that id
  int max_attempts = 1;  // the job's own limit; the local pipeline makes one attempt per delivery
  std::shared_ptr<const JobSpec> spec;          // null when `error` is set
  std::shared_ptr<const JobFolders> folders;    // opened beneath this node's allowed roots
  std::string error;  // why this node cannot run the job's documents
  int64_t checked_ms = 0;  // when the record was last read (wall ms)
  int64_t used_ms = 0;     // when a message of it was last taken
};

// One document message as the worker holds it.
struct Delivery {
  NatsMsgPtr msg;
  DocumentRef doc;
  uint64_t delivered = 1;  // how many times JetStream delivered it, this one included
  bool superseded = false;
  bool coordinator_unreachable = false;  // its intent got no answer: not the document's fault
};

// What the outbox thread does with a message: publish its outcome (if any), then settle it.
struct OutboxAction {
  enum class How { kAck, kNak, kTerm };
  NatsMsgPtr msg;
  How how = How::kAck;
  int64_t nak_delay_ms = 0;
  std::string subject;  // outcome subject; empty: nothing to publish
  std::string outcome;  // OutcomeMessage JSON
};

// Documents of one job taken in one fetch, as a PipelineJob of the local pipeline. Its spec is
// the worker's copy of the job's (same id, so that cancelling the job cancels every batch).
class WorkerBatch : public PipelineJob {
 public:
  WorkerBatch(ClusterNode& node, std::shared_ptr<WorkerJob> job, std::vector<Delivery> docs);
  ~WorkerBatch() override;  // hands back what the pipeline never took
  WorkerBatch(const WorkerBatch&) = delete;
  WorkerBatch& operator=(const WorkerBatch&) = delete;
  const JobSpec& spec() const override { return *job_->spec; }
  std::optional<DocumentRef> next_document() override;
  Status document_committing(const PendingOutput& pending) override;
  void document_finished(DocumentOutcome outcome) override;
  void job_finished(bool) override;

  const WorkerJob& job() const { return *job_; }
  // Takes the delivery of `input` out of the batch (nullopt: not in it, or taken already).
  std::optional<Delivery> take(const std::string& input);
  void mark_superseded(const std::string& input);
  void mark_unreachable(const std::string& input);

 private:
  void release_untaken();

  ClusterNode& node_;
  std::shared_ptr<WorkerJob> job_;
  std::mutex mu_;
  std::vector<Delivery> docs_;
  size_t next_ = 0;
};

}  // namespace docpipe
