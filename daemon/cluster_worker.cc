// The worker side of a cluster node: pull document messages while this node holds fewer than
// max_ack_pending, run them through the local pipeline as WorkerBatches, and settle each message
// once its document is over (outcome published, then ack / nak / term) on the outbox thread.
#include <algorithm>
#include <chrono>

#include "daemon/cluster_node.h"
#include "daemon/intake.h"
#include "daemon/log.h"
#include "daemon/submitter_store.h"
#include "pipeline/backoff.h"

namespace docpipe {

namespace {

constexpr int kFetchBatch = 64;
constexpr int64_t kFetchWaitMs = 1000;
// How long a worker trusts what it read of a job's record (its state: running or cancelling).
constexpr int64_t kJobRecordTtlMs = 1000;
constexpr int64_t kIntentTimeoutMs = 5000;

std::string worker_batch_id(const std::string& job) { return "cluster:" + job; }

uint64_t delivered_of(natsMsg* m) {
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, m) != NATS_OK || meta == nullptr) return 1;
  uint64_t n = meta->NumDelivered;
  jsMsgMetaData_Destroy(meta);
  return n == 0 ? 1 : n;
}

}  // namespace

// --- WorkerBatch ---

WorkerBatch::WorkerBatch(ClusterNode& node, std::shared_ptr<WorkerJob> job,
                         std::vector<Delivery> docs)
    : node_(node), job_(std::move(job)), docs_(std::move(docs)) {}

WorkerBatch::~WorkerBatch() { release_untaken(); }

void WorkerBatch::job_finished(bool) { release_untaken(); }

void WorkerBatch::release_untaken() {
  // Documents the pipeline never took (the batch was cancelled, or the node stops): handed back
  // at once; a node that takes one of a cancelled job answers it cancelled.
  std::vector<Delivery> left;
  {
    std::lock_guard lock(mu_);
    for (size_t i = next_; i < docs_.size(); ++i) {
      if (docs_[i].msg) left.push_back(std::move(docs_[i]));
    }
    next_ = docs_.size();
  }
  for (Delivery& d : left) node_.post({std::move(d.msg), OutboxAction::How::kNak, 0, {}, {}});
}

std::optional<DocumentRef> WorkerBatch::next_document() {
  std::lock_guard lock(mu_);
  if (next_ >= docs_.size()) return std::nullopt;
  return docs_[next_++].doc;
}

std::optional<Delivery> WorkerBatch::take(const std::string& input) {
  std::lock_guard lock(mu_);
  for (Delivery& d : docs_) {
    if (d.msg && d.doc.input_path == input) {
      Delivery out = std::move(d);
      d.msg.reset();
      return out;
    }
  }
  return std::nullopt;
}

void WorkerBatch::mark_superseded(const std::string& input) {
  std::lock_guard lock(mu_);
  for (Delivery& d : docs_)
    if (d.msg && d.doc.input_path == input) d.superseded = true;
}

void WorkerBatch::mark_unreachable(const std::string& input) {
  std::lock_guard lock(mu_);
  for (Delivery& d : docs_)
    if (d.msg && d.doc.input_path == input) d.coordinator_unreachable = true;
}

Status WorkerBatch::document_committing(const PendingOutput& pending) {
  // With replace, an output renamed before its outcome is recorded is simply done again.
  if (!keeps_existing_outputs(job_->spec->output.if_exists)) return ok();
  // if_exists skip/fail: the coordinator records the intent in its journal before the rename,
  // or says the document was recorded meanwhile from another node.
  IntentMessage intent{pending.doc.input_path, pending.output_path, pending.sha256,
                       pending.bytes_in,       pending.bytes_out,   pending.attempts,
                       pending.metadata};
  const std::string body = intent.to_json();
  natsMsg* reply = nullptr;
  natsStatus s = natsConnection_Request(&reply, node_.nats().get(),
                                        node_.names().intent_subject(job_->id).c_str(), body.data(),
                                        static_cast<int>(body.size()), kIntentTimeoutMs);
  if (s != NATS_OK) {
    // No coordinator now (it died; another node takes the job over after lease_ms): the
    // document waits for it rather than spending its attempts.
    mark_unreachable(pending.doc.input_path);
    return make_error(ErrorCode::kIo, "the coordinator of job " + job_->id +
                                          " did not answer before the rename of " +
                                          pending.output_path + ": " + natsStatus_GetText(s));
  }
  NatsMsgPtr owned(reply);
  nlohmann::json j = parse_message_json(msg_data(reply));
  if (j.is_object() && j.value("ok", false)) return ok();
  if (j.is_object() && j.value("not_coordinator", false)) {
    mark_unreachable(pending.doc.input_path);
    return make_error(ErrorCode::kIo,
                      "the node that answered for job " + job_->id + " no longer coordinates it");
  }
  if (j.is_object() && j.value("superseded", false)) {
    mark_superseded(pending.doc.input_path);
    return make_error(ErrorCode::kCancelled, "recorded meanwhile from another node");
  }
  std::string why = j.is_object() ? j.value("error", std::string("no reason given")) : "bad reply";
  return make_error(ErrorCode::kIo, "the coordinator of job " + job_->id +
                                        " refused the rename of " + pending.output_path + ": " +
                                        why);
}

void WorkerBatch::document_finished(DocumentOutcome outcome) {
  node_.settle(*this, std::move(outcome));
}

// --- ClusterNode: worker ---

std::string ClusterNode::outcome_json(const std::string& job, DocumentOutcome outcome) const {
  if (!outcome.error.empty()) outcome.error += " (on node " + node_ + ")";
  return OutcomeMessage{job, node_, std::move(outcome)}.to_json();
}

void ClusterNode::post(OutboxAction action) {
  {
    std::lock_guard lock(outbox_mu_);
    outbox_.push_back(std::move(action));
  }
  outbox_cv_.notify_one();
}

void ClusterNode::answer(NatsMsgPtr msg, const std::string& job, const PortableDocument& doc,
                         DocumentState state, std::string error, uint64_t delivered,
                         OutboxAction::How how) {
  DocumentOutcome o;
  o.doc.input_path = doc.input_path;
  o.doc.relative_path = doc.relative_path;
  o.state = state;
  o.error = std::move(error);
  o.attempts = static_cast<int>(delivered);
  post({std::move(msg), how, 0, names_.outcome_subject(job), outcome_json(job, std::move(o))});
}

void ClusterNode::settle(WorkerBatch& batch, DocumentOutcome outcome) {
  std::optional<Delivery> d = batch.take(outcome.doc.input_path);
  if (!d) return;  // not one of ours (cannot happen): nothing to settle
  const WorkerJob& job = batch.job();
  // What the maintenance thread last read of the job (never a request from a pipeline thread:
  // it must not wait on NATS).
  std::shared_ptr<WorkerJob> now;
  {
    std::lock_guard lock(jobs_mu_);
    auto it = worker_jobs_.find(job.id);
    if (it != worker_jobs_.end()) now = it->second;
  }
  const bool job_cancelled = now && (now->gone || now->state == ClusterJobState::kCancelling);
  OutboxAction a;
  a.msg = std::move(d->msg);
  if (d->superseded) {
    a.how = OutboxAction::How::kAck;  // the coordinator has this document's outcome already
  } else if (d->coordinator_unreachable) {
    a.how = OutboxAction::How::kNak;
    a.nak_delay_ms = std::clamp<int64_t>(cluster().lease_ms / 2, 1000, 5000);
  } else if (outcome.state == DocumentState::kCancelled && !job_cancelled) {
    // Cut short here (this node stops): another node does it.
    a.how = OutboxAction::How::kNak;
  } else if (outcome.state == DocumentState::kFailed && outcome.transient &&
             d->delivered < static_cast<uint64_t>(job.max_attempts)) {
    // Worth another attempt, maybe on another node, after the retry backoff.
    a.how = OutboxAction::How::kNak;
    a.nak_delay_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         backoff_nominal(static_cast<int>(d->delivered)))
                         .count();
  } else {
    a.how = outcome.state == DocumentState::kFailed ? OutboxAction::How::kTerm
                                                    : OutboxAction::How::kAck;
    outcome.attempts = static_cast<int>(d->delivered);
    a.subject = names_.outcome_subject(job.id);
    a.outcome = outcome_json(job.id, std::move(outcome));
  }
  post(std::move(a));
}

std::shared_ptr<WorkerJob> ClusterNode::worker_job(const std::string& id, bool force) {
  const int64_t now = clock().wall_ms();
  if (!force) {
    std::lock_guard lock(jobs_mu_);
    auto it = worker_jobs_.find(id);
    if (it != worker_jobs_.end() && now - it->second->checked_ms < kJobRecordTtlMs) {
      it->second->used_ms = now;
      return it->second;
    }
  }
  auto record = kv_get(jobs_kv_.get(), job_kv_key(id));
  if (!record) return nullptr;  // NATS trouble: the caller hands the message back
  auto job = std::make_shared<WorkerJob>();
  job->id = id;
  job->checked_ms = job->used_ms = now;
  std::shared_ptr<WorkerJob> old;
  {
    std::lock_guard lock(jobs_mu_);
    auto it = worker_jobs_.find(id);
    if (it != worker_jobs_.end()) old = it->second;
  }
  if (!*record) {
    job->gone = true;
  } else if (auto r = parse_job_record((*record)->value); !r) {
    job->error = r.error().message;
  } else if (r->state == ClusterJobState::kFinished) {
    job->gone = true;  // its stragglers are of no use
    job->submitted_at_ms = r->submitted_at_ms;
  } else if (old && old->spec && !old->gone && old->submitted_at_ms == r->submitted_at_ms) {
    // The spec was checked already: only the state can have changed.
    *job = *old;
    job->checked_ms = job->used_ms = now;
    job->state = r->state;
  } else {
    job->state = r->state;
    job->submitted_at_ms = r->submitted_at_ms;
    std::optional<SubmitterStore::Record> who = SubmitterStore::decode(r->submitter);
    FieldErrors errors;
    std::optional<ValidatedJob> v;
    if (!who) {
      job->error = "cannot tell whom the job acts for (its record's submitter is damaged)";
    } else {
      std::optional<Error> shortage;
      // The text the coordinator pinned after validating it (a retry's fields included).
      v = validate_job_text(r->text, id, "/", *deps_.current_config(), errors, who->submitter,
                            /*count_documents=*/false, &shortage, nullptr,
                            /*daemon_written=*/true);
      if (shortage) {
        // This node's trouble, not the job's: nothing cached, the message handed back.
        log_warn("cluster: cannot check a job on this node now",
                 {{"job", id}, {"node", node_}, {"error", shortage_message(*shortage)}});
        return nullptr;
      }
      if (!v) job->error = "not valid on this node: " + join_field_errors(errors);
    }
    if (v) {
      job->max_attempts = std::max(1, v->spec.limits.max_attempts);
      v->spec.limits.max_attempts = 1;  // each delivery is one attempt; naks do the retries
      // Its batches are known to this node's pipeline by a name no local job can have (':' is
      // not allowed in a job id), so that cancelling them never touches a local job.
      v->spec.id = worker_batch_id(id);
      auto spec = std::make_shared<const JobSpec>(std::move(v->spec));
      auto folders = JobFolders::open(*spec);
      if (!folders && is_resource_shortage(folders.error().sys_errno)) {
        log_warn("cluster: cannot open a job's folders on this node now",
                 {{"job", id}, {"node", node_}, {"error", folders.error().message}});
        return nullptr;
      }
      if (!folders) {
        job->error =
            "cannot open its folders on this node (inputs and outputs must be on "
            "storage every node sees): " +
            folders.error().message;
      } else {
        job->spec = std::move(spec);
        job->folders = std::move(*folders);
      }
    }
    if (!job->error.empty()) {
      log_warn("cluster: cannot run a job's documents on this node",
               {{"job", id}, {"node", node_}, {"error", job->error}});
    }
  }
  std::lock_guard lock(jobs_mu_);
  worker_jobs_[id] = job;
  return job;
}

void ClusterNode::take(NatsMsgPtr msg, std::map<std::string, std::vector<Delivery>>& batches,
                       std::map<std::string, std::shared_ptr<WorkerJob>>& jobs) {
  const uint64_t delivered = delivered_of(msg.get());
  if (delivered > 1) metrics_.redeliveries->Increment();
  auto parsed = parse_doc_message(msg_data(msg.get()));
  if (!parsed) {
    // Nobody could ever do it, and it names no job to tell: drop it for good.
    log_error("cluster: dropping a bad document message", {{"error", parsed.error().message}});
    post({std::move(msg), OutboxAction::How::kTerm, 0, {}, {}});
    return;
  }
  const std::string& id = parsed->job;
  std::shared_ptr<WorkerJob> job = worker_job(id);
  // What is cached may be an earlier job of that id: read the record again.
  if (job && job->submitted_at_ms != parsed->at) job = worker_job(id, /*force=*/true);
  if (!job) {
    post({std::move(msg), OutboxAction::How::kNak, 1000, {}, {}});
    return;
  }
  if (!job->gone && job->submitted_at_ms < parsed->at) {
    // A later job of that id whose record this node does not see yet.
    post({std::move(msg), OutboxAction::How::kNak, 500, {}, {}});
    return;
  }
  if (job->gone || job->submitted_at_ms != parsed->at) {
    post({std::move(msg), OutboxAction::How::kAck, 0, {}, {}});  // the job is over: a straggler
    return;
  }
  if (job->state == ClusterJobState::kCancelling) {
    answer(std::move(msg), id, parsed->doc, DocumentState::kCancelled, {}, delivered,
           OutboxAction::How::kAck);
    return;
  }
  const uint64_t max_deliver = static_cast<uint64_t>(cluster().max_deliver);
  if (!job->error.empty()) {
    if (delivered >= max_deliver) {
      answer(std::move(msg), id, parsed->doc, DocumentState::kFailed, job->error, delivered,
             OutboxAction::How::kTerm);
    } else {
      // Another node may see the job's folders: hand it back for a while.
      post({std::move(msg),
            OutboxAction::How::kNak,
            std::min<int64_t>(cluster().ack_wait_ms, 5000),
            {},
            {}});
    }
    return;
  }
  if (delivered > max_deliver) {
    answer(std::move(msg), id, parsed->doc, DocumentState::kFailed,
           "delivered " + std::to_string(delivered - 1) +
               " times without an outcome: the nodes that took it stopped before finishing it "
               "(max_deliver " +
               std::to_string(max_deliver) + ")",
           delivered, OutboxAction::How::kTerm);
    return;
  }
  auto ref = job->folders->document(parsed->doc);
  if (!ref) {
    answer(std::move(msg), id, parsed->doc, DocumentState::kFailed, ref.error().message, delivered,
           OutboxAction::How::kTerm);
    return;
  }
  jobs[id] = job;
  batches[id].push_back(Delivery{std::move(msg), std::move(*ref), delivered, false});
}

void ClusterNode::fetch_loop() {
  while (!stopping_.load()) {
    size_t room = 0;
    {
      std::unique_lock lock(held_mu_);
      held_cv_.wait_for(lock, std::chrono::milliseconds(200), [&] {
        return stopping_.load() || (fetching_.load() && held_.size() < max_held_);
      });
      if (stopping_.load()) break;
      if (!fetching_.load() || held_.size() >= max_held_) continue;
      room = max_held_ - held_.size();
    }
    if (!ready()) {
      pause(200);
      continue;
    }
    natsMsgList list{};
    const int want = static_cast<int>(std::min<size_t>(room, kFetchBatch));
    natsStatus s = natsSubscription_Fetch(&list, docs_sub_.get(), want, kFetchWaitMs, nullptr);
    if (s != NATS_OK) {
      if (s != NATS_TIMEOUT) pause(200);
      continue;
    }
    std::map<std::string, std::vector<Delivery>> batches;
    std::map<std::string, std::shared_ptr<WorkerJob>> jobs;
    {
      std::lock_guard lock(held_mu_);
      for (int i = 0; i < list.Count; ++i) held_.insert(list.Msgs[i]);
      metrics_.messages_held->Set(static_cast<double>(held_.size()));
    }
    for (int i = 0; i < list.Count; ++i) {
      NatsMsgPtr msg(list.Msgs[i]);
      list.Msgs[i] = nullptr;
      take(std::move(msg), batches, jobs);
    }
    natsMsgList_Destroy(&list);
    for (auto& [id, docs] : batches) {
      pipeline_.add_job(std::make_shared<WorkerBatch>(*this, jobs[id], std::move(docs)));
    }
  }
}

void ClusterNode::outbox_loop() {
  for (;;) {
    OutboxAction a;
    {
      std::unique_lock lock(outbox_mu_);
      outbox_cv_.wait(lock, [&] { return outbox_stop_ || !outbox_.empty(); });
      if (outbox_.empty()) return;  // stopping, and nothing left
      a = std::move(outbox_.front());
      outbox_.erase(outbox_.begin());
    }
    // The outcome first: a message acked before its outcome is published could lose it.
    bool published = a.subject.empty();
    std::optional<std::chrono::steady_clock::time_point> give_up;
    for (int attempt = 0; !published; ++attempt) {
      jsPubAck* pa = nullptr;
      natsStatus s = js_Publish(&pa, nats().js(), a.subject.c_str(), a.outcome.data(),
                                static_cast<int>(a.outcome.size()), nullptr, nullptr);
      if (pa != nullptr) jsPubAck_Destroy(pa);
      if (s == NATS_OK) {
        published = true;
        metrics_.outcomes_published->Increment();
        break;
      }
      if (attempt == 0 || attempt % 50 == 0) {
        log_warn("cluster: cannot publish an outcome yet; retrying",
                 {{"subject", a.subject}, {"error", nats_error("publish", s).message}});
      }
      std::unique_lock lock(outbox_mu_);
      // Stopping for good: after a few more seconds of trying (NATS down, or JetStream refusing
      // publishes) the message stays unacked and is redelivered to another node.
      if (outbox_stop_) {
        const auto now = std::chrono::steady_clock::now();
        if (!give_up) give_up = now + std::chrono::seconds(3);
        if (now >= *give_up || !nc_->connected()) break;
      }
      outbox_cv_.wait_for(lock, std::chrono::milliseconds(200));
    }
    std::lock_guard lock(held_mu_);
    if (published) {
      switch (a.how) {
        case OutboxAction::How::kAck:
          natsMsg_Ack(a.msg.get(), nullptr);
          metrics_.acks->Increment();
          break;
        case OutboxAction::How::kNak:
          if (a.nak_delay_ms > 0) {
            natsMsg_NakWithDelay(a.msg.get(), a.nak_delay_ms, nullptr);
          } else {
            natsMsg_Nak(a.msg.get(), nullptr);
          }
          metrics_.naks->Increment();
          break;
        case OutboxAction::How::kTerm:
          natsMsg_Term(a.msg.get(), nullptr);
          metrics_.terms->Increment();
          break;
      }
    }
    held_.erase(a.msg.get());
    a.msg.reset();
    metrics_.messages_held->Set(static_cast<double>(held_.size()));
    held_cv_.notify_all();
  }
}

void ClusterNode::send_in_progress() {
  std::lock_guard lock(held_mu_);
  for (natsMsg* m : held_) natsMsg_InProgress(m, nullptr);
}

void ClusterNode::refresh_worker_jobs() {
  std::vector<std::string> ids;
  const int64_t now = clock().wall_ms();
  {
    std::lock_guard lock(jobs_mu_);
    for (auto it = worker_jobs_.begin(); it != worker_jobs_.end();) {
      if (now - it->second->used_ms > 60000) {
        it = worker_jobs_.erase(it);  // no message of it for a minute
      } else {
        if (!it->second->gone && it->second->state == ClusterJobState::kRunning) {
          ids.push_back(it->first);
        }
        ++it;
      }
    }
  }
  for (const std::string& id : ids) {
    std::shared_ptr<WorkerJob> job = worker_job(id);
    if (job && (job->gone || job->state == ClusterJobState::kCancelling)) {
      // Its documents here stop at their next step; their messages are answered cancelled.
      pipeline_.cancel_job(worker_batch_id(id));
    }
  }
}

}  // namespace docpipe
