#pragma once
// Scheduler: the set of jobs in the pipeline and the order their documents go in.
//
// Readers call next(): the highest priority first, round-robin among jobs of equal priority, so a
// one-document job added behind a million-document batch waits for one document of it, not all.
// The scheduler counts each job's documents in flight (taken and not yet completed, including
// those waiting for a retry) and calls job_finished() exactly once, outside its lock, when the job
// is exhausted or cancelled and its last document has completed. Every call into a PipelineJob
// happens on the thread of a reader or of a stage completing a document, never the caller of
// add_job()/cancel(): those come from the daemon's loop thread, which must not block on a readdir.
//
// A job's walk (next_document()) runs without the lock: a folder of many files, slow storage or
// costly globs then hold up only the reader walking that job, never cancel(), add_job() or the
// other jobs' documents. The job is marked as being pulled meanwhile, so no two readers walk it at
// once, and it leaves its ring until the walk returns: other readers serve the next job in turn,
// also one of lower priority (priority orders the jobs that can yield a document now).
//
// Retry due times are read from the Clock the scheduler is given, and a reader waits for the
// earliest through Clock::wait_until: with a FakeClock, a test moves a retry to due by hand.
//
// Circuit breakers (core/command_breaker.h): a job whose chain runs an external command whose
// breaker is open is passed over: none of its documents is taken, and its due retries are held
// back, until the breaker lets documents through again (its open period is over, or it closed).
// Waiting so, a document holds no slot and no budget, is not running (document_timeout_ms does
// not count) and is charged no attempt; cancel() and stop() hand it out as cancelled at once.
// A document the command refused after all (the breaker opened while it was on its way) comes
// back through wait_for_command() and waits the same way.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/command_breaker.h"
#include "pipeline/pipeline_job.h"

namespace docpipe {

// A job as the scheduler tracks it. Stages read cancelled() without the lock to drop work early.
class ScheduledJob {
 public:
  explicit ScheduledJob(std::shared_ptr<PipelineJob> job);
  PipelineJob& job() const { return *job_; }
  const JobSpec& spec() const { return spec_; }
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

 private:
  friend class Scheduler;
  std::shared_ptr<PipelineJob> job_;
  const JobSpec& spec_;
  const std::vector<std::string> commands_;  // external commands its chain runs
  std::atomic<bool> cancelled_{false};
  // Guarded by Scheduler::mu_.
  bool interrupted_ = false;  // by interrupt(): never finished, so that it resumes later
  size_t in_flight_ = 0;
  bool exhausted_ = false;
  bool finished_ = false;
  // A reader is in next_document() without the lock: the job is in no ring, and nothing but that
  // reader may finish it.
  bool pulling_ = false;
  // Documents a walk took ahead (fewer than the scheduler's walk_ahead), handed out before the next
  // walk; each is "taken" from the job and so gets its outcome like any other.
  std::deque<DocumentRef> walked_ahead_;
};

struct ScheduledDocument {
  std::shared_ptr<ScheduledJob> job;
  DocumentRef doc;
  int attempt = 1;
  // The job was cancelled (or the pipeline stopped) while this document waited for a retry:
  // complete it as kCancelled without touching it.
  bool cancelled = false;
};

class Scheduler {
 public:
  // A reader walks up to walk_ahead documents of a job at once (fewer once the walk has taken
  // kWalkAheadTime, or the job is cancelled): with one document per walk, readers sharing one
  // job took turns in its walk and woke each other for every document (a futex wait and wake
  // each, issue 12's profile). The documents walked ahead are handed out before the job's next
  // walk, in turn with other jobs as before; a cancel or stop, or a job that stopped taking
  // documents (PipelineJob::taking_documents), hands them out as cancelled.
  static constexpr size_t kWalkAhead = 16;
  static constexpr std::chrono::milliseconds kWalkAheadTime{2};

  // `clock` and `breakers` (null: none) must outlive the scheduler.
  explicit Scheduler(const Clock& clock = system_clock(), size_t walk_ahead = kWalkAhead,
                     CommandBreakers* breakers = nullptr);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Never calls into the job; a reader discovers its documents (or that it has none) in next().
  void add_job(std::shared_ptr<PipelineJob> job);

  // The next document to process: a retry that is due, else a new document. Blocks while there is
  // none, until add_job(), a retry falling due, or stop(); nullopt once stopped and drained.
  // With `would_wait`, returns nullopt and sets it instead of blocking (a reader that holds
  // documents of its own writes them first: see read_stage.cc).
  std::optional<ScheduledDocument> next(bool* would_wait = nullptr);

  // Reports a document's final outcome to its job, then finishes the job if that was its last.
  void complete(const std::shared_ptr<ScheduledJob>& job, DocumentOutcome outcome);
  // The same for several documents of one job (PipelineJob::documents_finished).
  void complete_all(const std::shared_ptr<ScheduledJob>& job,
                    std::vector<DocumentOutcome> outcomes);

  // Hands a document back for another attempt after `delay` (it stays in flight meanwhile).
  // Returns false, leaving `doc` untouched, if the job was cancelled or the scheduler stopped:
  // then the caller completes it (after a stop, its job then never finishes: see stop()).
  bool retry(ScheduledDocument& doc, Clock::duration delay);

  // Hands back a document that a command's breaker refused (ErrorCode::kUnavailable): it waits,
  // charged no attempt, until the breakers of its job's commands let documents through. Returns
  // false, leaving `doc` untouched, if the job was cancelled or the scheduler stopped.
  bool wait_for_command(ScheduledDocument& doc);

  // Due documents held back by a breaker now (for tests and status).
  size_t documents_waiting_for_commands() const;

  // Takes no more documents from the job (every job of that id) and hands its pending retries out
  // as cancelled; the job finishes (job_finished(true)) when its documents in flight have
  // completed. False if no such job is running, or once stop() was called.
  bool cancel(const std::string& id);

  // next() takes no new documents from then on; jobs that have not finished are dropped without
  // job_finished(). Pending retries, documents waiting on a breaker and documents walked ahead
  // are handed out as cancelled so they are still completed; their jobs are then never finished
  // (as after interrupt()), so that they resume later with those documents.
  void stop();

  // After stop(): documents still in flight are cut short (completed as kCancelled at their next
  // check) and their jobs are never finished, so they stay resumable. For the end of a shutdown's
  // grace period.
  void interrupt();

  // Blocks until no document is in flight or `clock` reaches `deadline`; true if none is in
  // flight. For stop()'s grace: woken by the completion of the last document, not by polling.
  bool wait_drained(Clock::time_point deadline);

  size_t documents_in_flight() const;
  size_t job_count() const;  // jobs added and not yet finished

 private:
  using JobList = std::vector<std::shared_ptr<ScheduledJob>>;

  std::optional<ScheduledDocument> take_retry_locked();
  std::shared_ptr<ScheduledJob> start_pull_locked(Clock::time_point& gate_wake);
  std::optional<Clock::time_point> gate_locked(const ScheduledJob& job) const;
  void release_held_locked();
  std::vector<DocumentRef> walk(ScheduledJob& job, bool& exhausted);
  std::optional<ScheduledDocument> end_pull_locked(const std::shared_ptr<ScheduledJob>& job,
                                                   std::vector<DocumentRef> walked, bool exhausted,
                                                   JobList& finished);
  ScheduledDocument hand_out_locked(const std::shared_ptr<ScheduledJob>& job, DocumentRef doc);
  void cut_walked_ahead_locked(const std::shared_ptr<ScheduledJob>& job);
  bool may_finish_locked(const ScheduledJob& job) const;
  // `cut`: one of them is cancelled (see the .cc: a stop's cut keeps the job from finishing).
  void completed(const std::shared_ptr<ScheduledJob>& job, size_t documents, bool cut);
  void finish_locked(const std::shared_ptr<ScheduledJob>& job, JobList& finished);
  static void call_job_finished(const JobList& finished);

  const Clock& clock_;
  const size_t walk_ahead_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<ScheduledJob>> jobs_;  // not yet finished
  // Jobs that may still yield documents, by priority (highest first), each a round-robin ring.
  std::map<int, std::deque<std::shared_ptr<ScheduledJob>>, std::greater<int>> rings_;
  std::multimap<Clock::time_point, ScheduledDocument> retries_;  // by due time
  // Due retries held back by a breaker, with their due times; looked at again when a breaker
  // changes state (gates_changed_) or at held_wake_ (the earliest open period's end).
  std::vector<std::pair<Clock::time_point, ScheduledDocument>> held_;
  Clock::time_point held_wake_ = Clock::time_point::max();
  bool gates_changed_ = false;
  CommandBreakers* const breakers_;
  uint64_t breakers_subscription_ = 0;
  JobList to_finish_;  // finished under the lock by cancel(); job_finished() not yet called
  size_t in_flight_ = 0;
  size_t waiting_ = 0;   // readers blocked in next()
  size_t draining_ = 0;  // callers blocked in wait_drained()
  bool stopped_ = false;
};

}  // namespace docpipe
