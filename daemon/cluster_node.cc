#include "daemon/cluster_node.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "daemon/cluster_coordinator.h"
#include "daemon/log.h"

namespace docpipe {

namespace {

constexpr int64_t kTickMs = 250;
constexpr int kOutboxThreads = 4;
constexpr int64_t kNodeAliveMs = 3 * ClusterNode::kBeatMs + 1000;
constexpr int64_t kDuplicateWindowNs = int64_t{600} * 1000000000;
constexpr int64_t kNs = 1000000;
// How long a finished job's record stays in the bucket.
constexpr int64_t kJobRecordTtlMs = int64_t{7} * 24 * 3600 * 1000;

std::vector<std::string> cluster_job_ids(const std::string& folder) {
  std::vector<std::string> out;
  DIR* d = ::opendir(folder.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') out.emplace_back(e->d_name);
  }
  ::closedir(d);
  return out;
}

}  // namespace

ClusterNode::ClusterNode(Deps deps)
    : deps_(std::move(deps)),
      names_(deps_.config.cluster.stream),
      node_(deps_.config.cluster.node),
      max_held_(static_cast<size_t>(deps_.config.cluster.max_ack_pending > 0
                                        ? deps_.config.cluster.max_ack_pending
                                        : deps_.config.max_in_flight_documents)),
      metrics_(*deps_.registry),
      pipeline_(deps_.pipeline, deps_.pipeline_metrics) {
  ClusterConfig& c = deps_.config.cluster;
  if (c.publish_window <= 0) c.publish_window = static_cast<int64_t>(4 * max_held_);
  metrics_.max_ack_pending->Set(static_cast<double>(max_held_));
}

Result<std::unique_ptr<ClusterNode>> ClusterNode::start(Deps deps) {
  std::unique_ptr<ClusterNode> node(new ClusterNode(std::move(deps)));
  ClusterNode* self = node.get();
  // Cluster jobs left in active/ by an earlier run: their journal is rebuilt from the outcome
  // stream (it may lack outcomes this node published but never recorded, or hold ones the
  // stream does not: the stream is the truth).
  const std::string folder = node->deps_.spool_root + "/cluster";
  ::mkdir(folder.c_str(), 0750);
  for (const std::string& id : cluster_job_ids(folder)) {
    ::unlink((node->deps_.spool_root + "/active/" + id + ".journal").c_str());
  }
  auto nc = NatsConnection::connect(
      node->cluster(), "docpipe " + node->node_,
      {.disconnected =
           [self] {
             self->connected_since_ms_.store(-1);
             self->metrics_.connected->Set(0);
             log_warn("cluster: disconnected from NATS; reconnecting",
                      {{"node", self->node_}});
             self->cv_.notify_all();
           },
       .reconnected =
           [self](bool first) {
             if (!first) self->metrics_.reconnects->Increment();
             self->connected_since_ms_.store(self->clock().wall_ms());
             self->metrics_.connected->Set(1);
             log_info("cluster: connected to NATS", {{"node", self->node_},
                                                     {"url", self->nc_ ? self->nc_->connected_url()
                                                                       : std::string()}});
             self->cv_.notify_all();
           }});
  if (!nc) return nc.error();
  node->nc_ = std::move(*nc);
  if (node->nc_->connected()) {
    node->connected_since_ms_.store(node->clock().wall_ms());
    node->metrics_.connected->Set(1);
  } else {
    log_warn("cluster: NATS is unreachable; connecting in the background",
             {{"node", node->node_}, {"error", node->nc_->first_error()}});
  }
  node->maintenance_ = std::thread([self] { self->maintain(); });
  node->keepalive_ = std::thread([self] { self->keep_alive(); });
  node->fetcher_ = std::thread([self] { self->fetch_loop(); });
  for (int i = 0; i < kOutboxThreads; ++i) {
    node->outbox_threads_.emplace_back([self] { self->outbox_loop(); });
  }
  return node;
}

ClusterNode::~ClusterNode() { stop(std::chrono::milliseconds(0)); }

bool ClusterNode::pause(int64_t ms) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stopping_.load(); });
  return !stopping_.load();
}

// --- set-up ---

bool ClusterNode::set_up() {
  const ClusterConfig& c = cluster();
  jsCtx* js = nc_->js();
  auto ensure_stream = [&](const std::string& name, const std::string& subject, bool work_queue,
                           int64_t max_age_ns) -> Status {
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, js, name.c_str(), nullptr, nullptr) == NATS_OK) {
      jsStreamInfo_Destroy(si);
      return ok();
    }
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char* subjects[] = {subject.c_str()};
    sc.Name = name.c_str();
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Retention = work_queue ? js_WorkQueuePolicy : js_LimitsPolicy;
    sc.Storage = js_FileStorage;
    sc.Replicas = c.replicas;
    sc.Duplicates = kDuplicateWindowNs;
    sc.MaxAge = max_age_ns;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_AddStream(&si, js, &sc, nullptr, &jerr);
    if (s == NATS_OK) {
      jsStreamInfo_Destroy(si);
      return ok();
    }
    // Another node created it meanwhile.
    if (js_GetStreamInfo(&si, js, name.c_str(), nullptr, nullptr) == NATS_OK) {
      jsStreamInfo_Destroy(si);
      return ok();
    }
    return nats_error("stream " + name, s, jerr);
  };
  Status st = ensure_stream(names_.stream, names_.docs_filter(), true, 0);
  // Outcomes of a job are purged when it finishes; a week bounds those of jobs never finished.
  if (st) {
    st = ensure_stream(names_.outcomes_stream, names_.outcomes_filter(), false,
                       int64_t{7} * 24 * 3600 * 1000 * kNs);
  }
  if (!st) {
    log_warn("cluster: cannot set up the streams yet", {{"error", st.error().message}});
    return false;
  }
  jsConsumerInfo* ci = nullptr;
  if (js_GetConsumerInfo(&ci, js, names_.stream.c_str(), names_.docs_consumer.c_str(), nullptr,
                         nullptr) != NATS_OK) {
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = names_.docs_consumer.c_str();
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = c.ack_wait_ms * kNs;
    cc.MaxDeliver = -1;  // counted by the nodes (max_deliver), which then fail the document
    cc.FilterSubject = names_.docs_filter().c_str();
    const std::string filter = names_.docs_filter();
    cc.FilterSubject = filter.c_str();
    // What every node may hold together: the stream-wide cap. Each node holds at most its own
    // max_ack_pending, which is what bounds it.
    cc.MaxAckPending = 100000;
    cc.MaxWaiting = 4096;
    cc.Replicas = c.replicas;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_AddConsumer(&ci, js, names_.stream.c_str(), &cc, nullptr, &jerr);
    if (s != NATS_OK &&
        js_GetConsumerInfo(&ci, js, names_.stream.c_str(), names_.docs_consumer.c_str(), nullptr,
                           nullptr) != NATS_OK) {
      log_warn("cluster: cannot set up the document consumer yet",
               {{"error", nats_error("consumer", s, jerr).message}});
      return false;
    }
  }
  if (ci != nullptr) jsConsumerInfo_Destroy(ci);
  if (!docs_sub_) {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = names_.stream.c_str();
    so.Consumer = names_.docs_consumer.c_str();
    natsSubscription* sub = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_PullSubscribe(&sub, js, names_.docs_filter().c_str(),
                                    names_.docs_consumer.c_str(), nullptr, &so, &jerr);
    if (s != NATS_OK) {
      log_warn("cluster: cannot subscribe to documents yet",
               {{"error", nats_error("subscribe", s, jerr).message}});
      return false;
    }
    docs_sub_.reset(sub);
  }
  if (!jobs_kv_) {
    auto kv = nc_->key_value(names_.jobs_bucket, static_cast<int>(c.replicas), kJobRecordTtlMs);
    if (!kv) {
      log_warn("cluster: cannot set up the jobs bucket yet", {{"error", kv.error().message}});
      return false;
    }
    jobs_kv_ = std::move(*kv);
    jobs_mirror_ = std::make_unique<KvMirror>(jobs_kv_.get());
  }
  if (!nodes_kv_) {
    auto kv = nc_->key_value(names_.nodes_bucket, static_cast<int>(c.replicas), 60000);
    if (!kv) {
      log_warn("cluster: cannot set up the nodes bucket yet", {{"error", kv.error().message}});
      return false;
    }
    nodes_kv_ = std::move(*kv);
    nodes_mirror_ = std::make_unique<KvMirror>(nodes_kv_.get());
  }
  log_info("cluster: node ready", {{"node", node_}, {"stream", names_.stream},
                                   {"max_ack_pending", std::to_string(max_held_)}});
  return true;
}

// --- maintenance ---

void ClusterNode::maintain() {
  const int64_t lease = cluster().lease_ms;
  int64_t next_beat = 0, next_scan = 0, next_poll = 0;
  while (pause(kTickMs)) {
    if (!nc_->connected()) continue;
    if (!ready_.load()) {
      if (!set_up()) {
        pause(1000);
        continue;
      }
      ready_.store(true);
      held_cv_.notify_all();
    }
    const int64_t now = clock().wall_ms();
    if (now >= next_beat) {
      beat(now);
      next_beat = now + kBeatMs;
    }
    if (now >= next_poll) {
      reap_coordinators();
      poll_consumer();
      refresh_worker_jobs();
      next_poll = now + 1000;
    }
    if (now >= next_scan) {
      scan_for_takeovers();
      next_scan = now + std::max<int64_t>(lease / 4, 1000);
    }
  }
}

// Lease renewals and in-progress acks on a thread of their own: a maintenance step waiting on
// a slow JetStream request (an election after a server loss) must not let leases lapse or
// documents be redelivered.
void ClusterNode::keep_alive() {
  const int64_t lease = cluster().lease_ms;
  int64_t next_renew = 0, next_progress = 0;
  while (pause(kTickMs)) {
    if (!ready()) continue;
    const int64_t now = clock().wall_ms();
    if (now >= next_progress) {
      send_in_progress();
      next_progress = now + std::max<int64_t>(cluster().ack_wait_ms / 3, 500);
    }
    if (now >= next_renew) {
      renew_leases();
      next_renew = now + lease / 3;
    }
  }
}

void ClusterNode::beat(int64_t now_ms) {
  NodeRecord me;
  me.node = node_;
  me.at_ms = now_ms;
  {
    std::lock_guard lock(held_mu_);
    me.held = held_.size();
  }
  me.max_ack_pending = max_held_;
  {
    std::lock_guard lock(mu_);
    me.jobs_coordinated = coordinators_.size();
  }
  me.version = DOCPIPE_VERSION;
  if (kv_put(nodes_kv_.get(), node_, me.to_json())) last_kv_write_ms_ = now_ms;
  std::optional<std::map<std::string, KvMirror::Entry>> all = nodes_mirror_->snapshot();
  if (!all) return;
  nlohmann::json nodes = nlohmann::json::array();
  for (const auto& [key, entry] : *all) {
    auto r = parse_node_record(entry.value);
    if (!r) continue;
    const int64_t age = now_ms - r->at_ms;
    if (age > kNodeAliveMs) continue;
    nodes.push_back({{"node", r->node},
                     {"held", r->held},
                     {"max_ack_pending", r->max_ack_pending},
                     {"jobs_coordinated", r->jobs_coordinated},
                     {"seen_seconds_ago", std::max<double>(0, static_cast<double>(age) / 1e3)}});
  }
  metrics_.nodes->Set(static_cast<double>(nodes.size()));
  std::lock_guard lock(mu_);
  nodes_ = std::move(nodes);
}

void ClusterNode::poll_consumer() {
  jsConsumerInfo* ci = nullptr;
  if (js_GetConsumerInfo(&ci, nc_->js(), names_.stream.c_str(), names_.docs_consumer.c_str(),
                         nullptr, nullptr) != NATS_OK) {
    return;
  }
  metrics_.messages_pending->Set(static_cast<double>(ci->NumPending));
  metrics_.messages_ack_pending->Set(static_cast<double>(ci->NumAckPending));
  {
    std::lock_guard lock(mu_);
    pending_ = static_cast<int64_t>(ci->NumPending);
    ack_pending_ = ci->NumAckPending;
  }
  jsConsumerInfo_Destroy(ci);
}

bool ClusterNode::purge(const std::string& stream, const std::string& subject) {
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Purge.Subject = subject.c_str();
  if (natsStatus s = js_PurgeStream(nc_->js(), stream.c_str(), &o, nullptr); s != NATS_OK) {
    log_warn("cluster: cannot purge messages yet",
             {{"subject", subject}, {"error", nats_error("purge", s).message}});
    return false;
  }
  return true;
}

std::optional<uint64_t> ClusterNode::subject_messages(const std::string& stream,
                                                      const std::string& subject) {
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Info.SubjectsFilter = subject.c_str();
  jsStreamInfo* si = nullptr;
  if (js_GetStreamInfo(&si, nc_->js(), stream.c_str(), &o, nullptr) != NATS_OK || si == nullptr) {
    return std::nullopt;
  }
  uint64_t n = 0;
  if (const jsStreamStateSubjects* list = si->State.Subjects; list != nullptr) {
    for (int i = 0; i < list->Count; ++i) {
      if (subject == list->List[i].Subject) n += list->List[i].Msgs;
    }
  }
  jsStreamInfo_Destroy(si);
  return n;
}

// --- WorkQueue ---

namespace {

// A job run on this node alone: forwards to the job, and tells the node when it is over.
class LocalJob : public PipelineJob {
 public:
  LocalJob(std::shared_ptr<PipelineJob> job, std::function<void()> over)
      : job_(std::move(job)), over_(std::move(over)) {}
  const JobSpec& spec() const override { return job_->spec(); }
  std::optional<DocumentRef> next_document() override { return job_->next_document(); }
  Status document_committing(const PendingOutput& p) override {
    return job_->document_committing(p);
  }
  void document_finished(DocumentOutcome o) override { job_->document_finished(std::move(o)); }
  bool taking_documents() const override { return job_->taking_documents(); }
  // A writer's batch stays one call: one journal write for the job.
  void documents_finished(std::vector<DocumentOutcome> outcomes) override {
    job_->documents_finished(std::move(outcomes));
  }
  void job_finished(bool cancelled) override {
    over_();
    job_->job_finished(cancelled);
  }

 private:
  std::shared_ptr<PipelineJob> job_;
  std::function<void()> over_;
};

}  // namespace

void ClusterNode::add_job(std::shared_ptr<PipelineJob> job) {
  const std::string id = job->spec().id;
  // A job with a marker is a cluster job (resumed, or taken over): it waits for NATS, since
  // another node may coordinate it meanwhile. A new one becomes a cluster job if NATS is there
  // within kLocalGraceMs, else runs here alone (Coordinator::claim decides, off the loop).
  const bool cluster_job = ::access(cluster_marker(id).c_str(), F_OK) == 0;
  auto c = std::make_shared<Coordinator>(*this, std::move(job), /*fresh=*/!cluster_job);
  {
    std::lock_guard lock(mu_);
    adopting_.erase(id);
    coordinators_[id] = c;
    metrics_.jobs_coordinated->Set(static_cast<double>(coordinators_.size()));
  }
  c->start();
}

void ClusterNode::run_local(std::shared_ptr<PipelineJob> job, const std::string& why) {
  const std::string id = job->spec().id;
  log_warn("cluster: the job runs on this node alone", {{"job", id}, {"node", node_},
                                                        {"reason", why}});
  // One step under mu_, so that a cancel finds the job either here or in the pipeline (add_job
  // never calls into the job; its job_finished comes later, from a pipeline thread).
  std::lock_guard lock(mu_);
  local_jobs_.insert(id);
  pipeline_.add_job(std::make_shared<LocalJob>(std::move(job), [this, id] {
    std::lock_guard lock(mu_);
    local_jobs_.erase(id);
  }));
}


void ClusterNode::reap_coordinators() {
  std::vector<std::shared_ptr<Coordinator>> over;
  {
    std::lock_guard lock(mu_);
    for (auto it = coordinators_.begin(); it != coordinators_.end();) {
      if (it->second->over()) {
        over.push_back(std::move(it->second));
        it = coordinators_.erase(it);
      } else {
        ++it;
      }
    }
    metrics_.jobs_coordinated->Set(static_cast<double>(coordinators_.size()));
  }
  over.clear();  // joins their threads, which have returned
}

bool ClusterNode::cancel_job(const std::string& id) {
  std::shared_ptr<Coordinator> c;
  {
    std::lock_guard lock(mu_);
    if (local_jobs_.count(id) != 0) return pipeline_.cancel_job(id);
    auto it = coordinators_.find(id);
    if (it == coordinators_.end()) return false;
    c = it->second;
  }
  c->cancel();
  return true;
}

void ClusterNode::stop(std::chrono::milliseconds grace) {
  if (stopping_.exchange(true)) return;
  cv_.notify_all();
  held_cv_.notify_all();
  std::map<std::string, std::shared_ptr<Coordinator>> coordinators;
  {
    std::lock_guard lock(mu_);
    coordinators.swap(coordinators_);
  }
  for (auto& [id, c] : coordinators) c->stop();
  if (fetcher_.joinable()) fetcher_.join();
  // Documents in flight finish (their outcomes go out), or are cut short and handed back.
  pipeline_.stop(grace);
  {
    std::lock_guard lock(outbox_mu_);
    outbox_stop_ = true;
  }
  outbox_cv_.notify_all();
  for (std::thread& t : outbox_threads_) t.join();
  outbox_threads_.clear();
  // Unsubscribing a JetStream consumer is a request to the servers: without a connection each
  // would wait out its timeout. Closed, they return at once.
  if (nc_ && !nc_->connected()) natsConnection_Close(nc_->get());
  coordinators.clear();  // joins their threads
  if (maintenance_.joinable()) maintenance_.join();
  if (keepalive_.joinable()) keepalive_.join();
  {
    std::lock_guard lock(held_mu_);
    held_.clear();
  }
  docs_sub_.reset();
  jobs_mirror_.reset();
  nodes_mirror_.reset();
  jobs_kv_.reset();
  nodes_kv_.reset();
  if (nc_) natsConnection_FlushTimeout(nc_->get(), 1000);
  nc_.reset();
}

void ClusterNode::reconfigure(const WorkQueueLimits& limits) {
  pipeline_.reconfigure(limits.workers, limits.max_in_flight_documents,
                        limits.memory_budget_bytes);
}

size_t ClusterNode::documents_in_flight() const { return pipeline_.documents_in_flight(); }
size_t ClusterNode::buffer_bytes_in_use() const { return pipeline_.buffer_bytes_in_use(); }

nlohmann::json ClusterNode::daemon_status() const {
  size_t held;
  {
    std::lock_guard lock(const_cast<std::mutex&>(held_mu_));
    held = held_.size();
  }
  std::lock_guard lock(mu_);
  return {{"node", node_},
          {"stream", names_.stream},
          {"connected", nc_ && nc_->connected()},
          {"connected_url", nc_ ? nc_->connected_url() : std::string()},
          {"reconnects", nc_ ? nc_->reconnects() : 0},
          {"held", held},
          {"max_ack_pending", max_held_},
          {"messages_pending", pending_},
          {"messages_ack_pending", ack_pending_},
          {"jobs_coordinated", coordinators_.size()},
          {"nodes", nodes_}};
}

nlohmann::json ClusterNode::job_status(const std::string& id) const {
  std::lock_guard lock(mu_);
  if (local_jobs_.count(id) != 0) {
    return {{"coordinator", node_}, {"distributed", false}};
  }
  auto it = coordinators_.find(id);
  if (it == coordinators_.end()) return nullptr;
  if (!it->second->claimed()) return {{"coordinator", node_}, {"waiting_for", "NATS"}};
  return {{"coordinator", node_},
          {"distributed", true},
          {"documents_published_unfinished", it->second->outstanding()}};
}

}  // namespace docpipe
