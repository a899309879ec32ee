#include "pipeline/scheduler.h"

#include <algorithm>

namespace docpipe {

ScheduledJob::ScheduledJob(std::shared_ptr<PipelineJob> job)
    : job_(std::move(job)), spec_(job_->spec()), commands_(spec_.chain->commands()) {}

Scheduler::Scheduler(const Clock& clock, size_t walk_ahead, CommandBreakers* breakers)
    : clock_(clock), walk_ahead_(walk_ahead == 0 ? 1 : walk_ahead), breakers_(breakers) {
  if (breakers_ == nullptr) return;
  // Called outside the breakers' lock; taking mu_ here orders the change before a reader's
  // next look, so a reader about to wait cannot miss it.
  breakers_subscription_ = breakers_->subscribe([this](const BreakerTransition&) {
    {
      std::lock_guard lock(mu_);
      gates_changed_ = true;
    }
    cv_.notify_all();
  });
}

Scheduler::~Scheduler() {
  if (breakers_ != nullptr) breakers_->unsubscribe(breakers_subscription_);
}

// nullopt: the job's documents may go now; else when to look again (max(): at a state change).
std::optional<Clock::time_point> Scheduler::gate_locked(const ScheduledJob& job) const {
  if (breakers_ == nullptr) return std::nullopt;
  std::optional<Clock::time_point> until;
  for (const std::string& command : job.commands_) {
    if (auto t = breakers_->blocked_until(command)) until = until ? std::min(*until, *t) : *t;
  }
  return until;
}

// Held documents go back among the retries when a breaker changed, the earliest open period is
// over, or they are to be cut (cancel, stop): the next look hands them out or holds them again.
void Scheduler::release_held_locked() {
  if (held_.empty()) {
    gates_changed_ = false;
    held_wake_ = Clock::time_point::max();
    return;
  }
  if (!gates_changed_ && !stopped_ && clock_.now() < held_wake_) return;
  for (auto& [due, doc] : held_) {
    const bool cut = stopped_ || doc.job->cancelled();
    retries_.emplace(cut ? Clock::time_point::min() : due, std::move(doc));
  }
  held_.clear();
  held_wake_ = Clock::time_point::max();
  gates_changed_ = false;
}

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

// Retries first: they were admitted before anything still waiting in a job.
// A due retry whose job a breaker holds back moves to held_ instead.
std::optional<ScheduledDocument> Scheduler::take_retry_locked() {
  release_held_locked();
  const Clock::time_point now = clock_.now();
  for (auto it = retries_.begin(); it != retries_.end();) {
    ScheduledDocument& doc = it->second;
    const bool cut = stopped_ || doc.job->cancelled();
    if (!cut && it->first > now) return std::nullopt;
    if (!cut) {
      if (std::optional<Clock::time_point> until = gate_locked(*doc.job)) {
        held_.emplace_back(it->first, std::move(doc));
        held_wake_ = std::min(held_wake_, *until);
        it = retries_.erase(it);
        continue;
      }
    }
    ScheduledDocument out = std::move(doc);
    out.cancelled = out.cancelled || cut;  // cut: stays cut
    retries_.erase(it);
    return out;
  }
  return std::nullopt;
}

// The job whose turn it is: the first in the highest-priority ring that a breaker does not hold
// back, taken out of its ring and marked as being pulled. Null when no job can be pulled now;
// `gate_wake` is then the earliest time a held-back job may go.
std::shared_ptr<ScheduledJob> Scheduler::start_pull_locked(Clock::time_point& gate_wake) {
  for (auto ring_it = rings_.begin(); ring_it != rings_.end();) {
    auto& ring = ring_it->second;
    for (auto it = ring.begin(); it != ring.end();) {
      if ((*it)->cancelled()) {
        it = ring.erase(it);  // cancel() settled it, or the one who completes it will
        continue;
      }
      if (std::optional<Clock::time_point> until = gate_locked(**it)) {
        gate_wake = std::min(gate_wake, *until);  // stays in its ring, its turn kept
        ++it;
        continue;
      }
      std::shared_ptr<ScheduledJob> job = std::move(*it);
      ring.erase(it);
      job->pulling_ = true;
      return job;
    }
    if (ring.empty()) {
      ring_it = rings_.erase(ring_it);
    } else {
      ++ring_it;
    }
  }
  return nullptr;
}

// Walks up to walk_ahead_ documents of the job, without the lock; stops early once the walk
// has taken kWalkAheadTime (a slow folder) or the job is cancelled.
std::vector<DocumentRef> Scheduler::walk(ScheduledJob& job, bool& exhausted) {
  std::vector<DocumentRef> walked;
  const Clock::time_point start = clock_.now();
  exhausted = false;
  while (walked.size() < walk_ahead_) {
    std::optional<DocumentRef> ref = job.job().next_document();
    if (!ref) {
      exhausted = true;
      break;
    }
    walked.push_back(std::move(*ref));
    if (job.cancelled() || clock_.now() - start >= kWalkAheadTime) break;
  }
  return walked;
}

// A document leaves the scheduler: it is in flight until complete(). The job goes to the back
// of its ring (round-robin) while it may yield more.
ScheduledDocument Scheduler::hand_out_locked(const std::shared_ptr<ScheduledJob>& job,
                                             DocumentRef doc) {
  job->pulling_ = false;
  ++job->in_flight_;
  ++in_flight_;
  // A job that stopped taking documents on its own yields nothing more (its next_document()
  // says so too): what it had walked ahead is not processed.
  const bool stopped_taking = !job->job().taking_documents();
  if (stopped_taking) job->exhausted_ = true;
  const bool cut = stopped_ || job->cancelled() || stopped_taking;
  if (cut) {
    cut_walked_ahead_locked(job);
  } else if (!job->exhausted_ || !job->walked_ahead_.empty()) {
    rings_[job->spec().priority].push_back(job);
    // A reader may be waiting because this job was the only one with documents left.
    if (waiting_ > 0) cv_.notify_one();
  }
  return ScheduledDocument{job, std::move(doc), 1, cut};
}

// The documents a cancelled job (or a stopped scheduler) had walked ahead were taken from the
// job all the same: they are handed out as cancelled, like due retries, to be completed.
void Scheduler::cut_walked_ahead_locked(const std::shared_ptr<ScheduledJob>& job) {
  if (job->walked_ahead_.empty()) return;
  for (DocumentRef& doc : job->walked_ahead_) {
    ++job->in_flight_;
    ++in_flight_;
    retries_.emplace(Clock::time_point::min(), ScheduledDocument{job, std::move(doc), 1, true});
  }
  job->walked_ahead_.clear();
  if (waiting_ > 0) cv_.notify_all();
}

// Settles a walk that ran without the lock. The job may have been cancelled, or the scheduler
// stopped, meanwhile: the documents it yielded were taken from the job all the same, so they are
// handed out as cancelled to be completed like any other.
std::optional<ScheduledDocument> Scheduler::end_pull_locked(
    const std::shared_ptr<ScheduledJob>& job, std::vector<DocumentRef> walked, bool exhausted,
    JobList& finished) {
  job->pulling_ = false;
  if (exhausted) job->exhausted_ = true;
  if (walked.empty()) {
    if (may_finish_locked(*job)) finish_locked(job, finished);
    return std::nullopt;
  }
  for (size_t i = 1; i < walked.size(); ++i) job->walked_ahead_.push_back(std::move(walked[i]));
  return hand_out_locked(job, std::move(walked.front()));
}

// A job finishes once it can yield nothing more (exhausted or cancelled), nothing of it is in
// flight, and no reader is in its walk. An interrupted job never finishes: it resumes later.
bool Scheduler::may_finish_locked(const ScheduledJob& job) const {
  return job.in_flight_ == 0 && !job.finished_ && !job.interrupted_ && !job.pulling_ &&
         job.walked_ahead_.empty() && (job.exhausted_ || job.cancelled());
}

std::optional<ScheduledDocument> Scheduler::next(bool* would_wait) {
  std::unique_lock lock(mu_);
  JobList finished;
  for (;;) {
    finished.insert(finished.end(), to_finish_.begin(), to_finish_.end());
    to_finish_.clear();
    std::optional<ScheduledDocument> doc = take_retry_locked();
    Clock::time_point gate_wake = Clock::time_point::max();
    if (!doc && !stopped_) {
      if (std::shared_ptr<ScheduledJob> job = start_pull_locked(gate_wake)) {
        if (!job->walked_ahead_.empty()) {
          DocumentRef ref = std::move(job->walked_ahead_.front());
          job->walked_ahead_.pop_front();
          doc = hand_out_locked(job, std::move(ref));
        } else {
          lock.unlock();
          call_job_finished(finished);
          finished.clear();
          bool exhausted = false;
          std::vector<DocumentRef> walked = walk(*job, exhausted);
          lock.lock();
          doc = end_pull_locked(job, std::move(walked), exhausted, finished);
          if (!doc) continue;  // exhausted: try the next job
        }
      }
    }
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
    if (would_wait != nullptr) {
      *would_wait = true;
      return std::nullopt;
    }
    ++waiting_;
    // A copy: the entry may be taken by another reader while this one waits.
    Clock::time_point due = std::min(gate_wake, held_wake_);
    if (!retries_.empty()) due = std::min(due, retries_.begin()->first);
    if (due == Clock::time_point::max()) {
      cv_.wait(lock);  // until add_job(), a retry, a breaker's change, cancel or stop
    } else {
      clock_.wait_until(cv_, lock, due);
    }
    --waiting_;
  }
}

void Scheduler::complete(const std::shared_ptr<ScheduledJob>& job, DocumentOutcome outcome) {
  const bool cut = outcome.state == DocumentState::kCancelled;
  job->job().document_finished(std::move(outcome));
  completed(job, 1, cut);
}

void Scheduler::complete_all(const std::shared_ptr<ScheduledJob>& job,
                             std::vector<DocumentOutcome> outcomes) {
  const size_t n = outcomes.size();
  if (n == 0) return;
  const bool cut = std::any_of(outcomes.begin(), outcomes.end(), [](const DocumentOutcome& o) {
    return o.state == DocumentState::kCancelled;
  });
  job->job().documents_finished(std::move(outcomes));
  completed(job, n, cut);
}

void Scheduler::completed(const std::shared_ptr<ScheduledJob>& job, size_t documents, bool cut) {
  JobList finished;
  {
    std::lock_guard lock(mu_);
    job->in_flight_ -= documents;
    in_flight_ -= documents;
    // A document cut by a stop (a retry, one walked ahead, one refused or stopped mid-way), not
    // by its job's cancel: the job must not finish without it, or a job whose walk was done would
    // be reported as if the document never existed. It resumes later. The one rule for every way
    // a stop cuts a document.
    if (cut && stopped_ && !job->cancelled()) job->interrupted_ = true;
    // A stopped pipeline still finishes a job that ran out of documents on its own, but not one
    // that was merely interrupted.
    if (may_finish_locked(*job)) finish_locked(job, finished);
    finished.insert(finished.end(), to_finish_.begin(), to_finish_.end());
    to_finish_.clear();
    if (in_flight_ == 0 && draining_ > 0) cv_.notify_all();
  }
  call_job_finished(finished);
}

bool Scheduler::retry(ScheduledDocument& doc, Clock::duration delay) {
  {
    std::lock_guard lock(mu_);
    // Cannot come back: the caller completes it as cancelled (completed() then keeps its job
    // from finishing if a stop cut it).
    if (stopped_ || doc.job->cancelled()) return false;
    ++doc.attempt;
    retries_.emplace(clock_.now() + delay, std::move(doc));
  }
  // Every reader may be waiting with a later (or no) deadline.
  cv_.notify_all();
  return true;
}

bool Scheduler::wait_for_command(ScheduledDocument& doc) {
  {
    std::lock_guard lock(mu_);
    // Cannot come back: the caller completes it as cancelled (completed() then keeps its job
    // from finishing if a stop cut it).
    if (stopped_ || doc.job->cancelled()) return false;
    // Due now: the next look holds it back while the breaker does, or hands it out if the
    // breaker let documents through meanwhile. No attempt is charged.
    retries_.emplace(clock_.now(), std::move(doc));
  }
  cv_.notify_all();
  return true;
}

size_t Scheduler::documents_waiting_for_commands() const {
  std::lock_guard lock(mu_);
  return held_.size();
}

bool Scheduler::cancel(const std::string& id) {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return false;
    bool found = false;
    // Every job of that id: a cluster node runs one job's documents as several batches.
    for (const std::shared_ptr<ScheduledJob>& job : std::vector(jobs_)) {
      if (job->spec().id != id) continue;
      found = true;
      if (job->cancelled()) continue;
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
      // Those a breaker holds back too (release_held_locked cuts them).
      if (!held_.empty()) gates_changed_ = true;
      cut_walked_ahead_locked(job);
      // A reader in the job's walk settles it when the walk returns.
      if (may_finish_locked(*job)) finish_locked(job, to_finish_);
    }
    if (!found) return false;
  }
  cv_.notify_all();
  return true;
}

void Scheduler::stop() {
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
    // Documents jobs took and will not process are handed out as cut; completed() keeps their
    // jobs from finishing.
    for (const auto& job : jobs_) cut_walked_ahead_locked(job);
  }
  cv_.notify_all();
}

void Scheduler::interrupt() {
  std::lock_guard lock(mu_);
  for (const auto& job : jobs_) {
    job->interrupted_ = true;
    job->cancelled_.store(true, std::memory_order_release);
    cut_walked_ahead_locked(job);  // none after stop(), which cut them already
  }
}

bool Scheduler::wait_drained(Clock::time_point deadline) {
  std::unique_lock lock(mu_);
  ++draining_;
  while (in_flight_ > 0 && clock_.now() < deadline) clock_.wait_until(cv_, lock, deadline);
  --draining_;
  return in_flight_ == 0;
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
