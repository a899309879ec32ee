#pragma once
// A cluster node: the WorkQueue of a daemon whose config has a "cluster" section. Several daemons
// share jobs through NATS JetStream (docs/design.md "Several nodes"):
//
//   - The node that admitted a job coordinates it (Coordinator, cluster_coordinator.cc): it owns
//     the job's record in the "<S>_jobs" bucket under a lease, publishes one message per document
//     to the work-queue stream, records each outcome that comes back through its job's
//     document_finished() (its journal), and finishes the job when every published document has
//     an outcome.
//   - Every node, the coordinator included, pulls document messages into its own bounded pipeline
//     (the worker, cluster_worker.cc): never more than max_ack_pending at once. It acks a message
//     after the output is renamed into place and the outcome is published, naks it with a delay
//     on a transient error, terms it on a permanent one, and sends in-progress acks meanwhile.
//   - A node killed mid-document: its messages are redelivered after ack_wait_ms. A coordinator
//     killed: a node that saw its lease unrenewed for lease_ms takes the job over (a CAS on the
//     record), rebuilds the journal from the outcome stream and republishes what has no outcome.
//   - NATS unreachable: libnats reconnects with backoff; documents in flight finish and their
//     outcomes wait. A job admitted while NATS is unreachable runs on this node alone.
//
// Every outcome reaches the coordinator's job once: duplicates (a redelivered document done twice)
// are dropped by input path, so the journal and manifest have one line per document.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "config/daemon_config.h"
#include "core/clock.h"
#include "daemon/cluster_messages.h"
#include "daemon/cluster_metrics.h"
#include "daemon/cluster_worker.h"
#include "daemon/nats_client.h"
#include "pipeline/pipeline.h"
#include "pipeline/work_queue.h"

namespace docpipe {

class Coordinator;

class ClusterNode : public WorkQueue {
 public:
  struct Deps {
    DaemonConfig config;  // at start; the cluster section is read once
    PipelineOptions pipeline;
    PipelineMetrics* pipeline_metrics = nullptr;
    prometheus::Registry* registry = nullptr;
    std::string spool_root;
    // The daemon's config of now (commands, allowed roots): what a job from another node is
    // checked against here. Any thread.
    std::function<std::shared_ptr<const DaemonConfig>()> current_config;
    // A job this node took over (its record now names this node): admit its pinned text and
    // submitter into active/ and resume it, which brings it back through add_job(). Called from a
    // cluster thread; must only hand the record to the loop.
    std::function<void(JobRecord)> adopt;
  };

  // Connects (in the background when NATS is unreachable) and starts the pipeline and the
  // node's threads. Removes the journals of cluster jobs in active/ first: their outcomes are
  // rebuilt from the outcome stream when they resume. An error only for a bad option.
  static Result<std::unique_ptr<ClusterNode>> start(Deps deps);
  static constexpr int64_t kBeatMs = 2000;  // node heartbeat period
  ~ClusterNode() override;

  void add_job(std::shared_ptr<PipelineJob> job) override;
  bool cancel_job(const std::string& id) override;
  void stop(std::chrono::milliseconds grace) override;
  void reconfigure(const WorkQueueLimits& limits) override;
  size_t documents_in_flight() const override;
  size_t buffer_bytes_in_use() const override;
  nlohmann::json daemon_status() const override;
  nlohmann::json job_status(const std::string& id) const override;
  void set_intake_paused(bool paused) override { intake_paused_.store(paused); }

  // --- for the Coordinator and WorkerBatch (cluster_*.cc) ---
  const ClusterConfig& cluster() const { return deps_.config.cluster; }
  const ClusterNames& names() const { return names_; }
  const std::string& node() const { return node_; }
  NatsConnection& nats() const { return *nc_; }
  ClusterMetrics& metrics() { return metrics_; }
  const std::string& spool_root() const { return deps_.spool_root; }
  const Clock& clock() const { return system_clock(); }
  // Streams, consumer and buckets exist and the connection is up.
  bool ready() const { return ready_.load() && nc_->connected(); }
  kvStore* jobs_kv() const { return jobs_kv_.get(); }
  bool stopping() const { return stopping_.load(); }
  // Sleeps up to `ms` or until stop(); false once stopping.
  bool pause(int64_t ms);

  // Removes `subject`'s messages from `stream`; false (logged) if the servers did not.
  bool purge(const std::string& stream, const std::string& subject);
  // Messages `stream` holds on `subject` (a work-queue stream: published, not yet acked or
  // terminated); nullopt when the stream cannot tell now (no leader, NATS unreachable).
  std::optional<uint64_t> subject_messages(const std::string& stream, const std::string& subject);

  // Leases on job records this node holds (coordinating or adopting), renewed by the
  // maintenance thread every lease_ms / 3. `lost` once someone else changed the record.
  struct Lease {
    JobRecord record;
    uint64_t revision = 0;
    bool lost = false;
  };
  void hold_lease(const JobRecord& record, uint64_t revision);
  // Writes `record` (revision 0: creates it) by compare-and-set and holds its lease, serialised
  // with the renewals.
  Result<uint64_t> claim_lease(const JobRecord& record, uint64_t revision);
  std::optional<Lease> lease(const std::string& id) const;
  // Writes the record (state change) under the lease; false if lost.
  // `state` nullopt: a renewal, keeping the state the record has.
  bool update_lease(const std::string& id, std::optional<ClusterJobState> state);
  // Deletes the record if it is still ours, and forgets the lease.
  void release_lease(const std::string& id, bool delete_record);

  // A new job NATS was not there for: it runs through this node's pipeline alone.
  void run_local(std::shared_ptr<PipelineJob> job, const std::string& why);

  // spool/cluster/ID: written (durably) before a record may name this node as the job's
  // coordinator; false (logged) when it cannot be written (a full spool), then no record is
  // claimed. Removed when the job is over here.
  bool mark_cluster_job(const std::string& id);
  void unmark_cluster_job(const std::string& id);
  std::string cluster_marker(const std::string& id) const;

  // The daemon could not take over a job the maintenance thread claimed: give the lease up, so
  // that another node takes it.
  void adoption_failed(const std::string& id);

  // Worker side (cluster_worker.cc): a document of a batch is over.
  void settle(WorkerBatch& batch, DocumentOutcome outcome);

 private:
  explicit ClusterNode(Deps deps);
  void maintain();    // the maintenance thread
  void keep_alive();  // the keep-alive thread: lease renewals, in-progress acks
  bool set_up();      // streams, consumer, buckets; true once done
  void beat(int64_t now_ms);
  void renew_leases();
  void scan_for_takeovers();
  void purge_outcomes(JobRecord record, uint64_t revision, int64_t now_ms);
  void poll_consumer();
  void send_in_progress();
  void reap_coordinators();  // drops coordinators whose job is over

  // Worker (cluster_worker.cc).
  void fetch_loop();
  void outbox_loop();
  void take(NatsMsgPtr msg, std::map<std::string, std::vector<Delivery>>& batches,
            std::map<std::string, std::shared_ptr<WorkerJob>>& jobs);
  // The job as this node knows it; `force`: read its record now, whatever is cached. Null when
  // it cannot be told now (NATS trouble, or this node short of descriptors or memory).
  std::shared_ptr<WorkerJob> worker_job(const std::string& id, bool force = false);
  void refresh_worker_jobs();

 public:
  void post(OutboxAction action);  // from a WorkerBatch too

 private:
  // A message settled without running: its outcome (failed, cancelled) published, then `how`.
  void answer(NatsMsgPtr msg, const std::string& job, const PortableDocument& doc,
              DocumentState state, std::string error, uint64_t delivered, OutboxAction::How how);
  std::string outcome_json(const std::string& job, DocumentOutcome outcome) const;

  Deps deps_;
  ClusterNames names_;
  std::string node_;
  size_t max_held_;
  ClusterMetrics metrics_;
  std::unique_ptr<NatsConnection> nc_;
  KvStorePtr jobs_kv_;
  KvStorePtr nodes_kv_;
  std::unique_ptr<KvMirror> jobs_mirror_;  // after jobs_kv_: destroyed first
  std::unique_ptr<KvMirror> nodes_mirror_;
  NatsSubPtr docs_sub_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> intake_paused_{false};  // no takeovers (scan_for_takeovers) while set
  std::atomic<bool> stopping_{false};
  std::atomic<bool> fetching_{true};
  std::atomic<int64_t> connected_since_ms_{-1};  // wall ms of the last (re)connect; -1: down

  std::mutex lease_write_mu_;  // one write of this node's job records at a time
  mutable std::mutex mu_;      // everything below, unless said otherwise
  std::condition_variable cv_;
  std::map<std::string, std::shared_ptr<Coordinator>> coordinators_;
  std::set<std::string> local_jobs_;  // run on this node alone (NATS was down at admission)
  std::map<std::string, Lease> leases_;
  // Records other nodes coordinate: the revision last seen and when (this node's clock).
  struct Seen {
    uint64_t revision = 0;
    int64_t since_ms = 0;
  };
  std::map<std::string, Seen> seen_;
  int64_t last_scan_ok_ms_ = 0;   // maintenance thread only
  int64_t last_kv_write_ms_ = 0;  // maintenance thread only: this node's heartbeat was written
  std::set<std::string> adopting_;
  nlohmann::json nodes_ = nlohmann::json::array();
  int64_t pending_ = 0;
  int64_t ack_pending_ = 0;

  // Worker state.
  std::mutex held_mu_;  // the messages this node holds; acks and in-progress acks under it
  std::condition_variable held_cv_;
  std::unordered_set<natsMsg*> held_;
  std::mutex jobs_mu_;
  std::unordered_map<std::string, std::shared_ptr<WorkerJob>> worker_jobs_;
  std::mutex outbox_mu_;
  std::condition_variable outbox_cv_;
  std::vector<OutboxAction> outbox_;
  bool outbox_stop_ = false;
  uint64_t batch_seq_ = 0;

  // Declared after the worker state: its batches hand their untaken messages to the outbox when
  // the pipeline lets them go, also at destruction.
  Pipeline pipeline_;

  std::thread maintenance_;
  std::thread keepalive_;
  std::thread fetcher_;
  // Outcomes are published and acknowledged by the server one at a time per thread: a few
  // threads keep several round trips in flight.
  std::vector<std::thread> outbox_threads_;
};

}  // namespace docpipe
