#pragma once
// The daemon (ninja's Builder beside the Plan): one libuv loop thread that owns the handles,
// signals and reload, and wires the rooms together. Job state lives in the JobTable, documents
// flow through the WorkQueue, jobs come in through JobIntake (incoming/, resume) and the
// ControlHandler (socket), and /metrics is the MetricsServer's. File and CPU work runs elsewhere
// (the libuv threadpool, the pipeline's threads); results come back to the loop through uv_async.
//
//   WatchFolder / ControlServer -> JobIntake / ControlHandler (threadpool: validate, claim)
//   -> JobTable: queued -> admitted (max_active_jobs) -> WorkQueue -> job_finished -> uv_async
//   -> JobTable: finalise (report, moves out of active/)

#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/daemon_config.h"
#include "core/command_breaker.h"
#include "core/spool.h"
#include "daemon/cluster_node.h"
#include "daemon/command_breaker_monitor.h"
#include "daemon/control_handler.h"
#include "daemon/control_server.h"
#include "daemon/daemon_metrics.h"
#include "daemon/finished_reports.h"
#include "daemon/http_status.h"
#include "daemon/job_intake.h"
#include "daemon/job_table.h"
#include "daemon/loop_executor.h"
#include "daemon/loop_timer.h"
#include "daemon/metrics_server.h"
#include "daemon/notifier.h"
#include "daemon/notify_transports.h"
#include "daemon/quota_ledger.h"
#include "daemon/service_notifier.h"
#include "daemon/submitter_store.h"
#include "daemon/uv_handle.h"
#include "daemon/watch_folder.h"
#include "pipeline/pipeline_metrics.h"
#include "pipeline/work_queue.h"

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
  void open_handles();
  void close_handles();
  void start_intake();
  ServiceNotifier::Health health();
  // Intake paused as an earlier run left it (SPOOL/paused.json). Before intake starts.
  void restore_pause();
  // One retention pass on the executor (daemon/retention.h): prunes done/, failed/ and
  // rejected/ by the config of now, measures every spool folder, then arms the next pass.
  void run_retention();
  // Opens SPOOL/lineage.sqlite into lineage_ (a damaged one is moved aside); logs and leaves it
  // null if even a fresh one cannot be created.
  void open_lineage_store();
  void begin_shutdown(const char* signal_name);
  void reload();
  void apply_config(DaemonConfig next);
  void drain_adoptions();
  // Runs `fn` on the loop thread soon (any thread); false once the loop takes no more work.
  bool post_to_loop(std::function<void()> fn);
  void drain_posted();

  DaemonConfig config_;  // loop thread only
  ConfigLoader reload_config_;
  const bool durable_;
  Spool spool_;
  SubmitterStore submitters_{spool_, durable_};  // who each job acts for (threadpool only)
  // Rewrites of finished reports (notify sections, retry links), serialised with retention.
  FinishedReports finished_reports_{spool_.root(), durable_};
  int lock_fd_ = -1;  // flock on spool/docpipe.lock, held for the daemon's life
  uv_loop_t loop_{};
  // One circuit breaker per command; outlives the pipeline (work_) and the monitor.
  std::shared_ptr<CommandBreakers> breakers_ = std::make_shared<CommandBreakers>();
  // Declared before metrics_server_, so destroyed after it: if the constructor throws, the
  // server's threads are stopped (~MetricsServer) before what its routes call is gone.
  std::unique_ptr<HttpStatus> http_status_;  // /healthz, /readyz, /jobs/ID on metrics_server_
  // Work other threads hand to the loop (post_to_loop), run by finished_async_'s callback.
  std::mutex post_mu_;
  std::vector<std::function<void()>> posted_;
  bool post_open_ = false;  // finished_async_ is open: uv_async_send may be called
  std::unique_ptr<MetricsServer> metrics_server_;
  std::unique_ptr<CommandBreakerMonitor> breaker_monitor_;
  std::unique_ptr<PipelineMetrics> pipeline_metrics_;
  std::unique_ptr<DaemonMetrics> metrics_;
  // Completion notifications (issue 14): delivered on their own threads, never on the loop.
  WebhookTransport webhook_transport_;
  CommandTransport command_transport_;
  std::unique_ptr<Notifier> notifications_;
  std::unique_ptr<WorkQueue> work_;
  ClusterNode* cluster_ = nullptr;  // work_, when the config has a cluster section
  std::mutex adopt_mu_;
  std::vector<JobRecord> adoptions_;  // from a cluster thread to the loop
  LoopExecutor executor_{&loop_};
  LoopTimer retry_timer_;
  LoopTimer retention_timer_;
  bool retention_running_ = false;
  std::atomic<bool> retention_stop_{false};  // set at shutdown: a pass ends after its current job
  // Where the next retention pass goes on checking lineage rows (its executor task only: passes
  // never overlap).
  std::string lineage_cursor_;
  static constexpr size_t kLineageChecksPerPass = 100000;
  std::atomic<uint64_t> documents_finished_{0};  // bumped by pipeline threads, for the watchdog
  QuotaLedger quotas_;  // jobs per submitter on this node ("quotas"); table, intake, status
  std::unique_ptr<JobTable> table_;
  // SPOOL/lineage.sqlite (core/lineage_store.h); null when it cannot be opened at all.
  std::unique_ptr<LineageStore> lineage_;
  std::unique_ptr<JobIntake> intake_;
  std::unique_ptr<ControlHandler> control_handler_;
  std::unique_ptr<WatchFolder> watch_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<ServiceNotifier> notifier_;
  uint64_t rate_sample_documents_ = 0;
  uint64_t rate_sample_ms_ = 0;
  UvHandle<uv_signal_t> sigint_;
  UvHandle<uv_signal_t> sigterm_;
  UvHandle<uv_signal_t> sighup_;
  UvHandle<uv_async_t> finished_async_;  // wakes the loop to finalise finished jobs
  int handles_open_ = 0;                 // the five above; counted down in their close callbacks
};

}  // namespace docpipe
