#include "daemon/cluster_coordinator.h"

#include <fcntl.h>
#include <unistd.h>

#include <functional>

#include "core/document_source.h"
#include "core/fs_util.h"
#include "daemon/cluster_node.h"
#include "daemon/daemon_job.h"
#include "daemon/log.h"
#include "daemon/submitter_store.h"
#include "pipeline/sha256.h"

namespace docpipe {

namespace {

constexpr int kOutcomeBatch = 256;
constexpr int kPublishBatch = 256;
// How long a new job waits for NATS (a node just starting connects in well under a second)
// before it runs on this node alone.
constexpr auto kLocalGrace = std::chrono::seconds(2);
// With every document published and some without an outcome, how long without an outcome before
// the stream is asked whether it still holds them (republish_lost).
constexpr auto kLostCheckAfter = std::chrono::seconds(5);

uint64_t input_key(const std::string& input) { return std::hash<std::string>{}(input); }

}  // namespace

Coordinator::Coordinator(ClusterNode& node, std::shared_ptr<PipelineJob> job, bool fresh)
    : node_(node), job_(std::move(job)), id_(job_->spec().id), fresh_(fresh) {}

Coordinator::~Coordinator() {
  stop();
  if (thread_.joinable()) thread_.join();
  close_intents();
  outcomes_.reset();
  if (js_ != nullptr) {
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = 1000;
    // A publish still pending may call its error handler later: then its counter must outlive
    // this coordinator (a few bytes, only after a failed shutdown with NATS down).
    if (js_PublishAsyncComplete(js_, &wait) == NATS_OK && !keep_counter_) delete publish_errors_;
    jsCtx_Destroy(js_);
  } else if (!keep_counter_) {
    delete publish_errors_;
  }
}

void Coordinator::start() {
  thread_ = std::thread([this] { run(); });
}

void Coordinator::cancel() { cancel_.store(true); }

void Coordinator::stop() { stop_.store(true); }

size_t Coordinator::outstanding() const {
  std::lock_guard lock(mu_);
  return outstanding_.size();
}

void Coordinator::run() {
  if (!claim()) return;
  claimed_.store(true);
  // The intent requests of if_exists skip/fail documents come to this node from now on.
  natsSubscription* sub = nullptr;
  while (!stop_.load()) {
    natsStatus s = natsConnection_Subscribe(
        &sub, node_.nats().get(), node_.names().intent_subject(id_).c_str(), on_intent, this);
    if (s == NATS_OK) break;
    node_.pause(500);
  }
  intents_.reset(sub);
  while (!stop_.load() && !open_outcomes()) node_.pause(500);

  open_publisher();
  // What was done before (a restart, a takeover) is read back before anything is published.
  while (!stop_.load() && !caught_up_) drain_outcomes(200);
  while (!stop_.load()) {
    if (auto lease = node_.lease(id_); !lease || lease->lost) {
      abandon(
          "another node took the job over (this node's lease lapsed, e.g. while NATS was "
          "unreachable)");
      return;
    }
    if (cancel_.load() && !cancel_written_) {
      batch_.clear();  // never published: they count as cancelled
      cancel_written_ = node_.update_lease(id_, ClusterJobState::kCancelling);
    }
    bool idle = true;
    if (!cancel_.load() && (!walk_done_ || !batch_.empty())) idle = !publish_more();
    bool done;
    {
      std::lock_guard lock(mu_);
      done = (walk_done_ || cancel_.load()) && outstanding_.empty() && batch_.empty();
    }
    if (done && (!cancel_.load() || cancel_written_)) {
      if (finish()) return;
      node_.pause(500);
      continue;
    }
    drain_outcomes(idle ? 500 : 1);
    if (walk_done_ && batch_.empty() && !cancel_.load() &&
        std::chrono::steady_clock::now() - last_progress_ > kLostCheckAfter) {
      republish_lost();
    }
  }
}

// A document message can be lost in a server failover even though its publish was acknowledged
// (seen once, in a fresh-clone CI run of "a job completes when one of 3 nats-servers is killed
// mid-job": 599 of 600 outcomes, nothing pending, the job waiting for good). Nodes publish a
// document's outcome before they ack or terminate its message, so once the stream holds no message
// of the job and every outcome in the stream has been read, a document still outstanding has
// neither and is published again, under a new Nats-Msg-Id. A copy that turns up after all is done
// twice at worst, and its first outcome counts (record()).
void Coordinator::republish_lost() {
  last_progress_ = std::chrono::steady_clock::now();  // the next check waits another spell
  if (outstanding() == 0) return;
  std::optional<uint64_t> in_stream =
      node_.subject_messages(node_.names().stream, node_.names().doc_subject(id_));
  if (!in_stream || *in_stream != 0) return;
  if (!outcomes_all_read()) return;
  std::lock_guard lock(mu_);
  if (outstanding_.empty()) return;
  ++republish_rounds_;
  for (auto& [input, doc] : outstanding_) {
    PendingDoc again = doc;
    again.msg_id += ":again-" + std::to_string(republish_rounds_);
    batch_.push_back(std::move(again));
  }
  log_warn(
      "cluster: documents published have neither a message in the stream nor an outcome; "
      "publishing them again",
      {{"job", id_}, {"documents", std::to_string(batch_.size())}});
}

// Reads outcomes until the consumer has delivered everything in the stream (it answers for
// itself: a consumer lost with its server times out like an idle one). False if it cannot tell
// within a few seconds.
bool Coordinator::outcomes_all_read() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!stop_.load() && std::chrono::steady_clock::now() < deadline) {
    if (!outcomes_) {
      if (!open_outcomes()) return false;
    }
    jsConsumerInfo* ci = nullptr;
    if (natsSubscription_GetConsumerInfo(&ci, outcomes_.get(), nullptr, nullptr) != NATS_OK) {
      outcomes_.reset();  // opened again after the last outcome read
      continue;
    }
    const bool all = ci->NumPending == 0;
    jsConsumerInfo_Destroy(ci);
    if (all) return true;
    drain_outcomes(200);
  }
  return false;
}

bool Coordinator::claim() {
  auto* daemon_job = dynamic_cast<DaemonJob*>(job_.get());
  JobRecord fresh;
  fresh.id = id_;
  fresh.coordinator = node_.node();
  if (auto text = read_file(node_.spool_root() + "/active/" + id_ + ".json")) {
    fresh.text = std::move(*text);
  }
  fresh.submitter = SubmitterStore::encode(job_->spec().submitter);
  if (daemon_job != nullptr) {
    JobReport r = daemon_job->report();
    fresh.documents = r.counts.total;
    fresh.submitted_at_ms = r.submitted_at_ms;
  }
  const std::string key = job_kv_key(id_);
  bool warned = false;
  const auto since = std::chrono::steady_clock::now();
  // Only a job NATS was never there for may run alone: once a record may have been written,
  // it is a cluster job whatever happens.
  bool may_go_local = fresh_;
  while (!stop_.load()) {
    if (!node_.ready()) {
      if (may_go_local && cancel_.load()) {
        finished_.store(true);
        job_->job_finished(true);
        return false;
      }
      if (may_go_local && std::chrono::steady_clock::now() - since > kLocalGrace) {
        // A job must not wait for NATS: it runs here alone.
        node_.run_local(job_,
                        "NATS is unreachable (" +
                            (node_.nats().first_error().empty() ? std::string("not connected")
                                                                : node_.nats().first_error()) +
                            ")");
        finished_.store(true);
        return false;
      }
      if (!warned) {
        log_warn("cluster: job waits for NATS to be coordinated",
                 {{"job", id_}, {"node", node_.node()}});
        warned = true;
      }
      node_.pause(200);
      continue;
    }
    may_go_local = false;  // NATS is there
    auto got = kv_get(node_.jobs_kv(), key);
    if (!got) {
      node_.pause(500);
      continue;
    }
    // Writes `record` by compare-and-set on `revision` (0: creates it); false to try again.
    auto take = [&](const JobRecord& record, uint64_t revision) {
      auto rev = node_.claim_lease(record, revision);
      if (!rev) {
        if (rev.error().code != ErrorCode::kExists) node_.pause(500);
        return false;
      }
      msg_id_prefix_ = id_ + ":" + std::to_string(record.submitted_at_ms) + ":";
      submitted_at_ms_ = record.submitted_at_ms;
      log_info("cluster: coordinating job",
               {{"job", id_}, {"node", node_.node()}, {"epoch", std::to_string(record.epoch)}});
      return true;
    };
    if (!*got) {
      if (!node_.mark_cluster_job(id_)) {
        node_.pause(1000);
        continue;
      }
      if (take(fresh, 0)) return true;
      continue;
    }
    auto parsed = parse_job_record((*got)->value);
    if (fresh_) {
      // A new job whose id a job of the cluster has (or had, within the record's 7 days).
      if (parsed && parsed->state != ClusterJobState::kFinished &&
          parsed->coordinator != node_.node()) {
        abandon("its id is in use in the cluster: a job " + id_ + " is coordinated by node " +
                parsed->coordinator + "; submit it under another id");
        return false;
      }
      if (!node_.mark_cluster_job(id_)) {
        node_.pause(1000);
        continue;
      }
      // The outcomes of the earlier job of that id must not count for this one.
      if (!node_.purge(node_.names().outcomes_stream, node_.names().outcome_subject(id_))) {
        node_.pause(500);
        continue;
      }
      if (take(fresh, (*got)->revision)) return true;
      continue;
    }
    if (parsed && parsed->coordinator != node_.node()) {
      abandon(parsed->state == ClusterJobState::kFinished
                  ? "finished on node " + parsed->coordinator +
                        ", which took the job over; its "
                        "report is in that node's spool"
                  : "coordinated by node " + parsed->coordinator +
                        ", which took the job over; its report will be in that node's spool");
      return false;
    }
    if (parsed && parsed->state == ClusterJobState::kFinished) {
      // This node finished it, then stopped before its report was written: record the outcomes
      // again (still in the stream) and finish, publishing nothing.
      walk_done_ = true;
    }
    JobRecord r = parsed ? *parsed : fresh;
    r.coordinator = node_.node();
    ++r.beat;
    if (take(r, (*got)->revision)) {
      if (r.state == ClusterJobState::kCancelling) cancel_.store(true);
      cancel_written_ = r.state == ClusterJobState::kCancelling;
      return true;
    }
  }
  return false;
}

bool Coordinator::open_outcomes() {
  if (!node_.ready()) return false;
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = node_.names().outcomes_stream.c_str();
  so.Config.AckPolicy = js_AckAll;
  so.Config.DeliverPolicy = last_outcome_seq_ == 0 ? js_DeliverAll : js_DeliverByStartSequence;
  so.Config.OptStartSeq = last_outcome_seq_ + 1;
  if (last_outcome_seq_ == 0) so.Config.OptStartSeq = 0;
  // The server drops the consumer when this coordinator is gone for that long.
  so.Config.InactiveThreshold = int64_t{600} * 1000000000;
  natsSubscription* sub = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s =
      js_PullSubscribe(&sub, node_.nats().js(), node_.names().outcome_subject(id_).c_str(), nullptr,
                       nullptr, &so, &jerr);
  if (s != NATS_OK) {
    log_warn("cluster: cannot read a job's outcomes yet",
             {{"job", id_}, {"error", nats_error("subscribe", s, jerr).message}});
    return false;
  }
  outcomes_.reset(sub);
  return true;
}

void Coordinator::drain_outcomes(int64_t wait_ms) {
  if (!outcomes_) {
    if (!open_outcomes()) node_.pause(200);
    return;
  }
  natsMsgList list{};
  natsStatus s = natsSubscription_Fetch(&list, outcomes_.get(), kOutcomeBatch, wait_ms, nullptr);
  if (s == NATS_TIMEOUT) {
    caught_up_ = true;
    // An ephemeral consumer lives on one server: if that server died, fetches just time out.
    // Every few idle seconds, ask after it; gone, it is opened again after the last outcome.
    const auto now = std::chrono::steady_clock::now();
    if (now - last_consumer_check_ > std::chrono::seconds(3)) {
      last_consumer_check_ = now;
      jsConsumerInfo* ci = nullptr;
      if (natsSubscription_GetConsumerInfo(&ci, outcomes_.get(), nullptr, nullptr) == NATS_OK) {
        jsConsumerInfo_Destroy(ci);
      } else if (node_.ready()) {
        log_warn("cluster: reopening a job's outcome consumer", {{"job", id_}});
        outcomes_.reset();
      }
    }
    return;
  }
  if (s != NATS_OK) {
    // The consumer may be gone (a long outage): read on from the last outcome seen.
    if (node_.ready()) {
      outcomes_.reset();
      open_outcomes();
    }
    node_.pause(200);
    return;
  }
  for (int i = 0; i < list.Count; ++i) {
    natsMsg* m = list.Msgs[i];
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK && meta != nullptr) {
      last_outcome_seq_ = std::max(last_outcome_seq_, meta->Sequence.Stream);
      if (meta->NumPending == 0) caught_up_ = true;
      jsMsgMetaData_Destroy(meta);
    }
    record(msg_data(m));
  }
  if (list.Count > 0) natsMsg_Ack(list.Msgs[list.Count - 1], nullptr);
  natsMsgList_Destroy(&list);
}

void Coordinator::record(const std::string& data) {
  auto parsed = parse_outcome_message(data);
  if (!parsed) {
    log_error("cluster: ignoring a bad outcome message",
              {{"job", id_}, {"error", parsed.error().message}});
    return;
  }
  DocumentOutcome& o = parsed->outcome;
  last_progress_ = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    outstanding_.erase(o.doc.input_path);
    // A document done twice (redelivered after its node went silent): the first outcome counts.
    if (!recorded_.insert(input_key(o.doc.input_path)).second) return;
  }
  job_->document_finished(std::move(o));
}

void Coordinator::on_publish_error(jsCtx*, jsPubAckErr*, void* counter) {
  static_cast<std::atomic<int>*>(counter)->fetch_add(1);
}

void Coordinator::open_publisher() {
  // Its own JetStream context: the errors of its asynchronous publishes are its batch's.
  jsOptions jso;
  jsOptions_Init(&jso);
  jso.Wait = 5000;
  jso.PublishAsync.MaxPending = 2 * kPublishBatch;
  jso.PublishAsync.ErrHandler = on_publish_error;
  jso.PublishAsync.ErrHandlerClosure = publish_errors_;
  if (natsConnection_JetStream(&js_, node_.nats().get(), &jso) != NATS_OK) js_ = nullptr;
}

bool Coordinator::publish_more() {
  const size_t window = static_cast<size_t>(node_.cluster().publish_window);
  const size_t open = outstanding();
  const size_t room = open < window ? std::min<size_t>(window - open, kPublishBatch) : 0;
  while (batch_.size() < room && !stop_.load() && !cancel_.load()) {
    std::optional<DocumentRef> doc = job_->next_document();
    if (!doc) {
      std::lock_guard lock(mu_);
      walk_done_ = true;
      break;
    }
    {
      std::lock_guard lock(mu_);
      // Recorded already (an outcome read back from the stream after a restart or takeover).
      if (recorded_.count(input_key(doc->input_path)) != 0) continue;
    }
    // The server drops a second copy with this id (a republish after a takeover, or of a batch
    // whose acknowledgements were lost) for `Duplicates` (10 min); the job's submission time
    // keeps a later job of the same id apart.
    Sha256 digest;
    (void)digest.update(doc->input_path);
    auto hex = digest.hex_digest();
    batch_.push_back({doc->input_path,
                      DocMessage{id_, to_portable(job_->spec(), *doc), submitted_at_ms_}.to_json(),
                      msg_id_prefix_ + (hex ? *hex : doc->input_path)});
  }
  if (batch_.empty()) return false;
  const std::string subject = node_.names().doc_subject(id_);
  // The batch at once, then its acknowledgements; on any trouble, each again one by one.
  publish_errors_->store(0);
  bool all = js_ != nullptr;
  for (size_t i = 0; all && i < batch_.size(); ++i) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = batch_[i].msg_id.c_str();
    po.MaxWait = 5000;  // unacknowledged that long, it is an error (ErrHandler), not pending
    all = js_PublishAsync(js_, subject.c_str(), batch_[i].body.data(),
                          static_cast<int>(batch_[i].body.size()), &po) == NATS_OK;
  }
  if (all) {
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = 10000;
    all = js_PublishAsyncComplete(js_, &wait) == NATS_OK && publish_errors_->load() == 0;
  }
  // Publishes sent before a connection loss are never acknowledged and would stay pending in
  // the context for good (every later batch waiting out MaxWait on them): start a new one.
  if (!all && js_ != nullptr) {
    jsCtx_Destroy(js_);
    js_ = nullptr;
    keep_counter_ = true;  // the old context may still report an error to it
    open_publisher();
  }
  for (size_t i = 0; !all && i < batch_.size(); ++i) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = batch_[i].msg_id.c_str();
    jsPubAck* pa = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_Publish(&pa, node_.nats().js(), subject.c_str(), batch_[i].body.data(),
                              static_cast<int>(batch_[i].body.size()), &po, &jerr);
    if (pa != nullptr) jsPubAck_Destroy(pa);
    if (s != NATS_OK) {
      log_warn("cluster: cannot publish a document yet; retrying",
               {{"job", id_}, {"error", nats_error("publish", s, jerr).message}});
      node_.pause(500);
      return false;  // the batch is kept; what went out is dropped as a copy next time
    }
  }
  {
    std::lock_guard lock(mu_);
    // An input whose outcome came back while the batch was retried is done already.
    for (PendingDoc& p : batch_) {
      if (recorded_.count(input_key(p.input)) == 0) outstanding_[p.input] = std::move(p);
    }
  }
  batch_.clear();
  last_progress_ = std::chrono::steady_clock::now();
  return true;
}

bool Coordinator::finish() {
  if (finished_.load()) return true;
  // Straggler copies of documents (redelivered, still queued) are of no use any more.
  if (!node_.purge(node_.names().stream, node_.names().doc_subject(id_))) return false;
  // The record says finished from now on (its outcomes are purged later, by any node): a node
  // that comes back with the job in active/ then knows not to run it again.
  if (!node_.update_lease(id_, ClusterJobState::kFinished)) {
    if (auto l = node_.lease(id_); !l || l->lost) {
      abandon("another node took the job over while it finished");
      return true;
    }
    return false;
  }
  close_intents();
  outcomes_.reset();
  node_.release_lease(id_, /*delete_record=*/false);
  // Temp files of documents whose node was killed mid-write: litter now that every document has
  // its outcome (a late straggler only loses its copy).
  if (Result<DirFd> out = open_output_folder(job_->spec())) {
    int fd = ::fcntl(out->fd(), F_DUPFD_CLOEXEC, 0);
    if (fd >= 0) {
      if (size_t n = remove_docpipe_temp_files_at(fd); n > 0) {
        log_info("cluster: removed temp files of documents cut short",
                 {{"job", id_}, {"files", std::to_string(n)}});
      }
    }
  }
  node_.unmark_cluster_job(id_);
  finished_.store(true);
  log_info("cluster: job coordinated to its end", {{"job", id_}, {"node", node_.node()}});
  job_->job_finished(cancel_.load());
  return true;
}

void Coordinator::abandon(const std::string& why) {
  log_warn("cluster: this node no longer coordinates the job",
           {{"job", id_}, {"node", node_.node()}, {"reason", why}});
  close_intents();
  outcomes_.reset();
  node_.release_lease(id_, /*delete_record=*/false);
  node_.unmark_cluster_job(id_);
  if (auto* daemon_job = dynamic_cast<DaemonJob*>(job_.get())) daemon_job->request_cancel(why);
  finished_.store(true);
  job_->job_finished(true);
}

void Coordinator::on_intent(natsConnection*, natsSubscription*, natsMsg* msg, void* self) {
  auto* c = static_cast<Coordinator*>(self);
  c->in_intent_.fetch_add(1);
  if (!c->intents_closing_.load()) c->intent(msg);
  c->in_intent_.fetch_sub(1);
  natsMsg_Destroy(msg);
}

void Coordinator::close_intents() {
  natsSubscription* sub = intents_.release();
  if (sub == nullptr) return;
  intents_closing_.store(true);
  // Drained, libnats calls back no more; without a connection, unsubscribe and wait out a
  // callback already running.
  if (natsSubscription_Drain(sub) == NATS_OK) {
    natsSubscription_WaitForDrainCompletion(sub, 5000);
  } else {
    natsSubscription_Unsubscribe(sub);
  }
  while (in_intent_.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  natsSubscription_Destroy(sub);
}

void Coordinator::intent(natsMsg* msg) {
  nlohmann::json reply;
  auto parsed = parse_intent_message(msg_data(msg));
  if (!parsed) {
    reply = {{"ok", false}, {"error", parsed.error().message}};
  } else {
    bool done;
    {
      std::lock_guard lock(mu_);
      done = recorded_.count(input_key(parsed->input)) != 0;
    }
    std::optional<ClusterNode::Lease> lease = node_.lease(id_);
    if (!lease || lease->lost) {
      reply = {{"ok", false}, {"not_coordinator", true}};
    } else if (done) {
      reply = {{"ok", false}, {"superseded", true}};
    } else {
      DocumentRef doc{parsed->input, {}, nullptr, {}, nullptr};
      Status st =
          job_->document_committing({doc, parsed->output, parsed->sha256, parsed->bytes_in,
                                     parsed->bytes_out, parsed->attempts, parsed->metadata});
      reply = st ? nlohmann::json{{"ok", true}}
                 : nlohmann::json{{"ok", false}, {"error", st.error().message}};
    }
  }
  if (const char* to = natsMsg_GetReply(msg); to != nullptr) {
    const std::string body = reply.dump();
    natsConnection_Publish(node_.nats().get(), to, body.data(), static_cast<int>(body.size()));
  }
}

}  // namespace docpipe
