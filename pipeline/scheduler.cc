#include "pipeline/scheduler.h"

#include <algorithm>

namespace docpipe {

ScheduledJob::ScheduledJob(std::shared_ptr<PipelineJob> job)
    : job_(std::move(job)), spec_(job_->spec()) {}

void Scheduler::add_job(std::shared_ptr<PipelineJob> job) {
  auto entry = std::make_shared<ScheduledJob>(std::move(job));
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;  // dropped, like every job still in a stopped pipeline
    jobs_.push_back(entry);
    rings_[entry->spec().priority].push_back(entry);
  }
  cv_.notify_all();
}

void Scheduler::finish_locked(const std::shared_ptr<ScheduledJob>& job, JobList& finished) {
  job->finished_ = true;
  jobs_.erase(std::find(jobs_.begin(), jobs_.end(), job));
  finished.push_back(job);
}

void Scheduler::call_job_finished(const JobList& finished) {
  for (const auto& job : finished) job->job().job_finished(job->cancelled());
}

std::optional<ScheduledDocument> Scheduler::pick_locked(JobList& finished) {
  finished.insert(finished.end(), to_finish_.begin(), to_finish_.end());
  to_finish_.clear();

  // Retries first: they were admitted before anything still waiting in a job.
  if (!retries_.empty()) {
    auto it = retries_.begin();
    ScheduledDocument& doc = it->second;
    if (stopped_ || doc.job->cancelled() || it->first <= Clock::now()) {
      ScheduledDocument out = std::move(doc);
      out.cancelled = stopped_ || out.job->cancelled();
      retries_.erase(it);
      return out;
    }
  }
  if (stopped_) return std::nullopt;

  for (auto ring_it = rings_.begin(); ring_it != rings_.end();) {
    auto& ring = ring_it->second;
    while (!ring.empty()) {
      std::shared_ptr<ScheduledJob> job = std::move(ring.front());
      ring.pop_front();
      if (job->cancelled()) continue;  // cancel() already settled it
      std::optional<DocumentRef> doc = job->job().next_document();
      if (doc) {
        ++job->in_flight_;
        ++in_flight_;
        ring.push_back(job);  // to the back of its ring: round-robin
        return ScheduledDocument{std::move(job), std::move(*doc), 1, false};
      }
      job->exhausted_ = true;
      if (job->in_flight_ == 0) finish_locked(job, finished);
    }
    ring_it = rings_.erase(ring_it);
  }
  return std::nullopt;
}

std::optional<ScheduledDocument> Scheduler::next() {
  std::unique_lock lock(mu_);
  JobList finished;
  for (;;) {
    std::optional<ScheduledDocument> doc = pick_locked(finished);
    if (!finished.empty()) {
      lock.unlock();
      call_job_finished(finished);
      finished.clear();
      if (doc) return doc;
      lock.lock();
      continue;  // the world may have changed while the lock was released
    }
    if (doc) return doc;
    if (stopped_) return std::nullopt;
    if (retries_.empty()) {
      cv_.wait(lock);
    } else {
      // A copy: the entry may be taken by another reader while this one waits.
      const Clock::time_point due = retries_.begin()->first;
      cv_.wait_until(lock, due);
    }
  }
}

void Scheduler::complete(const std::shared_ptr<ScheduledJob>& job, DocumentOutcome outcome) {
  job->job().document_finished(std::move(outcome));
  JobList finished;
  {
    std::lock_guard lock(mu_);
    --job->in_flight_;
    --in_flight_;
    // A stopped pipeline still finishes a job that ran out of documents on its own, but not one
    // that was merely interrupted.
    if (job->in_flight_ == 0 && !job->finished_ && !job->interrupted_ &&
        (job->exhausted_ || job->cancelled())) {
      finish_locked(job, finished);
    }
    finished.insert(finished.end(), to_finish_.begin(), to_finish_.end());
    to_finish_.clear();
  }
  call_job_finished(finished);
}

bool Scheduler::retry(ScheduledDocument& doc, Clock::duration delay) {
  {
    std::lock_guard lock(mu_);
    if (stopped_ || doc.job->cancelled()) return false;
    ++doc.attempt;
    retries_.emplace(Clock::now() + delay, std::move(doc));
  }
  // Every reader may be waiting with a later (or no) deadline.
  cv_.notify_all();
  return true;
}

bool Scheduler::cancel(const std::string& id) {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return false;
    auto it = std::find_if(jobs_.begin(), jobs_.end(),
                           [&](const auto& job) { return job->spec().id == id; });
    if (it == jobs_.end()) return false;
    std::shared_ptr<ScheduledJob> job = *it;
    if (job->cancelled()) return true;
    job->cancelled_.store(true, std::memory_order_release);
    // Its pending retries become due now, so a reader completes them as cancelled at once.
    std::vector<ScheduledDocument> pending;
    for (auto r = retries_.begin(); r != retries_.end();) {
      if (r->second.job == job) {
        pending.push_back(std::move(r->second));
        r = retries_.erase(r);
      } else {
        ++r;
      }
    }
    for (auto& doc : pending) retries_.emplace(Clock::time_point::min(), std::move(doc));
    if (job->in_flight_ == 0) finish_locked(job, to_finish_);
  }
  cv_.notify_all();
  return true;
}

void Scheduler::stop() {
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
}

void Scheduler::interrupt() {
  std::lock_guard lock(mu_);
  for (const auto& job : jobs_) {
    job->interrupted_ = true;
    job->cancelled_.store(true, std::memory_order_release);
  }
}

size_t Scheduler::documents_in_flight() const {
  std::lock_guard lock(mu_);
  return in_flight_;
}

size_t Scheduler::job_count() const {
  std::lock_guard lock(mu_);
  return jobs_.size();
}

}  // namespace docpipe
