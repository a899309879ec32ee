// The control socket's retry request (docs/design.md "Retry", daemon/job_retry.h): who may
// retry (the rights of cancel), which finished job, and the new job handed to the intake as a
// submit of the original's submitter would be.
#include "core/fs_util.h"
#include "core/job_spec.h"
#include "core/time_util.h"
#include "daemon/control_handler.h"
#include "daemon/job_retry.h"
#include "daemon/log.h"
#include "daemon/peer_credentials.h"

namespace docpipe {

namespace {

nlohmann::json refuse(const std::string& message) { return {{"ok", false}, {"error", message}}; }

std::string quoted_id(const std::string& id) { return quote_client_text(id, 128); }

// The same words whether the job never existed, is gone, or is someone else's: nothing leaks.
std::string no_finished_job(const std::string& id) {
  return "no finished job " + quoted_id(id) + " (see `docpipe status` for your jobs)";
}

// Queued, running or finished: the id is used.
bool job_in_spool(const Spool& spool, const std::string& id) {
  return path_exists(spool.active_job(id)) || path_exists(spool.done() + "/" + id + ".json") ||
         path_exists(spool.failed() + "/" + id + ".json");
}

}  // namespace

void ControlHandler::retry(ControlRequest request, const Credentials& peer,
                           ControlServer::Reply reply) {
  const std::string id = request.id;
  if (!is_valid_job_id(id)) {
    reply(refuse("no job " + quoted_id(id) + " (not a valid job id)"));
    return;
  }
  if (!request.new_id.empty() && !is_valid_job_id(request.new_id)) {
    reply(refuse("retry: the new id " + quoted_id(request.new_id) +
                 " is not a valid job id (1 to 128 characters from A-Z a-z 0-9 . _ -)"));
    return;
  }
  if (deps_.table.status_of(id, peer)) {
    reply(refuse("job " + quoted_id(id) +
                 " has not finished (it is queued or running): retry it once it has ended, or "
                 "cancel it first"));
    return;
  }
  struct Loaded {
    Result<FinishedJob> job = make_error(ErrorCode::kNotFound, "");
    std::optional<SubmitterStore::Record> owner;
  };
  auto loaded = std::make_shared<Loaded>();
  deps_.executor.run(
      [spool = &deps_.spool, submitters = &deps_.submitters, id, loaded] {
        loaded->job = load_finished_job(*spool, id);
        if (loaded->job) loaded->owner = submitters->load_finished(id);
      },
      [this, id, new_id = request.new_id, peer, reply, loaded] {
        if (!loaded->job) {
          if (loaded->job.error().code != ErrorCode::kNotFound && deps_.table.is_admin(peer)) {
            reply(refuse("cannot read finished job " + quoted_id(id) + ": " +
                         loaded->job.error().message));
          } else {
            reply(refuse(no_finished_job(id)));
          }
          return;
        }
        // No record: only admins see the job (as in status), and nobody can tell whom a retry
        // would act for.
        const bool visible =
            deps_.table.can_see(loaded->owner ? loaded->owner->submitter : std::nullopt, peer);
        if (!visible) {
          reply(refuse(no_finished_job(id)));
          return;
        }
        if (!loaded->owner) {
          reply(refuse("cannot retry job " + quoted_id(id) +
                       ": whom it acted for is not recorded (its submitter record is missing or "
                       "untrusted); submit the job again instead"));
          return;
        }
        // Its retry may be running unlinked (a crash, or a full spool, between its admission
        // and the link): two retries of one job would write the same outputs at once.
        if (std::optional<std::string> running = deps_.table.retry_in_table(id)) {
          reply(refuse("job " + quoted_id(id) + " is being retried as " + quoted_id(*running) +
                       " (queued or running): retry that one once it has ended"));
          return;
        }
        if (!retrying_.insert(id).second) {
          reply(refuse("a retry of job " + quoted_id(id) + " is being prepared already"));
          return;
        }
        prepare_retry(id, new_id, *loaded->job, loaded->owner->submitter, peer, reply);
      });
}

void ControlHandler::prepare_retry(const std::string& id, const std::string& new_id,
                                   const FinishedJob& original,
                                   const std::optional<Credentials>& submitter,
                                   const Credentials& peer, const ControlServer::Reply& reply) {
  struct Prepared {
    std::string error;
    bool nothing = false;  // the error says nothing is left to retry
    RetryDraft draft;
    JobIntake::Submitted submitted;
    std::string link_error;
  };
  auto out = std::make_shared<Prepared>();
  const std::string fallback_id =
      "retry-" + std::to_string(deps_.clock.wall_ms()) + "-" + std::to_string(++submit_counter_);
  deps_.executor.run(
      [spool = &deps_.spool, intake = &deps_.intake, reports = deps_.reports,
       cfg = deps_.intake.config(), original, recorded = submitter, id, new_id, fallback_id,
       now = format_utc(deps_.clock.wall_ms()), out] {
        // Whom it acts for: the original's submitter, with only the groups it still has.
        std::optional<Credentials> submitter = recorded;
        if (recorded) {
          Result<Credentials> current = credentials_for_uid(recorded->uid);
          if (!current) {
            out->error = "cannot retry job " + quoted_id(id) + ": " + current.error().message;
            return;
          }
          submitter = retry_credentials(*recorded, *current);
        }
        const std::string latest = latest_retry(original.report);
        if (!latest.empty() && job_in_spool(*spool, latest)) {
          out->error = "job " + quoted_id(id) + " was retried as " + quoted_id(latest) +
                       " already: retry " + quoted_id(latest) +
                       " instead, which holds what is left to do";
          return;
        }
        if (!latest.empty()) {
          // Pruned: what it (and any retry of it, which may still be running) left undone
          // cannot be known, and retrying the original would redo what it did.
          out->error = "job " + quoted_id(id) + " was retried as " + quoted_id(latest) +
                       ", which is no longer in the spool: what is left to do cannot be told; "
                       "submit the job again instead";
          return;
        }
        std::string chosen = new_id;
        if (chosen.empty()) {
          chosen = next_retry_id(id, [&](const std::string& c) {
            return job_in_spool(*spool, c) || named_as_retry(original.report, c);
          });
          if (chosen.empty()) chosen = fallback_id;  // "ID-retry-N" would be too long
        }
        Result<RetryDraft> draft = draft_retry(original, chosen, *cfg, submitter);
        if (!draft) {
          out->error = draft.error().message;
          out->nothing = draft.error().code == ErrorCode::kNotFound;
          return;
        }
        out->draft = std::move(*draft);
        out->submitted = intake->submit(out->draft.text, chosen, "/", submitter, *cfg,
                                        /*daemon_written=*/true);
        if (reports != nullptr && (out->submitted.job || !out->submitted.unopened_id.empty())) {
          // Admitted: the original names it now (the retry's finish links it again if a crash
          // comes first).
          Status linked = link_retry(*reports, id, chosen, now);
          // Pruned meanwhile: nothing to link (the reply still names the new job).
          if (!linked && linked.error().code != ErrorCode::kNotFound) {
            out->link_error = linked.error().message;
          }
        }
      },
      [this, id, out, uid = peer.uid, reply] {
        retrying_.erase(id);
        if (!out->error.empty()) {
          nlohmann::json answer = refuse(out->error);
          if (out->nothing) answer["nothing_to_retry"] = true;
          reply(answer);
          return;
        }
        if (!out->link_error.empty()) {
          log_warn("cannot link the retry into the original's report",
                   {{"job", id}, {"error", out->link_error}});
        }
        const RetryDraft& d = out->draft;
        nlohmann::json extra{{"retry_of", id},           {"failed", d.failed},
                             {"cancelled", d.cancelled}, {"gone", d.gone},
                             {"new_since", d.new_since}, {"warnings", d.warnings}};
        answer_submitted(out->submitted, uid, "retry", extra, reply);
      });
}

}  // namespace docpipe
