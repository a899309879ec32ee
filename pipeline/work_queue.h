#pragma once
// The seam between "the documents a job has" (PipelineJob: next_document, document_committing,
// document_finished, job_finished) and "something that processes documents". The job table
// (daemon/job_table.h) talks to the pipeline only through this interface.
//
// Today the one implementation is LocalWorkQueue (pipeline/local_work_queue.h): this process's
// reader/transformer/writer Pipeline. The next one spreads a job's documents over several daemons
// through a message engine (NATS JetStream) without any change to the job table, because the
// contract is written in terms of the job that ADMITTED the work (its owner):
//   - add_job() hands over the job. Its spec (pinned in active/ID.json of the owner's spool) and
//     its document refs (paths relative to the job's input and output roots) are what a
//     distributed queue publishes; workers elsewhere rebuild the spec from the pinned text.
//   - Every outcome comes back to the OWNER's PipelineJob: document_committing() before an output
//     is renamed into place (the intent record), document_finished() once per document taken
//     (the document record), then job_finished() exactly once. Only the owner writes the journal.
//   - Acknowledgement and redelivery stay inside the implementation: a document is acknowledged
//     to the engine once the owner has recorded its outcome; one never acknowledged is redelivered
//     and must end in document_finished() on the owner once, as locally.
// See docs/design.md ("The work-queue seam").

#include <chrono>
#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "pipeline/pipeline_job.h"

namespace docpipe {

// The admission bounds a reload may change (DaemonConfig keys of the same names).
struct WorkQueueLimits {
  int workers = 2;  // transformer threads
  size_t max_in_flight_documents = 256;
  size_t memory_budget_bytes = 256u << 20;
};

class WorkQueue {
 public:
  virtual ~WorkQueue() = default;

  // Starts processing the job's documents, shared fairly with the jobs already added. From then
  // on the queue calls the job's methods from its own threads, ending with job_finished().
  virtual void add_job(std::shared_ptr<PipelineJob> job) = 0;

  // Takes no more documents of the job; those in flight finish or are cut short, then
  // job_finished(true). False if the job is not in the queue (already over, or never added).
  virtual bool cancel_job(const std::string& id) = 0;

  // Stops taking documents, lets in-flight ones finish for up to `grace`, then drops what is left
  // without job_finished() (those jobs resume at the next start). Blocking; idempotent.
  virtual void stop(std::chrono::milliseconds grace) = 0;

  // A reload: the new bounds apply to the next admissions.
  virtual void reconfigure(const WorkQueueLimits& limits) = 0;

  // For status and the watchdog: documents taken and not yet finished, and buffer bytes held.
  virtual size_t documents_in_flight() const = 0;
  virtual size_t buffer_bytes_in_use() const = 0;

  // What a distributed queue adds to `docpipe status`: the daemon's "cluster" object (this node,
  // its connection, the nodes it sees) and a job's "coordinator". Null for a single node.
  virtual nlohmann::json daemon_status() const { return nullptr; }
  virtual nlohmann::json job_status(const std::string& id) const {
    (void)id;
    return nullptr;
  }

  // Intake paused on this node (docpipe pause): a distributed queue takes over no other node's
  // job meanwhile, since it would only sit queued here holding its lease. Loop thread.
  virtual void set_intake_paused(bool paused) { (void)paused; }
};

}  // namespace docpipe
