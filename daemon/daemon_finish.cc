// Finishing jobs (report, manifest, moves out of active/) and the retries of what failed for want
// of space or descriptors: a job is counted (docpipe_jobs_total) only once its outcome is
// recorded, and stays visible as "finishing" until then. See docs/design-crash.md.

#include <algorithm>
#include <optional>

#include "core/time_util.h"
#include "daemon/daemon.h"
#include "daemon/log.h"

namespace docpipe {

void Daemon::finalize(std::shared_ptr<DaemonJob> job) {
  DaemonJob::FinishState& fs = job->finish_state();
  fs.finishing = true;
  auto report = std::make_shared<JobReport>();
  auto error = std::make_shared<std::optional<Error>>();
  auto manifest_written = std::make_shared<bool>(fs.manifest_written);
  queue_work(
      [this, job, report, error, manifest_written] {
        Status st = job->close_journal();
        *report = job->report();
        if (st && !*manifest_written) {
          st = job->write_manifest(spool_.active_journal(report->id),
                                   spool_.active_manifest(report->id));
          // Out of space or descriptors: try again later. Anything else (the journal is gone
          // or unreadable) will not get better: the job fails without its manifest.
          if (!st && is_transient(st.error())) {
            *error = st.error();
            return;
          }
          *manifest_written = true;
        }
        if (!st) {
          report->state = JobState::kFailed;
          report->reason = st.error().message;
        }
        Status moved = spool_.finish(report->id, report->state == JobState::kSucceeded,
                                     report_to_json(*report));
        if (!moved) *error = moved.error();
      },
      [this, job, report, error, manifest_written] {
        DaemonJob::FinishState& fs = job->finish_state();
        fs.manifest_written = *manifest_written;
        const JobCounts& c = report->counts;
        LogFields fields{{"job", report->id},
                         {"state", job_state_name(report->state)},
                         {"total", std::to_string(c.total)},
                         {"succeeded", std::to_string(c.succeeded)},
                         {"failed", std::to_string(c.failed)},
                         {"skipped", std::to_string(c.skipped)}};
        if (!report->reason.empty()) fields.emplace_back("reason", report->reason);
        if (*error) {
          // Not recorded, so not counted: the job stays in active/ (and in status, as
          // "finishing" with this error) and finishing is retried until it succeeds.
          ++fs.attempts;
          fs.last_error = (*error)->message;
          fields.emplace_back("error", fs.last_error);
          fields.emplace_back("attempt", std::to_string(fs.attempts));
          if (stopping_) {
            log_error("cannot finish job; it stays in active/ and finishes at the next start",
                      fields);
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
        running_.erase(report->id);
        jobs_.erase(report->id);
        int64_t start = report->started_at_ms ? report->started_at_ms : report->submitted_at_ms;
        double seconds =
            static_cast<double>(report->finished_at_ms - report->submitted_at_ms) / 1e3;
        metrics_->job_finished(report->state, seconds);  // recorded: now it counts
        fields.emplace_back("seconds", std::to_string((report->finished_at_ms - start) / 1e3));
        if (fs.attempts > 0)
          fields.emplace_back("finish_attempts", std::to_string(fs.attempts + 1));
        log_event(report->state == JobState::kSucceeded ? LogLevel::kInfo : LogLevel::kWarn,
                  "job finished", fields);
        admit();
      });
}

uint64_t Daemon::finish_retry_delay_ms(int attempts) {
  // 250 ms, 500 ms, 1 s, ... at most kFinishRetryMaxMs apart: space freed is noticed soon,
  // a spool that stays full costs one attempt every few seconds.
  uint64_t delay = kFinishRetryBaseMs << std::min(attempts - 1, 16);
  return std::min<uint64_t>(delay, kFinishRetryMaxMs);
}

void Daemon::retry_later(uint64_t delay_ms, std::function<void()> attempt) {
  retries_.emplace(uv_now(&loop_) + delay_ms, std::move(attempt));
  arm_retry_timer();
}

void Daemon::arm_retry_timer() {
  if (retries_.empty() || stopping_) {
    uv_timer_stop(&retry_timer_);
    return;
  }
  uint64_t now = uv_now(&loop_);
  uint64_t due = retries_.begin()->first;
  uv_timer_start(
      &retry_timer_, [](uv_timer_t* t) { static_cast<Daemon*>(t->data)->run_due_retries(); },
      due > now ? due - now : 0, 0);
}

void Daemon::run_due_retries() {
  uint64_t now = uv_now(&loop_);
  std::vector<std::function<void()>> due;
  while (!retries_.empty() && retries_.begin()->first <= now) {
    due.push_back(std::move(retries_.begin()->second));
    retries_.erase(retries_.begin());
  }
  for (auto& attempt : due) attempt();
  arm_retry_timer();
}

void Daemon::finish_unresumable(const std::string& id, const FieldErrors& errors, int attempts) {
  auto report = std::make_shared<JobReport>();
  auto error = std::make_shared<std::string>();
  auto note = std::make_shared<std::string>();
  queue_work(
      [this, id, errors, report, error, note] {
        // Keep what the journal knew: counts, failed documents and the manifest.
        *report = DaemonJob::unresumable_report(id, spool_.active_journal(id),
                                                spool_.active_manifest(id), durable_, *note);
        report->id = id;
        report->reason = "cannot resume: " + join_field_errors(errors) + "; " + *note;
        Status st = spool_.finish(id, false, report_to_json(*report));
        if (!st) *error = st.error().message;
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
        metrics_->job_finished(JobState::kFailed, 0);
        log_warn("job failed", {{"job", id}, {"reason", report->reason}});
      });
}

void Daemon::resume_later(const std::string& id, int attempts) {
  if (stopping_) return;  // it stays in active/ and is resumed at the next start
  retry_later(finish_retry_delay_ms(attempts), [this, id, attempts] {
    auto r = std::make_shared<IntakeResult>();
    auto job = std::make_shared<std::shared_ptr<DaemonJob>>();
    queue_work(
        [this, id, r, job, cfg = intake_config_] {
          *r = load_active_job(spool_, id, *cfg);
          if (r->kind != IntakeResult::Kind::kAccepted) return;
          Status opened;
          *job = make_job(std::move(*r->job), /*resume=*/true, opened);
          if (!opened) {
            r->kind = IntakeResult::Kind::kFailed;
            r->message = opened.error().message;
            job->reset();
          }
        },
        [this, id, r, job, attempts] {
          if (*job) {
            log_info("job resumed",
                     {{"job", id}, {"already_done", std::to_string((*job)->resumed_documents())}});
            enqueue(std::move(*job));
          } else if (r->kind == IntakeResult::Kind::kRejected) {
            finish_unresumable(id, r->errors);
          } else {
            if (attempts <= 3 || attempts % 10 == 0) {
              log_error(
                  "cannot open job; retrying",
                  {{"job", id}, {"error", r->message}, {"attempt", std::to_string(attempts)}});
            }
            resume_later(id, attempts + 1);
          }
        });
  });
}

}  // namespace docpipe
