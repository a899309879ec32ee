#pragma once
// Control socket requests (NDJSON): submit, status, cancel, list, pause, resume, answered on the
// loop thread
// from the job table; file work (validation, claiming, reading finished reports) goes to the
// executor. A caller sees and touches only the jobs it submitted, unless it is root or in
// admin_group (JobTable::can_see).

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "config/daemon_config.h"
#include "core/clock.h"
#include "core/spool.h"
#include "daemon/control_server.h"
#include "daemon/daemon_metrics.h"
#include "daemon/executor.h"
#include "daemon/finished_reports.h"
#include "daemon/job_intake.h"
#include "daemon/job_retry.h"
#include "daemon/job_table.h"
#include "daemon/submitter_store.h"
#include "pipeline/work_queue.h"

namespace docpipe {

// The control server's limits from the daemon config.
ControlLimits control_limits(const DaemonConfig& config);

class ControlHandler {
 public:
  struct Deps {
    Executor& executor;
    const Clock& clock;
    const Spool& spool;
    SubmitterStore& submitters;
    JobTable& table;
    JobIntake& intake;
    const WorkQueue& work;
    DaemonMetrics& metrics;
    const CommandBreakers* breakers = nullptr;  // status shows each command's breaker
    bool durable = true;                        // the pause file's changes are fsynced
    std::function<void()> rescan_incoming;      // on resume: job files that waited are taken
    const QuotaLedger* quotas = nullptr;        // status shows the caller's jobs against its cap
    // The completion notifications' part of status (Notifier::status); null: none.
    std::function<nlohmann::json()> notifications = nullptr;
    LineageStore* lineage = nullptr;  // which and plan read it (null: not available)
    // Finished reports a retry links itself into (null: retries are not linked; unit tests).
    FinishedReports* reports = nullptr;
  };
  explicit ControlHandler(Deps deps) : deps_(deps) {}

  // When the daemon started (wall clock), for uptime in status.
  void set_started_at(int64_t wall_ms) { started_at_ms_ = wall_ms; }

  void handle(ControlRequest request, const Credentials& peer, ControlServer::Reply reply);

 private:
  void submit(ControlRequest request, const Credentials& peer, ControlServer::Reply reply);
  void status(const std::string& id, const Credentials& peer, ControlServer::Reply reply);
  void finished_status(const std::string& id, const Credentials& peer, ControlServer::Reply reply);
  void cancel(const std::string& id, const Credentials& peer, ControlServer::Reply reply);
  // The reply to a job handed to JobIntake::submit (a submit, a retry), queueing it if accepted.
  // `extra`: more members for a reply that accepts it.
  void answer_submitted(const JobIntake::Submitted& submitted, uid_t uid, const char* source,
                        const nlohmann::json& extra, const ControlServer::Reply& reply);
  // docpipe retry (daemon/control_retry.cc, daemon/job_retry.h): a new job of a finished job's
  // failed and cancelled documents, with the rights of cancel.
  void retry(ControlRequest request, const Credentials& peer, ControlServer::Reply reply);
  // Its second half, on the executor: the new job drafted, submitted and linked.
  void prepare_retry(const std::string& id, const std::string& new_id, const FinishedJob& original,
                     const std::optional<Credentials>& submitter, const Credentials& peer,
                     const ControlServer::Reply& reply);
  // docpipe which / plan (daemon/control_lineage.cc): on the executor.
  void which(std::string path, const Credentials& peer, ControlServer::Reply reply);
  void plan(ControlRequest request, const Credentials& peer, ControlServer::Reply reply);
  // Root, the daemon's own user, or a member of admin_group.
  bool may_pause(const Credentials& peer) const;
  void pause(std::string reason, const Credentials& peer, ControlServer::Reply reply);
  void resume(const Credentials& peer, ControlServer::Reply reply);
  // Writes the table's pause state to SPOOL/paused.json on the executor, then calls `done`.
  void persist_pause(std::function<void(const Status&)> done);
  nlohmann::json daemon_status(const Credentials& peer) const;
  // The caller's jobs on this node and the caps that apply to it ("quota" in status).
  nlohmann::json quota_status(const Credentials& peer) const;

  struct PauseFile {
    std::mutex mu;  // one writer at a time; `wanted` is what the last change asked for
    std::optional<IntakePause> wanted;
  };

  Deps deps_;
  std::shared_ptr<PauseFile> pause_file_ = std::make_shared<PauseFile>();
  int64_t started_at_ms_ = 0;
  uint64_t submit_counter_ = 0;
  // Jobs a retry is being prepared for: a second retry of one of them waits for the first.
  std::set<std::string> retrying_;
};

}  // namespace docpipe
