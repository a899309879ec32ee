// The job table's queue, admission, cancel and status; finishing is in job_table_finish.cc.

#include "daemon/job_table.h"

#include <algorithm>

#include "core/time_util.h"
#include "daemon/log.h"
#include "daemon/peer_credentials.h"

namespace docpipe {

JobTable::JobTable(Deps deps, JobTableLimits limits)
    : deps_(std::move(deps)),
      limits_(std::move(limits)),
      retries_(deps_.clock, deps_.retry_timer) {}

void JobTable::enqueue(std::shared_ptr<DaemonJob> job) {
  if (deps_.quotas != nullptr) {
    // A new job was reserved before its admission already (a no-op then); a resumed, reopened
    // or adopted one was accepted before and is counted whatever the cap.
    const auto& submitter = job->spec().submitter;
    deps_.quotas->hold(job->spec().id, submitter ? submitter->uid : 0);
  }
  jobs_[job->spec().id] = job;
  queued_.push_back(std::move(job));
  admit();
}

void JobTable::admit() {
  while (!stopping_ && !pause_ && running_.size() < static_cast<size_t>(limits_.max_active_jobs) &&
         !queued_.empty()) {
    // Highest priority first; among equals, the earliest queued (stable).
    auto best = std::max_element(queued_.begin(), queued_.end(), [](const auto& a, const auto& b) {
      return a->spec().priority < b->spec().priority;
    });
    std::shared_ptr<DaemonJob> job = *best;
    queued_.erase(best);
    running_.insert(job->spec().id);
    job->mark_started(deps_.clock.wall_ms());
    log_info("job started", {{"job", job->spec().id}});
    deps_.work.add_job(job);
  }
  update_gauges();
}

void JobTable::update_gauges() {
  deps_.metrics.jobs_active().Set(static_cast<double>(running_.size()));
  deps_.metrics.jobs_queued().Set(static_cast<double>(queued_.size()));
}

void JobTable::post_finished(DaemonJob* job) {
  {
    std::lock_guard<std::mutex> lock(finished_mu_);
    finished_.push_back(job);
  }
  if (deps_.wake) deps_.wake();
}

void JobTable::drain_finished() {
  // The wake-up coalesces (uv_async_send): take everything queued so far.
  std::vector<DaemonJob*> batch;
  {
    std::lock_guard<std::mutex> lock(finished_mu_);
    batch.swap(finished_);
  }
  for (DaemonJob* raw : batch) {
    auto it = jobs_.find(raw->spec().id);
    if (it == jobs_.end() || it->second.get() != raw) continue;
    finalize(it->second);
  }
}

JobTable::CancelOutcome JobTable::cancel(const std::string& id, const Credentials& peer) {
  auto it = jobs_.find(id);
  if (it == jobs_.end() || !can_see(it->second->spec().submitter, peer)) {
    return CancelOutcome::kNoSuchJob;
  }
  std::shared_ptr<DaemonJob> job = it->second;
  job->request_cancel("cancelled by request");
  log_info("job cancel requested", {{"job", id}, {"uid", std::to_string(peer.uid)}});
  auto queued = std::find(queued_.begin(), queued_.end(), job);
  if (queued != queued_.end()) {
    // Never admitted: it finishes at once, with nothing done.
    queued_.erase(queued);
    update_gauges();
    job->job_finished(true);
    return CancelOutcome::kCancelled;
  }
  // Running: the work queue takes no more of its documents; those in flight finish (or are
  // cancelled) and job_finished() follows.
  deps_.work.cancel_job(id);
  return CancelOutcome::kCancelling;
}

void JobTable::set_limits(JobTableLimits limits) {
  limits_ = std::move(limits);
  admit();  // max_active_jobs may have grown
}

void JobTable::set_pause(std::optional<IntakePause> pause) {
  pause_ = std::move(pause);
  deps_.metrics.intake_paused().Set(pause_ ? 1 : 0);
  deps_.work.set_intake_paused(pause_.has_value());
  admit();
}

bool JobTable::is_admin(const Credentials& peer) const {
  return docpipe::is_admin(peer, limits_.admin_gid);
}

void JobTable::begin_stopping() { stopping_ = true; }

void JobTable::finish_stopping() {
  stopping_ = true;
  drain_finished();  // jobs that finished while stopping still get their report
  retries_.clear();  // what is left finishes at the next start
}

bool JobTable::can_see(const std::optional<Credentials>& submitter, const Credentials& peer) const {
  if (is_admin(peer)) return true;
  // Jobs of root (no submitter) are root's: only admins see them.
  return submitter && submitter->uid == peer.uid;
}

std::optional<nlohmann::json> JobTable::status_of(const std::string& id,
                                                  const Credentials& peer) const {
  auto it = jobs_.find(id);
  if (it == jobs_.end() || !can_see(it->second->spec().submitter, peer)) return std::nullopt;
  return job_status(*it->second);
}

nlohmann::json JobTable::visible_jobs(const Credentials& peer) const {
  nlohmann::json jobs = nlohmann::json::array();
  for (const auto& [id, job] : jobs_) {
    if (can_see(job->spec().submitter, peer)) jobs.push_back(job_status(*job));
  }
  return jobs;
}

std::optional<std::string> JobTable::retry_in_table(const std::string& original) const {
  for (const auto& [id, job] : jobs_) {
    if (job->spec().retry_of == original) return id;
  }
  return std::nullopt;
}

nlohmann::json JobTable::job_status(const DaemonJob& job) const {
  JobReport r = job.report();
  const JobCounts& c = r.counts;
  uint64_t done = c.succeeded + c.failed + c.skipped;
  bool running = running_.count(r.id) != 0;
  double elapsed =
      r.started_at_ms ? static_cast<double>(deps_.clock.wall_ms() - r.started_at_ms) / 1e3 : 0;
  double rate = running && elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
  const char* state = running ? "running" : "queued";
  if (job.finish_state().finishing) state = "finishing";  // waiting to write its report
  nlohmann::json j{{"id", r.id},
                   {"state", state},
                   {"priority", job.spec().priority},
                   {"total", c.total},
                   {"done", done},
                   {"succeeded", c.succeeded},
                   {"failed", c.failed},
                   {"skipped", c.skipped},
                   {"bytes_in", c.bytes_in},
                   {"bytes_out", c.bytes_out},
                   {"documents_per_second", rate},
                   {"submitted_at", format_utc(r.submitted_at_ms)}};
  if (rate > 0 && c.total > done) j["eta_seconds"] = static_cast<double>(c.total - done) / rate;
  if (!r.reason.empty()) j["reason"] = r.reason;
  if (!r.retry_of.empty()) j["retry_of"] = r.retry_of;
  if (!job.finish_state().last_error.empty()) j["error"] = job.finish_state().last_error;
  j["submitter_uid"] = job.spec().submitter ? job.spec().submitter->uid : 0;
  // A cluster node: which node coordinates it (this one) and whether it is spread.
  nlohmann::json extra = deps_.work.job_status(r.id);
  if (extra.is_object()) j.update(extra);
  return j;
}

bool JobTable::busy() const {
  // A job waiting to finish (spool full) waits for space, not for the work queue: not a stall.
  // Nor is a job queued on purpose while intake is paused: it waits for an operator.
  return std::any_of(jobs_.begin(), jobs_.end(), [this](const auto& j) {
    if (j.second->finish_state().finishing) return false;
    return !pause_ || running_.count(j.first) != 0;
  });
}

int64_t JobTable::longest_document_timeout_ms() const {
  int64_t longest = 0;
  for (const auto& [id, job] : jobs_)
    longest = std::max(longest, job->spec().limits.document_timeout_ms);
  return longest;
}

}  // namespace docpipe
