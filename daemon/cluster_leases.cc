// Leases on job records, takeovers and the cluster markers of a ClusterNode: who coordinates
// each job (docs/design.md "Several nodes", Faults).
#include <unistd.h>

#include <algorithm>

#include "core/fs_util.h"
#include "daemon/cluster_node.h"
#include "daemon/log.h"

namespace docpipe {

namespace {

// How long a finished job's outcomes stay in the stream: its coordinator may still be writing
// the report from them.
constexpr int64_t kOutcomeKeepMs = int64_t{3600} * 1000;

}  // namespace

void ClusterNode::hold_lease(const JobRecord& record, uint64_t revision) {
  std::lock_guard lock(mu_);
  leases_[record.id] = Lease{record, revision, false};
}

std::optional<ClusterNode::Lease> ClusterNode::lease(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return std::nullopt;
  return it->second;
}

bool ClusterNode::update_lease(const std::string& id, std::optional<ClusterJobState> state) {
  // One writer of this node's leases at a time (the maintenance thread renews while a
  // coordinator cancels or finishes): two CAS on one revision would make the loser think
  // another node took the job.
  std::lock_guard writer(lease_write_mu_);
  std::optional<Lease> l = lease(id);
  if (!l || l->lost || !ready()) return false;
  if (state) l->record.state = *state;  // a renewal keeps the state as it is now
  ++l->record.beat;
  if (l->record.state == ClusterJobState::kFinished && l->record.finished_at_ms == 0) {
    l->record.finished_at_ms = clock().wall_ms();
  }
  const std::string key = job_kv_key(id);
  auto rev = kv_update(jobs_kv_.get(), key, l->record.to_json(), l->revision);
  bool lost = false;
  if (!rev && rev.error().code == ErrorCode::kExists) {
    // Lost only if the record now names another node.
    auto now = kv_get(jobs_kv_.get(), key);
    if (now && *now) {
      auto r = parse_job_record((*now)->value);
      lost = !r || r->coordinator != node_;
    } else {
      lost = now.has_value();  // deleted
    }
  }
  std::lock_guard lock(mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return false;
  if (rev) {
    it->second.record = l->record;
    it->second.revision = *rev;
    return true;
  }
  if (lost) it->second.lost = true;
  return false;
}

Result<uint64_t> ClusterNode::claim_lease(const JobRecord& record, uint64_t revision) {
  std::lock_guard writer(lease_write_mu_);
  auto rev = revision == 0
                 ? kv_create(jobs_kv_.get(), job_kv_key(record.id), record.to_json())
                 : kv_update(jobs_kv_.get(), job_kv_key(record.id), record.to_json(), revision);
  if (rev) {
    std::lock_guard lock(mu_);
    leases_[record.id] = Lease{record, *rev, false};
  }
  return rev;
}

void ClusterNode::release_lease(const std::string& id, bool delete_record) {
  std::optional<Lease> l = lease(id);
  {
    std::lock_guard lock(mu_);
    leases_.erase(id);
  }
  if (!delete_record || !l || l->lost) return;
  // Only if it is still ours: a changed revision means another node holds it now.
  auto now = kv_get(jobs_kv_.get(), job_kv_key(id));
  if (now && *now && (*now)->revision == l->revision)
    (void)kv_delete(jobs_kv_.get(), job_kv_key(id));
}

void ClusterNode::renew_leases() {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, l] : leases_)
      if (!l.lost) ids.push_back(id);
  }
  for (const std::string& id : ids) {
    std::optional<Lease> l = lease(id);
    if (!l) continue;
    if (!update_lease(id, std::nullopt)) {
      if (std::optional<Lease> after = lease(id); after && after->lost) {
        log_warn("cluster: lost the lease on a job to another node",
                 {{"job", id}, {"node", node_}});
      }
    }
  }
}

void ClusterNode::scan_for_takeovers() {
  const int64_t now = clock().wall_ms();
  const int64_t lease = cluster().lease_ms;
  // A record counts as silent only for time this node watched it without a gap: while the
  // watcher is not current, or this node's own writes fail (JetStream recovering from an outage,
  // when the coordinators' renewals fail too), every record starts its silence afresh.
  std::optional<std::map<std::string, KvMirror::Entry>> all = jobs_mirror_->snapshot();
  if (!all || now - last_kv_write_ms_ > 2 * kBeatMs + 1000) {
    last_scan_ok_ms_ = 0;
    return;
  }
  if (now - last_scan_ok_ms_ > 3 * std::max<int64_t>(lease / 4, 1000)) {
    std::lock_guard lock(mu_);
    seen_.clear();
  }
  last_scan_ok_ms_ = now;
  const int64_t since = connected_since_ms_.load();
  std::map<std::string, Seen> seen;
  for (const auto& [key, entry] : *all) {
    const std::string id = job_id_from_kv_key(key);
    {
      std::lock_guard lock(mu_);
      if (leases_.count(id) != 0 || adopting_.count(id) != 0) continue;  // ours
    }
    Seen s{entry.revision, now};
    {
      std::lock_guard lock(mu_);
      auto it = seen_.find(id);
      if (it != seen_.end() && it->second.revision == s.revision) s.since_ms = it->second.since_ms;
    }
    seen[id] = s;
    auto record = parse_job_record(entry.value);
    if (!record) continue;
    if (record->state == ClusterJobState::kFinished) {
      purge_outcomes(*record, s.revision, now);
      continue;
    }
    // A paused node takes over nothing: the job would sit queued here, its lease renewed, so
    // that no node that runs could take it.
    if (intake_paused_.load()) continue;
    // Silent for a whole lease, and this node was connected all that time to see it renewed.
    if (now - s.since_ms < lease || since < 0 || now - since < lease) continue;
    const std::string from = record->coordinator;
    if (from == node_) continue;  // ours from an earlier run: resumed from active/ at start
    record->coordinator = node_;
    ++record->epoch;
    ++record->beat;
    // The marker first: the job resumes here as a cluster job (journal from the outcome stream).
    if (!mark_cluster_job(id)) continue;
    auto rev = claim_lease(*record, s.revision);
    if (!rev) {
      unmark_cluster_job(id);
      continue;  // another node was quicker
    }
    metrics_.takeovers->Increment();
    log_warn("cluster: taking over a job whose coordinator went silent",
             {{"job", id}, {"from", from}, {"node", node_}});
    {
      std::lock_guard lock(mu_);
      adopting_.insert(id);  // its lease (claim_lease) is renewed meanwhile
    }
    deps_.adopt(*record);
  }
  std::lock_guard lock(mu_);
  seen_ = std::move(seen);
}

void ClusterNode::purge_outcomes(JobRecord record, uint64_t revision, int64_t now_ms) {
  // Kept a while after the job finished, for its coordinator to write the report even if it
  // stopped right after; then removed by whichever node sees it first.
  if (record.outcomes_purged || now_ms - record.finished_at_ms < kOutcomeKeepMs) return;
  if (!purge(names_.outcomes_stream, names_.outcome_subject(record.id))) return;
  record.outcomes_purged = true;
  (void)kv_update(jobs_kv_.get(), job_kv_key(record.id), record.to_json(), revision);
}

void ClusterNode::adoption_failed(const std::string& id) {
  release_lease(id, /*delete_record=*/false);
  {
    std::lock_guard lock(mu_);
    adopting_.erase(id);
  }
  unmark_cluster_job(id);
}

bool ClusterNode::mark_cluster_job(const std::string& id) {
  // Durable before any record names this node: after a crash (of the machine too) the job
  // resumes as a cluster job, never as one of this node alone.
  Status st = write_file_atomic(cluster_marker(id), "", deps_.config.durability_fsync);
  if (!st) {
    log_warn("cluster: cannot mark a job as a cluster job yet",
             {{"job", id}, {"error", st.error().message}});
  }
  return static_cast<bool>(st);
}

void ClusterNode::unmark_cluster_job(const std::string& id) {
  ::unlink(cluster_marker(id).c_str());
}

std::string ClusterNode::cluster_marker(const std::string& id) const {
  return deps_.spool_root + "/cluster/" + id;
}

}  // namespace docpipe
