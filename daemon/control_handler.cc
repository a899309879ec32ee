#include "daemon/control_handler.h"

#include <unistd.h>

#include <optional>

#include "core/fs_util.h"
#include "core/job_spec.h"
#include "core/transforms/worker_pool.h"
#include "daemon/command_breaker_monitor.h"
#include "daemon/log.h"
#include "daemon/peer_credentials.h"

namespace docpipe {

namespace {

nlohmann::json error_reply(const std::string& message) {
  return {{"ok", false}, {"error", message}};
}

nlohmann::json errors_json(const FieldErrors& errors) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : errors) {
    list.push_back({{"path", e.path}, {"reason", e.reason}, {"message", format_field_error(e)}});
  }
  return list;
}

// A valid id (at most 128 characters) is quoted whole; a client's 4 MiB one is not echoed back.
std::string quoted_id(const std::string& id) { return quote_client_text(id, 128); }

std::string no_such_job(const std::string& id) {
  return "no job " + quoted_id(id) + ": not queued, running or finished";
}

}  // namespace

ControlLimits control_limits(const DaemonConfig& c) {
  ControlLimits limits;
  limits.max_connections = static_cast<size_t>(c.max_control_connections);
  limits.idle_timeout_ms = c.control_idle_timeout_ms;
  return limits;
}

void ControlHandler::handle(ControlRequest request, const Credentials& peer,
                            ControlServer::Reply reply) {
  switch (request.op) {
    case ControlRequest::Op::kSubmit:
      if (deps_.table.stopping()) {
        reply(error_reply("the daemon is shutting down; submit again once it is back"));
        return;
      }
      return submit(std::move(request), peer, std::move(reply));
    case ControlRequest::Op::kStatus:
      return status(request.id, peer, std::move(reply));
    case ControlRequest::Op::kCancel:
      return cancel(request.id, peer, std::move(reply));
    case ControlRequest::Op::kList:
      reply({{"ok", true}, {"jobs", deps_.table.visible_jobs(peer)}});
      return;
    case ControlRequest::Op::kPause:
      return pause(std::move(request.reason), peer, std::move(reply));
    case ControlRequest::Op::kResume:
      return resume(peer, std::move(reply));
    case ControlRequest::Op::kWhich:
      return which(std::move(request.path), peer, std::move(reply));
    case ControlRequest::Op::kPlan:
      return plan(std::move(request), peer, std::move(reply));
    case ControlRequest::Op::kRetry:
      if (deps_.table.stopping()) {
        reply(error_reply("the daemon is shutting down; retry once it is back"));
        return;
      }
      return retry(std::move(request), peer, std::move(reply));
  }
}

namespace {

std::string operators_only(const char* what) {
  return std::string(what) +
         " is for the daemon's operators: root, the daemon's own user, or a member of the "
         "config's admin_group";
}

}  // namespace

bool ControlHandler::may_pause(const Credentials& peer) const {
  // The daemon's own user owns the spool (and could write paused.json itself).
  return deps_.table.is_admin(peer) || peer.uid == ::geteuid();
}

void ControlHandler::pause(std::string reason, const Credentials& peer,
                           ControlServer::Reply reply) {
  if (!may_pause(peer)) {
    reply(error_reply(operators_only("pausing intake")));
    return;
  }
  const bool already = deps_.table.paused();
  if (!already) {
    // In force at once, before any other request or finished job can admit one more; then kept
    // in the spool, so that a restart stays paused.
    IntakePause p{deps_.clock.wall_ms(), peer.uid, std::move(reason)};
    deps_.table.set_pause(p);
    log_info("intake paused", {{"uid", std::to_string(peer.uid)}, {"reason", p.reason}});
  }
  // Already paused: the first pause stands, written again (an earlier write may have failed).
  persist_pause([this, reply, already](const Status& stored) {
    nlohmann::json out{{"ok", true}, {"intake", intake_pause_json(deps_.table.pause())}};
    if (already) out["note"] = "already paused";
    if (!stored) {
      log_error("cannot record the pause in the spool; a restart would resume intake",
                {{"error", stored.error().message}});
      out["note"] = "paused, but not recorded in the spool (" + stored.error().message +
                    "): a restart of the daemon resumes intake";
    }
    reply(out);
  });
}

void ControlHandler::persist_pause(std::function<void(const Status&)> done) {
  {
    std::lock_guard lock(pause_file_->mu);
    pause_file_->wanted = deps_.table.pause();
  }
  auto stored = std::make_shared<Status>();
  deps_.executor.run(
      [file = pause_file_, stored, path = pause_file_path(deps_.spool.root()),
       durable = deps_.durable] {
        // Whatever is wanted when this runs: a pause and a resume in quick succession may run in
        // either order on the executor's threads, and the last to run writes the latest state.
        std::lock_guard lock(file->mu);
        *stored = store_intake_pause(path, file->wanted, durable);
      },
      [stored, done = std::move(done)] { done(*stored); });
}

void ControlHandler::resume(const Credentials& peer, ControlServer::Reply reply) {
  if (!may_pause(peer)) {
    reply(error_reply(operators_only("resuming intake")));
    return;
  }
  const bool was_paused = deps_.table.paused();
  deps_.table.set_pause(std::nullopt);  // admits queued jobs at once
  if (was_paused) log_info("intake resumed", {{"uid", std::to_string(peer.uid)}});
  if (deps_.rescan_incoming) deps_.rescan_incoming();  // the files that waited in incoming/
  persist_pause([this, reply, was_paused](const Status& stored) {
    nlohmann::json out{{"ok", true}, {"intake", intake_pause_json(deps_.table.pause())}};
    if (!was_paused) out["note"] = "intake was not paused";
    if (!stored) {
      log_error("cannot remove the pause from the spool; a restart would pause intake again",
                {{"error", stored.error().message}});
      out["note"] = "resumed, but the pause is still recorded in the spool (" +
                    stored.error().message + "): a restart of the daemon pauses intake again";
    }
    reply(out);
  });
}

void ControlHandler::submit(ControlRequest request, const Credentials& peer,
                            ControlServer::Reply reply) {
  std::string base_dir = request.base_dir.empty() ? deps_.spool.incoming() : request.base_dir;
  deps_.metrics.intake_event(IntakeSource::kSocket);
  std::string default_id =
      "job-" + std::to_string(deps_.clock.wall_ms()) + "-" + std::to_string(++submit_counter_);
  auto submitted = std::make_shared<JobIntake::Submitted>();
  deps_.executor.run(
      [intake = &deps_.intake, text = std::move(request.job_text), default_id, base_dir, submitted,
       submitter = submitter_for(peer), cfg = deps_.intake.config()] {
        *submitted = intake->submit(text, default_id, base_dir, submitter, *cfg);
      },
      [this, reply, submitted, uid = peer.uid] {
        answer_submitted(*submitted, uid, "socket", nlohmann::json::object(), reply);
      });
}

void ControlHandler::answer_submitted(const JobIntake::Submitted& submitted, uid_t uid,
                                      const char* source, const nlohmann::json& extra,
                                      const ControlServer::Reply& reply) {
  if (submitted.job) {
    const std::string id = submitted.job->spec().id;
    uint64_t documents = submitted.job->report().counts.total;
    LogFields fields{{"job", id},
                     {"source", source},
                     {"uid", std::to_string(uid)},
                     {"documents", std::to_string(documents)}};
    if (!submitted.job->spec().retry_of.empty()) {
      fields.emplace_back("retry_of", submitted.job->spec().retry_of);
    }
    log_info("job accepted", fields);
    deps_.table.enqueue(submitted.job);
    nlohmann::json out{{"ok", true}, {"id", id}, {"documents", documents}};
    out.update(extra);
    if (deps_.table.paused()) {
      out["note"] =
          "intake is paused: the job is queued and starts once an operator runs "
          "`docpipe resume`";
    }
    reply(out);
  } else if (!submitted.unopened_id.empty()) {
    // In active/ already: it runs once it can be opened, as a claimed drop does.
    const std::string& id = submitted.unopened_id;
    log_error("cannot open accepted job; retrying",
              {{"job", id}, {"source", source}, {"error", submitted.failure}});
    deps_.table.resume_later(id, 1);
    nlohmann::json out{
        {"ok", true},
        {"id", id},
        {"documents", submitted.documents},
        {"note", "accepted; it starts once it can be opened (" + submitted.failure + ")"}};
    out.update(extra);
    reply(out);
  } else if (!submitted.errors.empty()) {
    deps_.metrics.job_rejected();
    log_warn("job rejected", {{"source", source},
                              {"uid", std::to_string(uid)},
                              {"errors", join_field_errors(submitted.errors)}});
    nlohmann::json out{
        {"ok", false}, {"error", "invalid job"}, {"errors", errors_json(submitted.errors)}};
    if (submitted.quota_refused == QuotaRefusal::kPriority) {
      deps_.metrics.quota_refused(QuotaRefusal::kPriority);
      out["error"] = "refused: over the submitter's quota";
      out["quota_refused"] = "priority";
    }
    reply(out);
  } else if (submitted.quota_refused == QuotaRefusal::kQueuedJobs) {
    deps_.metrics.job_rejected();
    deps_.metrics.quota_refused(QuotaRefusal::kQueuedJobs);
    log_warn("job refused: over quota",
             {{"source", source}, {"uid", std::to_string(uid)}, {"error", submitted.failure}});
    reply({{"ok", false}, {"error", submitted.failure}, {"quota_refused", "queued_jobs"}});
  } else {
    log_error("cannot accept submitted job", {{"source", source}, {"error", submitted.failure}});
    reply(error_reply("cannot accept the job: " + submitted.failure));
  }
}

nlohmann::json ControlHandler::quota_status(const Credentials& peer) const {
  ResolvedQuota q = resolve_quota(deps_.intake.config()->quotas, submitter_for(peer));
  nlohmann::json out{
      {"uid", peer.uid},
      {"jobs", deps_.quotas != nullptr ? deps_.quotas->count(peer.uid) : 0},
      {"max_queued_jobs", q.max_queued_jobs ? nlohmann::json(*q.max_queued_jobs) : nullptr},
      {"max_priority", q.max_priority ? nlohmann::json(*q.max_priority) : nullptr}};
  if (q.max_queued_jobs) out["max_queued_jobs_from"] = q.max_queued_jobs_source;
  if (q.max_priority) out["max_priority_from"] = q.max_priority_source;
  return out;
}

nlohmann::json ControlHandler::daemon_status(const Credentials& peer) const {
  auto cfg = deps_.intake.config();
  nlohmann::json status{
      {"version", DOCPIPE_VERSION},
      {"pid", ::getpid()},
      {"uptime_seconds", static_cast<double>(deps_.clock.wall_ms() - started_at_ms_) / 1e3},
      {"state", deps_.table.stopping() ? "stopping" : "running"},
      {"intake", intake_pause_json(deps_.table.pause())},
      {"spool", deps_.spool.root()},
      {"workers", cfg->workers},
      {"ocr_concurrency", cfg->ocr_concurrency},
      {"ocr_in_use", worker_concurrency_in_use("ocr")},
      {"jobs_running", deps_.table.running()},
      {"jobs_queued", deps_.table.queued()},
      {"documents_in_flight", deps_.work.documents_in_flight()},
      {"buffer_bytes_in_use", deps_.work.buffer_bytes_in_use()},
      {"memory_budget_bytes", cfg->memory_budget_bytes}};
  nlohmann::json cluster = deps_.work.daemon_status();
  if (!cluster.is_null()) status["cluster"] = std::move(cluster);
  if (deps_.breakers != nullptr) status["commands"] = breakers_status(*deps_.breakers);
  if (cfg->quotas.enabled) status["quota"] = quota_status(peer);
  if (deps_.notifications) status["notifications"] = deps_.notifications();
  return status;
}

void ControlHandler::status(const std::string& id, const Credentials& peer,
                            ControlServer::Reply reply) {
  if (id.empty()) {
    reply(
        {{"ok", true}, {"daemon", daemon_status(peer)}, {"jobs", deps_.table.visible_jobs(peer)}});
    return;
  }
  if (auto job = deps_.table.status_of(id, peer)) {
    reply({{"ok", true}, {"job", std::move(*job)}});
    return;
  }
  if (!is_valid_job_id(id)) {
    reply(error_reply("no job " + quoted_id(id) + " (not a valid job id)"));
    return;
  }
  finished_status(id, peer, std::move(reply));
}

// Finished (or never seen, or someone else's: the same answer, so that nothing leaks): the
// report in done/ or failed/ tells, and the submitter record next to it says whose it is.
void ControlHandler::finished_status(const std::string& id, const Credentials& peer,
                                     ControlServer::Reply reply) {
  auto found = std::make_shared<nlohmann::json>();
  auto owner = std::make_shared<std::optional<SubmitterStore::Record>>();
  deps_.executor.run(
      [spool = &deps_.spool, submitters = &deps_.submitters, id, found, owner] {
        for (const std::string& dir : {spool->done(), spool->failed()}) {
          auto text = read_file(dir + "/" + id + ".report.json");
          if (!text) continue;
          nlohmann::json report = nlohmann::json::parse(*text, nullptr, false);
          if (!report.is_discarded()) *found = std::move(report);
          *owner = submitters->load_finished(id);
          return;
        }
      },
      [this, id, found, owner, peer, reply] {
        // No record (lost, or from before records existed): only admins see the job.
        bool visible = deps_.table.can_see(*owner ? (*owner)->submitter : std::nullopt, peer);
        if (found->is_null() || !visible) {
          reply(error_reply(no_such_job(id)));
          return;
        }
        nlohmann::json job{{"id", id}, {"state", (*found)["state"]}, {"report", *found}};
        if (*owner) job["submitter_uid"] = (*owner)->submitter ? (*owner)->submitter->uid : 0;
        if (found->contains("counts")) {
          const auto& c = (*found)["counts"];
          job["total"] = c.value("total", 0);
          job["done"] = c.value("succeeded", 0) + c.value("failed", 0) + c.value("skipped", 0);
        }
        reply({{"ok", true}, {"job", std::move(job)}});
      });
}

void ControlHandler::cancel(const std::string& id, const Credentials& peer,
                            ControlServer::Reply reply) {
  switch (deps_.table.cancel(id, peer)) {
    case JobTable::CancelOutcome::kNoSuchJob:
      reply(error_reply("no job " + quoted_id(id) + " is queued or running"));
      return;
    case JobTable::CancelOutcome::kCancelled:
      reply({{"ok", true}, {"id", id}, {"state", "cancelled"}});
      return;
    case JobTable::CancelOutcome::kCancelling:
      reply({{"ok", true}, {"id", id}, {"state", "cancelling"}});
      return;
  }
}

}  // namespace docpipe
