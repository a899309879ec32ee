// Control socket requests (NDJSON): submit, status, cancel, list. Runs on the loop thread; file
// work (validation, claiming, reading finished reports) goes to the threadpool.

#include <algorithm>

#include "core/fs_util.h"
#include "core/time_util.h"
#include "daemon/daemon.h"
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

}  // namespace

ControlLimits Daemon::control_limits(const DaemonConfig& c) {
  ControlLimits limits;
  limits.max_connections = static_cast<size_t>(c.max_control_connections);
  limits.idle_timeout_ms = c.control_idle_timeout_ms;
  return limits;
}

bool Daemon::can_see(const std::optional<Credentials>& submitter, const Credentials& peer) const {
  if (is_admin(peer, config_.admin_gid)) return true;
  // Jobs of root (no submitter) are root's: only admins see them.
  return submitter && submitter->uid == peer.uid;
}

void Daemon::handle_control(ControlRequest request, const Credentials& peer,
                            ControlServer::Reply reply) {
  switch (request.op) {
    case ControlRequest::Op::kSubmit:
      if (stopping_) {
        reply(error_reply("the daemon is shutting down; submit again once it is back"));
        return;
      }
      return control_submit(std::move(request), peer, std::move(reply));
    case ControlRequest::Op::kStatus:
      return control_status(request.id, peer, std::move(reply));
    case ControlRequest::Op::kCancel:
      return control_cancel(request.id, peer, std::move(reply));
    case ControlRequest::Op::kList:
      reply({{"ok", true}, {"jobs", visible_jobs(peer)}});
      return;
  }
}

nlohmann::json Daemon::visible_jobs(const Credentials& peer) const {
  nlohmann::json jobs = nlohmann::json::array();
  for (const auto& [id, job] : jobs_) {
    if (can_see(job->spec().submitter, peer)) jobs.push_back(job_status(*job));
  }
  return jobs;
}

void Daemon::control_submit(ControlRequest request, const Credentials& peer,
                            ControlServer::Reply reply) {
  std::string base_dir = request.base_dir.empty() ? spool_.incoming() : request.base_dir;
  metrics_->intake_event(IntakeSource::kSocket);
  std::string default_id =
      "job-" + std::to_string(wall_clock_ms()) + "-" + std::to_string(++submit_counter_);
  auto errors = std::make_shared<FieldErrors>();
  auto job = std::make_shared<std::shared_ptr<DaemonJob>>();
  auto failure = std::make_shared<std::string>();
  queue_work(
      [this, text = std::move(request.job_text), default_id, base_dir, errors, job, failure,
       submitter = submitter_for(peer), cfg = intake_config_] {
        auto validated = validate_job_text(text, default_id, base_dir, *cfg, *errors, submitter);
        if (!validated) return;
        std::string id = validated->spec.id;
        Status st = submitters_.admit(id, pin_job_text(text, validated->spec), submitter);
        if (!st) {
          if (st.error().code == ErrorCode::kExists) {
            errors->push_back({"id", st.error().message});
          } else {
            *failure = st.error().message;
          }
          return;
        }
        Status opened;
        *job = make_job(std::move(*validated), /*resume=*/false, opened);
        if (!opened) {
          *failure = opened.error().message + " (the job stays in active/ and resumes at restart)";
          job->reset();
        }
      },
      [this, reply, errors, job, failure, uid = peer.uid] {
        if (*job) {
          const std::string id = (*job)->spec().id;
          uint64_t documents = (*job)->report().counts.total;
          log_info("job accepted", {{"job", id},
                                    {"source", "socket"},
                                    {"uid", std::to_string(uid)},
                                    {"documents", std::to_string(documents)}});
          enqueue(*job);
          reply({{"ok", true}, {"id", id}, {"documents", documents}});
        } else if (!errors->empty()) {
          metrics_->job_rejected();
          log_warn("job rejected", {{"source", "socket"},
                                    {"uid", std::to_string(uid)},
                                    {"errors", join_field_errors(*errors)}});
          reply({{"ok", false}, {"error", "invalid job"}, {"errors", errors_json(*errors)}});
        } else {
          log_error("cannot accept submitted job", {{"error", *failure}});
          reply(error_reply("cannot accept the job: " + *failure));
        }
      });
}

nlohmann::json Daemon::job_status(const DaemonJob& job) const {
  JobReport r = job.report();
  const JobCounts& c = r.counts;
  uint64_t done = c.succeeded + c.failed + c.skipped;
  bool running = running_.count(r.id) != 0;
  double elapsed =
      r.started_at_ms ? static_cast<double>(wall_clock_ms() - r.started_at_ms) / 1e3 : 0;
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
  if (!job.finish_state().last_error.empty()) j["error"] = job.finish_state().last_error;
  j["submitter_uid"] = job.spec().submitter ? job.spec().submitter->uid : 0;
  return j;
}

nlohmann::json Daemon::daemon_status() const {
  return {{"version", DOCPIPE_VERSION},
          {"pid", ::getpid()},
          {"uptime_seconds", static_cast<double>(wall_clock_ms() - started_at_ms_) / 1e3},
          {"state", stopping_ ? "stopping" : "running"},
          {"spool", spool_.root()},
          {"workers", config_.workers},
          {"jobs_running", running_.size()},
          {"jobs_queued", queued_.size()},
          {"documents_in_flight", pipeline_->documents_in_flight()},
          {"buffer_bytes_in_use", pipeline_->buffer_bytes_in_use()},
          {"memory_budget_bytes", config_.memory_budget_bytes}};
}

void Daemon::control_status(const std::string& id, const Credentials& peer,
                            ControlServer::Reply reply) {
  if (id.empty()) {
    reply({{"ok", true}, {"daemon", daemon_status()}, {"jobs", visible_jobs(peer)}});
    return;
  }
  if (auto it = jobs_.find(id); it != jobs_.end() && can_see(it->second->spec().submitter, peer)) {
    reply({{"ok", true}, {"job", job_status(*it->second)}});
    return;
  }
  if (!is_valid_job_id(id)) {
    reply(error_reply("no job \"" + id + "\" (not a valid job id)"));
    return;
  }
  // Finished (or never seen, or someone else's: the same answer, so that nothing leaks): the
  // report in done/ or failed/ tells, and the submitter record next to it says whose it is.
  auto found = std::make_shared<nlohmann::json>();
  auto owner = std::make_shared<std::optional<SubmitterStore::Record>>();
  queue_work(
      [this, id, found, owner] {
        for (const std::string& dir : {spool_.done(), spool_.failed()}) {
          auto text = read_file(dir + "/" + id + ".report.json");
          if (!text) continue;
          nlohmann::json report = nlohmann::json::parse(*text, nullptr, false);
          if (!report.is_discarded()) *found = std::move(report);
          *owner = submitters_.load_finished(id);
          return;
        }
      },
      [this, id, found, owner, peer, reply] {
        // No record (lost, or from before records existed): only admins see the job.
        bool visible =
            is_admin(peer, config_.admin_gid) || (*owner && can_see((*owner)->submitter, peer));
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

std::string Daemon::no_such_job(const std::string& id) {
  return "no job \"" + id + "\": not queued, running or finished";
}

void Daemon::control_cancel(const std::string& id, const Credentials& peer,
                            ControlServer::Reply reply) {
  auto it = jobs_.find(id);
  if (it == jobs_.end() || !can_see(it->second->spec().submitter, peer)) {
    reply(error_reply("no job \"" + id + "\" is queued or running"));
    return;
  }
  std::shared_ptr<DaemonJob> job = it->second;
  job->request_cancel("cancelled by request");
  log_info("job cancel requested", {{"job", id}, {"uid", std::to_string(peer.uid)}});
  auto queued = std::find(queued_.begin(), queued_.end(), job);
  if (queued != queued_.end()) {
    // Never admitted: it finishes at once, with nothing done.
    queued_.erase(queued);
    update_job_gauges();
    job->job_finished(true);
    reply({{"ok", true}, {"id", id}, {"state", "cancelled"}});
    return;
  }
  // Running: the pipeline takes no more of its documents; those in flight finish (or are
  // cancelled) and job_finished() follows.
  pipeline_->cancel_job(id);
  reply({{"ok", true}, {"id", id}, {"state", "cancelling"}});
}

}  // namespace docpipe
