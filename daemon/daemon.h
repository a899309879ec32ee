#pragma once
// The daemon: one libuv loop thread owns job state, the spool and every handle; file and CPU
// work runs elsewhere (intake and finalisation on the libuv threadpool, documents in the
// Pipeline's own threads), and results come back through uv_async.
//
//   WatchFolder -> intake (threadpool: validate, claim or reject) -> queued jobs
//   -> admitted (max_active_jobs) -> Pipeline -> job_finished -> uv_async -> finalise (report)

#include <uv.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "config/daemon_config.h"
#include "core/spool.h"
#include "daemon/control_server.h"
#include "daemon/daemon_job.h"
#include "daemon/daemon_metrics.h"
#include "daemon/intake.h"
#include "daemon/service_notifier.h"
#include "daemon/submitter_store.h"
#include "daemon/watch_folder.h"
#include "pipeline/pipeline.h"

namespace prometheus {
class Collectable;
class Exposer;
class Registry;
}  // namespace prometheus

namespace docpipe {

class Daemon {
 public:
  // Re-reads the configuration on SIGHUP (the config file plus command-line overrides); throws
  // ConfigError (or another std::exception) when it is invalid.
  using ConfigLoader = std::function<DaemonConfig()>;

  // Sets up the spool, metrics and the pipeline. Throws std::runtime_error with a clear message
  // (e.g. the metrics port is in use) on a start-up failure.
  explicit Daemon(DaemonConfig config, ConfigLoader reload = nullptr);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Runs the loop until SIGINT/SIGTERM and a clean stop. Returns the process exit code.
  int run();

 private:
  struct Work;

  void queue_work(std::function<void()> work, std::function<void()> after);
  void resume_active_jobs();
  void start_intake();
  void on_job_file_ready(const std::string& name);
  void on_intake_result(IntakeResult result, std::shared_ptr<DaemonJob> job);
  // Creates the job and its journal (resume: replays an existing journal). Blocking.
  std::shared_ptr<DaemonJob> make_job(ValidatedJob validated, bool resume, Status& opened);
  void enqueue(std::shared_ptr<DaemonJob> job);
  void admit();
  void post_finished(DaemonJob* job);  // any thread
  void drain_finished();
  void finalize(std::shared_ptr<DaemonJob> job);
  void finish_unresumable(const std::string& id, const FieldErrors& errors, int attempts = 0);
  // Finishing that failed (full spool, no descriptors) is retried on the loop's timer.
  static constexpr uint64_t kFinishRetryBaseMs = 250;
  static constexpr uint64_t kFinishRetryMaxMs = 5000;
  static uint64_t finish_retry_delay_ms(int attempts);
  void retry_later(uint64_t delay_ms, std::function<void()> attempt);
  // Opens active/ID.json again later (a claimed or resumed job that could not be opened).
  void resume_later(const std::string& id, int attempts);
  void arm_retry_timer();
  void run_due_retries();
  void update_job_gauges();
  ServiceNotifier::Health health();
  void begin_shutdown(const char* signal_name);
  void reload();
  void apply_config(DaemonConfig next);

  // Control socket requests (daemon_control.cc). A caller sees and touches only the jobs it
  // submitted, unless it is root or in admin_group.
  static ControlLimits control_limits(const DaemonConfig& c);
  static std::string no_such_job(const std::string& id);
  bool can_see(const std::optional<Credentials>& submitter, const Credentials& peer) const;
  nlohmann::json visible_jobs(const Credentials& peer) const;
  void handle_control(ControlRequest request, const Credentials& peer, ControlServer::Reply reply);
  void control_submit(ControlRequest request, const Credentials& peer, ControlServer::Reply reply);
  void control_status(const std::string& id, const Credentials& peer, ControlServer::Reply reply);
  void control_cancel(const std::string& id, const Credentials& peer, ControlServer::Reply reply);
  nlohmann::json job_status(const DaemonJob& job) const;
  nlohmann::json daemon_status() const;

  DaemonConfig config_;  // loop thread only
  // What threadpool work (validation) reads: replaced whole on reload, never changed in place.
  std::shared_ptr<const DaemonConfig> intake_config_;
  ConfigLoader reload_config_;
  const bool durable_;
  Spool spool_;
  SubmitterStore submitters_{spool_, durable_};  // who each job acts for (threadpool only)
  int lock_fd_ = -1;  // flock on spool/docpipe.lock, held for the daemon's life
  uv_loop_t loop_{};
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  // The exposer holds collectables weakly: keep the process collector alive here.
  std::shared_ptr<prometheus::Collectable> process_collector_;
  std::unique_ptr<PipelineMetrics> pipeline_metrics_;
  std::unique_ptr<DaemonMetrics> metrics_;
  std::unique_ptr<Pipeline> pipeline_;
  std::unique_ptr<WatchFolder> watch_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<ServiceNotifier> notifier_;
  std::atomic<uint64_t> documents_finished_{0};  // bumped by pipeline threads, for the watchdog
  uint64_t rate_sample_documents_ = 0;
  uint64_t rate_sample_ms_ = 0;
  uv_signal_t sigint_{};
  uv_signal_t sigterm_{};
  uv_signal_t sighup_{};
  uv_async_t finished_async_{};
  uv_timer_t retry_timer_{};
  std::multimap<uint64_t, std::function<void()>> retries_;  // due (uv_now ms) -> attempt

  std::mutex finished_mu_;  // guards finished_ (pipeline threads push, the loop drains)
  std::vector<DaemonJob*> finished_;

  // Loop-thread state.
  std::map<std::string, std::shared_ptr<DaemonJob>> jobs_;  // queued or running, by id
  std::vector<std::shared_ptr<DaemonJob>> queued_;          // waiting for a slot
  std::set<std::string> running_;                           // ids admitted into the pipeline
  int64_t started_at_ms_ = 0;
  uint64_t submit_counter_ = 0;
  bool stopping_ = false;
};

}  // namespace docpipe
