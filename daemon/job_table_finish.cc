// Finishing jobs (report, manifest, moves out of active/) and the retries of what failed for want
// of space or descriptors: a job is counted (docpipe_jobs_total) only once its outcome is
// recorded, and stays visible as "finishing" until then. See docs/design.md "Crash and fault
// windows".

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>

#include "core/report.h"
#include "core/time_util.h"
#include "daemon/job_retry.h"
#include "daemon/job_table.h"
#include "daemon/log.h"

namespace docpipe {

// What the blocking part of finalize() found, for the loop-thread part.
struct JobTable::Finished {
  JobReport report;
  std::optional<Error> error;  // not recorded: retried
  bool manifest_written = false;
  std::optional<NotifyRecord> notify;  // written to SPOOL/notify/ before the report moved
  // Set when the record could not be written for good: `notify` has every channel failed.
  std::optional<std::string> notify_unrecorded;
};

void JobTable::finalize(std::shared_ptr<DaemonJob> job) {
  DaemonJob::FinishState& fs = job->finish_state();
  fs.finishing = true;
  auto result = std::make_shared<Finished>();
  result->manifest_written = fs.manifest_written;
  deps_.executor.run(
      [spool = &deps_.spool, durable = deps_.durable, reports = deps_.reports, job, result] {
        Status st = job->close_journal();
        JobReport& report = result->report;
        report = job->report();
        if (st && !result->manifest_written) {
          st = job->write_manifest(spool->active_journal(report.id),
                                   spool->active_manifest(report.id));
          // Out of space or descriptors: try again later. Anything else (the journal is gone
          // or unreadable) will not get better: the job fails without its manifest.
          if (!st && is_transient(st.error())) {
            result->error = st.error();
            return;
          }
          result->manifest_written = true;
        }
        if (st && job->lineage() != nullptr) {
          // Before the job leaves active/: a crash until then resumes it, and its finish writes
          // the rows again (docs/design.md "Redo only what changed").
          Status recorded = job->record_lineage(spool->active_manifest(report.id));
          if (!recorded && is_transient(recorded.error())) {
            result->error = recorded.error();
            return;
          }
          if (!recorded) {
            // A damaged store: the job's outcome stands; its documents are redone next time.
            log_error("cannot record the job's outputs in the lineage store",
                      {{"job", report.id}, {"error", recorded.error().message}});
          }
        }
        if (!st) {
          report.state = JobState::kFailed;
          report.reason = st.error().message;
        }
        std::string text = report_to_json(report);
        // The notification's record is durable before the report moves out of active/: a crash
        // in between finishes the job again at the next start, which writes it again.
        if (const std::optional<NotifySpec>& notify = job->spec().notify) {
          if (auto record = make_notify_record(report.id, report.state, *notify, text)) {
            Status stored = store_notify_record(spool->root(), *record, durable);
            if (!stored && is_transient(stored.error())) {
              // A full spool, no descriptors, EIO: the record must be durable before the report
              // moves, so the finish waits for it.
              result->error = stored.error();
              return;
            }
            if (!stored) {
              // A folder that will never take it (not a folder, no permission, read-only): holding
              // the job "finishing" forever would help nobody. It finishes without its
              // notification, and its report says why.
              fail_unrecorded(*record, "cannot record the notification in " +
                                           notify_folder(spool->root()) + ": " +
                                           stored.error().message);
              result->notify_unrecorded = stored.error().message;
              // A record an earlier finish wrote (its move failed) would announce it after all.
              (void)::unlink(notify_record_path(spool->root(), report.id).c_str());
            }
            text = report_with_notify(*record);
            result->notify = std::move(record);
          }
        }
        if (!report.retry_of.empty() && reports != nullptr) {
          // Linked when the retry was accepted already, unless a crash came first (idempotent).
          // Before the retry's own report appears: whoever sees it finds the original linked.
          Status linked =
              link_retry(*reports, report.retry_of, report.id, format_utc(report.submitted_at_ms));
          if (!linked && linked.error().code != ErrorCode::kNotFound) {
            log_warn("cannot link the retry into the original's report",
                     {{"job", report.id},
                      {"retry_of", report.retry_of},
                      {"error", linked.error().message}});
          }
        }
        Status moved = spool->finish(report.id, report.state == JobState::kSucceeded, text);
        if (!moved) {
          result->error = moved.error();
          return;
        }
      },
      [this, job, result] { finalized(job, *result); });
}

void JobTable::finalized(const std::shared_ptr<DaemonJob>& job, const Finished& result) {
  DaemonJob::FinishState& fs = job->finish_state();
  fs.manifest_written = result.manifest_written;
  const JobReport& report = result.report;
  const JobCounts& c = report.counts;
  LogFields fields{{"job", report.id},
                   {"state", job_state_name(report.state)},
                   {"total", std::to_string(c.total)},
                   {"succeeded", std::to_string(c.succeeded)},
                   {"failed", std::to_string(c.failed)},
                   {"skipped", std::to_string(c.skipped)}};
  if (!report.reason.empty()) fields.emplace_back("reason", report.reason);
  if (result.error) {
    // Not recorded, so not counted: the job stays in active/ (and in status, as "finishing"
    // with this error) and finishing is retried until it succeeds.
    ++fs.attempts;
    fs.last_error = result.error->message;
    fields.emplace_back("error", fs.last_error);
    fields.emplace_back("attempt", std::to_string(fs.attempts));
    if (stopping_) {
      log_error("cannot finish job; it stays in active/ and finishes at the next start", fields);
      return;
    }
    uint64_t delay = finish_retry_delay_ms(fs.attempts);
    fields.emplace_back("retry_in_ms", std::to_string(delay));
    // Logged at the first failures and then now and then, not at every retry.
    if (fs.attempts <= 3 || fs.attempts % 10 == 0) {
      log_error("cannot finish job (its report and moves out of active/); retrying", fields);
    }
    retry_later(delay, [this, job] { finalize(job); });
    return;
  }
  running_.erase(report.id);
  jobs_.erase(report.id);
  if (deps_.quotas != nullptr) deps_.quotas->release(report.id);  // its submitter may submit again
  if (result.notify_unrecorded) {
    // Logged here, by the finish that recorded the job: once per job.
    log_error("cannot record the job's notification; the job finishes without it",
              {{"job", report.id},
               {"folder", notify_folder(deps_.spool.root())},
               {"error", *result.notify_unrecorded}});
  }
  // A record whose channels all failed unrecorded is only counted (docpipe_notifications_total).
  if (result.notify && deps_.notify) deps_.notify(*result.notify);
  int64_t start = report.started_at_ms ? report.started_at_ms : report.submitted_at_ms;
  double seconds = static_cast<double>(report.finished_at_ms - report.submitted_at_ms) / 1e3;
  deps_.metrics.job_finished(report.state, seconds);  // recorded: now it counts
  fields.emplace_back("seconds", std::to_string((report.finished_at_ms - start) / 1e3));
  if (fs.attempts > 0) fields.emplace_back("finish_attempts", std::to_string(fs.attempts + 1));
  log_event(report.state == JobState::kSucceeded ? LogLevel::kInfo : LogLevel::kWarn,
            "job finished", fields);
  admit();
}

uint64_t JobTable::finish_retry_delay_ms(int attempts) {
  // 250 ms, 500 ms, 1 s, ... at most kFinishRetryMaxMs apart: space freed is noticed soon,
  // a spool that stays full costs one attempt every few seconds.
  uint64_t delay = kFinishRetryBaseMs << std::min(attempts - 1, 16);
  return std::min<uint64_t>(delay, kFinishRetryMaxMs);
}

void JobTable::retry_later(uint64_t delay_ms, std::function<void()> attempt) {
  retries_.add(std::chrono::milliseconds(delay_ms), std::move(attempt));
}

void JobTable::finish_unresumable(const std::string& id, const FieldErrors& errors, int attempts) {
  auto report = std::make_shared<JobReport>();
  auto error = std::make_shared<std::string>();
  deps_.executor.run(
      [spool = &deps_.spool, durable = deps_.durable, clock = &deps_.clock, id, errors, report,
       error] {
        // Keep what the journal knew: counts, failed documents and the manifest.
        std::string note;
        *report = DaemonJob::unresumable_report(id, spool->active_journal(id),
                                                spool->active_manifest(id), durable, note, *clock);
        report->id = id;
        report->reason = "cannot resume: " + join_field_errors(errors) + "; " + note;
        Status st = spool->finish(id, false, report_to_json(*report));
        if (!st) {
          *error = st.error().message;
          return;
        }
        // A record an earlier finish wrote (its move failed, then the job stopped validating)
        // announces an outcome this job no longer has: unresumable jobs notify nobody.
        if (::unlink(notify_record_path(spool->root(), id).c_str()) != 0 && errno != ENOENT) {
          log_warn("cannot remove a stale notification record",
                   {{"job", id}, {"error", std::strerror(errno)}});
        }
      },
      [this, id, errors, report, error, attempts] {
        if (!error->empty()) {
          log_error("cannot move job to failed/; retrying",
                    {{"job", id}, {"error", *error}, {"attempt", std::to_string(attempts + 1)}});
          if (!stopping_) {
            retry_later(finish_retry_delay_ms(attempts + 1), [this, id, errors, attempts] {
              finish_unresumable(id, errors, attempts + 1);
            });
          }
          return;
        }
        // Counted since its submit when it was accepted but never opened.
        if (deps_.quotas != nullptr) deps_.quotas->release(id);
        deps_.metrics.job_finished(JobState::kFailed, 0);
        log_warn("job failed", {{"job", id}, {"reason", report->reason}});
      });
}

void JobTable::resume_later(const std::string& id, int attempts) {
  if (stopping_) return;  // it stays in active/ and is resumed at the next start
  retry_later(finish_retry_delay_ms(attempts), [this, id, attempts] { reopen_now(id, attempts); });
}

void JobTable::reopen_now(const std::string& id, int attempts) {
  auto reopened = std::make_shared<ReopenedJob>();
  deps_.executor.run(
      [reopen = deps_.reopen, id, reopened] { *reopened = reopen(id); },
      [this, id, reopened, attempts] {
        if (reopened->job) {
          log_info(
              "job resumed",
              {{"job", id}, {"already_done", std::to_string(reopened->job->resumed_documents())}});
          enqueue(std::move(reopened->job));
        } else if (reopened->unresumable) {
          finish_unresumable(id, reopened->errors);
        } else {
          if (attempts <= 3 || attempts % 10 == 0) {
            log_error(
                "cannot open job; retrying",
                {{"job", id}, {"error", reopened->message}, {"attempt", std::to_string(attempts)}});
          }
          resume_later(id, attempts + 1);
        }
      });
}

}  // namespace docpipe
