#include "daemon/job_intake.h"

#include <fcntl.h>
#include <unistd.h>

#include <utility>
#include <vector>

#include "core/document_source.h"
#include "core/fs_util.h"
#include "core/leftover_temps.h"
#include "core/path_util.h"
#include "daemon/log.h"

namespace docpipe {

JobIntake::JobIntake(Deps deps, const DaemonConfig& config)
    : deps_(deps), config_(std::make_shared<const DaemonConfig>(config)) {}

std::shared_ptr<const DaemonConfig> JobIntake::config() const {
  std::lock_guard<std::mutex> lock(config_mu_);
  return config_;
}

void JobIntake::set_config(const DaemonConfig& config) {
  auto next = std::make_shared<const DaemonConfig>(config);
  std::lock_guard<std::mutex> lock(config_mu_);
  config_ = std::move(next);
}

std::shared_ptr<DaemonJob> JobIntake::make_job(ValidatedJob validated, bool resume,
                                               Status& opened) {
  std::string journal = deps_.spool.active_journal(validated.spec.id);
  JobTable* table = &deps_.table;
  auto job = std::make_shared<DaemonJob>(
      std::move(validated.spec), validated.documents, deps_.clock.wall_ms(), &deps_.metrics,
      &deps_.progress, [table](DaemonJob* j) { table->post_finished(j); }, deps_.clock);
  if (job->spec().output.if_exists == IfExists::kUnchanged) job->set_lineage(deps_.lineage);
  opened = job->open(journal, resume, deps_.durable, deps_.spool.active_manifest(job->spec().id));
  return job;
}

void JobIntake::resume_active_jobs(std::function<void()> then) {
  using Resumed = std::vector<std::pair<IntakeResult, std::shared_ptr<DaemonJob>>>;
  auto results = std::make_shared<Resumed>();
  deps_.executor.run(
      [this, results, cfg = config()] {
        deps_.spool.remove_stale_temp_files();
        // Temp files that finished jobs could not remove (their folder turned read-only).
        LeftoverTemps::global().set_store(deps_.spool.root() + "/leftover-temps.json");
        if (size_t n = LeftoverTemps::global().retry(); n > 0) {
          log_info("removed leftover temp files of finished jobs", {{"files", std::to_string(n)}});
        }
        deps_.submitters.start();
        for (const std::string& id : list_active_job_ids(deps_.spool)) {
          IntakeResult r = load_resumable(id, *cfg);
          std::shared_ptr<DaemonJob> job;
          if (r.kind == IntakeResult::Kind::kAccepted) {
            Status opened;
            job = make_job(std::move(*r.job), /*resume=*/true, opened);
            if (!opened) {
              r.kind = IntakeResult::Kind::kFailed;
              r.message = opened.error().message;
              job.reset();
            }
            r.job.reset();
          }
          results->emplace_back(std::move(r), std::move(job));
        }
      },
      [this, results, then = std::move(then)] {
        for (auto& [r, job] : *results) {
          const std::string id = job_file_stem(r.name);
          if (job) {
            log_info("job resumed",
                     {{"job", id}, {"already_done", std::to_string(job->resumed_documents())}});
            deps_.table.enqueue(std::move(job));
          } else if (r.kind == IntakeResult::Kind::kRejected) {
            deps_.table.finish_unresumable(id, r.errors);
          } else {
            log_error("cannot resume job; retrying", {{"job", id}, {"error", r.message}});
            deps_.table.resume_later(id, 1);
          }
        }
        if (then) then();
      });
}

IntakeResult JobIntake::load_resumable(const std::string& id, const DaemonConfig& config) {
  IntakeResult r = load_active_job(deps_.spool, id, config);
  if (r.kind != IntakeResult::Kind::kAccepted) return r;
  auto submitter = deps_.submitters.load_active(id);
  if (!submitter) {
    r.kind = IntakeResult::Kind::kFailed;
    r.message = "cannot tell whom the job acts for: " + submitter.error().message;
    r.job.reset();
    return r;
  }
  r.job->spec.submitter = std::move(*submitter);
  // Outputs a crash left half-written: never renamed into place, so just litter. Removed in the
  // output folder opened as the job opens it, never by its path: a folder the submitter swapped
  // for a symlink must not lead the daemon's removal elsewhere. (Not there: nothing to remove.)
  // A cluster job's output folder is shared with nodes whose documents are in flight: their
  // temp files are not litter (docs/design.md "Several nodes").
  size_t removed = 0;
  const bool shared = ::access(deps_.spool.cluster_marker(id).c_str(), F_OK) == 0;
  if (Result<DirFd> out = shared ? Result<DirFd>(make_error(ErrorCode::kNotFound, "shared"))
                                 : open_output_folder(r.job->spec)) {
    int fd = ::fcntl(out->fd(), F_DUPFD_CLOEXEC, 0);
    if (fd >= 0) removed = remove_docpipe_temp_files_at(fd);
  }
  if (removed > 0) {
    log_info("removed leftover temp files", {{"job", id}, {"files", std::to_string(removed)}});
  }
  return r;
}

ReopenedJob JobIntake::reopen(const std::string& id) {
  ReopenedJob out;
  IntakeResult r = load_resumable(id, *config());
  if (r.kind == IntakeResult::Kind::kRejected) {
    out.unresumable = true;
    out.errors = std::move(r.errors);
    return out;
  }
  if (r.kind != IntakeResult::Kind::kAccepted) {
    out.message = std::move(r.message);
    return out;
  }
  Status opened;
  out.job = make_job(std::move(*r.job), /*resume=*/true, opened);
  if (!opened) {
    out.message = opened.error().message;
    out.job.reset();
  }
  return out;
}

void JobIntake::adopt(std::string id, std::string text, std::string submitter,
                      std::function<void(bool)> done) {
  auto reopened = std::make_shared<ReopenedJob>();
  deps_.executor.run(
      [this, id, text = std::move(text), submitter = std::move(submitter), reopened] {
        std::optional<SubmitterStore::Record> who = SubmitterStore::decode(submitter);
        if (!who) {
          reopened->message = "its record names no submitter this node can trust";
          return;
        }
        Status st = deps_.submitters.admit(id, text, who->submitter);
        // kExists: in active/ already (resumed at this node's start, or adopted before).
        if (!st && (st.error().code != ErrorCode::kExists ||
                    ::access(deps_.spool.active_job(id).c_str(), F_OK) != 0)) {
          reopened->message = st.error().message;
          return;
        }
        *reopened = reopen(id);
      },
      [this, id, reopened, done = std::move(done)] {
        if (reopened->job) {
          log_info("cluster: job taken over", {{"job", id}});
          deps_.table.enqueue(std::move(reopened->job));
          done(true);
          return;
        }
        if (reopened->unresumable) {
          deps_.table.finish_unresumable(id, reopened->errors);
          done(false);
          return;
        }
        log_error("cluster: cannot take the job over", {{"job", id}, {"error", reopened->message}});
        done(false);
      });
}

void JobIntake::on_job_file_ready(const std::string& name) {
  if (deps_.table.paused()) {
    if (deps_.table.pause()->since_ms != waiting_since_ms_) {  // a new pause logs afresh
      waiting_since_ms_ = deps_.table.pause()->since_ms;
      waiting_logged_.clear();
    }
    if (waiting_logged_.size() < kMaxWaitingLogged && waiting_logged_.insert(name).second) {
      log_info("job file waits in incoming/: intake is paused", {{"file", name}});
    }
    if (forget_) forget_(name);
    return;
  }
  auto result = std::make_shared<IntakeResult>();
  auto job = std::make_shared<std::shared_ptr<DaemonJob>>();
  auto claimed_id = std::make_shared<std::string>();
  deps_.executor.run(
      [this, name, result, job, claimed_id, cfg = config()] {
        *result = take_job_file(deps_.spool, name, *cfg, deps_.quotas);
        if (result->kind != IntakeResult::Kind::kAccepted) return;
        // A dropped job acts for the owner of its file.
        result->job->spec.submitter =
            deps_.submitters.adopt_claimed(result->job->spec.id, result->owner_uid);
        *claimed_id = result->job->spec.id;
        Status opened;
        *job = make_job(std::move(*result->job), /*resume=*/false, opened);
        if (!opened) {
          // Claimed but unusable now (no descriptors, a full spool): resumed from active/ later.
          result->kind = IntakeResult::Kind::kFailed;
          result->message = opened.error().message;
          job->reset();
        }
      },
      [this, result, job, claimed_id] {
        if (result->kind == IntakeResult::Kind::kFailed && !claimed_id->empty()) {
          log_error("cannot open claimed job; retrying",
                    {{"job", *claimed_id}, {"error", result->message}});
          if (forget_) forget_(result->name);
          deps_.table.resume_later(*claimed_id, 1);
          return;
        }
        on_intake_result(std::move(*result), std::move(*job));
      });
}

void JobIntake::on_intake_result(IntakeResult r, std::shared_ptr<DaemonJob> job) {
  if (forget_) forget_(r.name);
  switch (r.kind) {
    case IntakeResult::Kind::kAccepted:
      log_info("job accepted", {{"job", job->spec().id},
                                {"file", r.name},
                                {"documents", std::to_string(job->report().counts.total)}});
      deps_.table.enqueue(std::move(job));
      break;
    case IntakeResult::Kind::kRejected:
      deps_.metrics.job_rejected();
      if (r.quota_refused != QuotaRefusal::kNone) deps_.metrics.quota_refused(r.quota_refused);
      log_warn("job rejected", {{"file", r.name}, {"errors", join_field_errors(r.errors)}});
      break;
    case IntakeResult::Kind::kGone:
      break;
    case IntakeResult::Kind::kFailed:
      log_error("cannot take job file; will retry at the next rescan",
                {{"file", r.name}, {"error", r.message}});
      break;
  }
}

JobIntake::Submitted JobIntake::submit(const std::string& text, const std::string& default_id,
                                       const std::string& base_dir,
                                       const std::optional<Credentials>& submitter,
                                       const DaemonConfig& config, bool daemon_written) {
  Submitted out;
  QuotaCheck quota{resolve_quota(config.quotas, submitter)};
  if (deps_.quotas != nullptr) {
    // Already at the cap: refused before the job's inputs are walked.
    out.failure = quota_precheck(*deps_.quotas, submitter, quota);
    out.quota_refused = quota.refused;
    if (!out.failure.empty()) return out;
  }
  std::optional<Error> shortage;
  auto validated = validate_job_text(text, default_id, base_dir, config, out.errors, submitter,
                                     /*count_documents=*/true, &shortage, &quota, daemon_written);
  if (shortage) {
    // The daemon's trouble, not the job's: a failure the client may retry, not field errors.
    out.errors.clear();
    out.failure = shortage_message(*shortage) + "; submit it again later";
    return out;
  }
  out.quota_refused = quota.refused;
  if (!validated) return out;
  std::string id = validated->spec.id;
  if (deps_.quotas != nullptr) {
    // Counted before active/ID.json is written: concurrent submits cannot all pass the cap.
    bool id_taken = false;
    std::string refused = reserve_quota(*deps_.quotas, id, submitter, quota, id_taken);
    out.quota_refused = quota.refused;
    if (id_taken) {
      out.errors.push_back({"id", refused});
      return out;
    }
    if (!refused.empty()) {
      out.failure = std::move(refused);
      return out;
    }
  }
  Status st = deps_.submitters.admit(id, pin_job_text(text, validated->spec), submitter);
  if (!st) {
    if (deps_.quotas != nullptr) deps_.quotas->release(id);  // not accepted: not counted
    if (st.error().code == ErrorCode::kExists) {
      out.errors.push_back({"id", st.error().message});
    } else {
      out.failure = st.error().message;
    }
    return out;
  }
  out.documents = validated->documents;
  Status opened;
  out.job = make_job(std::move(*validated), /*resume=*/false, opened);
  if (!opened) {
    out.failure = opened.error().message;
    out.unopened_id = id;
    out.job.reset();
  }
  return out;
}

}  // namespace docpipe
