#include "daemon/daemon.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>

#include "core/clock.h"
#include "core/time_util.h"
#include "core/transforms/command_pools.h"
#include "core/transforms/worker_pool.h"
#include "daemon/cluster_node.h"
#include "daemon/log.h"
#include "daemon/peer_credentials.h"
#include "daemon/retention.h"
#include "pipeline/local_work_queue.h"

namespace docpipe {

namespace {

// Threads that deliver completion notifications: one slow receiver (up to notify.timeout_ms per
// attempt) does not hold up the others' notifications.
constexpr int kNotifierThreads = 2;

PipelineOptions pipeline_options(const DaemonConfig& c, std::shared_ptr<CommandBreakers> breakers) {
  PipelineOptions options;
  options.breakers = std::move(breakers);
  options.readers = c.io_threads;
  options.writers = c.io_threads;
  options.workers = c.workers;
  options.max_in_flight_documents = static_cast<size_t>(c.max_in_flight_documents);
  options.memory_budget_bytes = static_cast<size_t>(c.memory_budget_bytes);
  options.fsync = c.durability_fsync;
  return options;
}

JobTableLimits table_limits(const DaemonConfig& c) {
  return {.max_active_jobs = c.max_active_jobs, .admin_gid = c.admin_gid};
}

}  // namespace

Daemon::Daemon(DaemonConfig config, ConfigLoader reload)
    : config_(std::move(config)),
      reload_config_(std::move(reload)),
      durable_(config_.durability_fsync),
      spool_(config_.spool_dir, config_.durability_fsync) {
  load_config_http_tokens(config_);  // the daemon's alone: CLI users need not read the file
  Status st = spool_.create_layout();
  if (!st) throw std::runtime_error("cannot create the spool: " + st.error().message);
  // One daemon per spool: a second one would resume the first one's active jobs.
  std::string lock_path = spool_.root() + "/docpipe.lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0 || ::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    throw std::runtime_error("cannot lock " + lock_path + ": " + std::strerror(errno) +
                             (errno == EWOULDBLOCK ? " (another docpipe runs on this spool)" : ""));
  }
  set_pool_event_sink([](const std::string& command, const std::string& what) {
    log_warn("exec pool process replaced", {{"command", command}, {"why", what}});
  });
  metrics_server_ = std::make_unique<MetricsServer>(config_.metrics_listen);
  http_status_ = std::make_unique<HttpStatus>(HttpStatus::Deps{
      .post = [this](std::function<void()> fn) { return post_to_loop(std::move(fn)); },
      .job_status =
          [this](const std::string& id, const Credentials& peer, HttpStatus::JsonReply reply) {
            ControlRequest request;
            request.op = ControlRequest::Op::kStatus;
            request.id = id;
            control_handler_->handle(std::move(request), peer, std::move(reply));
          },
      .readiness = [this]() -> std::string {
        if (table_->stopping()) return "stopping";
        if (!watch_) return "starting: resuming the jobs in active/";
        return "";
      },
      .spool_dir = spool_.root(),
      .credentials_for = credentials_for_uid});
  http_status_->set_tokens(config_.http_tokens);
  http_status_->add_routes(*metrics_server_);
  pipeline_metrics_ = std::make_unique<PipelineMetrics>(metrics_server_->registry());
  metrics_ = std::make_unique<DaemonMetrics>(metrics_server_->registry());
  breaker_monitor_ =
      std::make_unique<CommandBreakerMonitor>(*breakers_, metrics_server_->registry());
  breaker_monitor_->configure(config_.commands);
  init_webhook_transport();
  notifications_ =
      std::make_unique<Notifier>(Notifier::Deps{.spool_root = spool_.root(),
                                                .durable = durable_,
                                                .clock = system_clock(),
                                                .webhook = webhook_transport_,
                                                .command = command_transport_,
                                                .command_breakers = breakers_.get(),
                                                .registry = &metrics_server_->registry(),
                                                .reports = &finished_reports_},
                                 notifier_settings(config_));
  if (config_.cluster.enabled) {
    auto node = ClusterNode::start({.config = config_,
                                    .pipeline = pipeline_options(config_, breakers_),
                                    .pipeline_metrics = pipeline_metrics_.get(),
                                    .registry = &metrics_server_->registry(),
                                    .spool_root = spool_.root(),
                                    .current_config = [this] { return intake_->config(); },
                                    .adopt =
                                        [this](JobRecord record) {
                                          {
                                            std::lock_guard lock(adopt_mu_);
                                            adoptions_.push_back(std::move(record));
                                          }
                                          uv_async_send(finished_async_.get());
                                        }});
    if (!node) throw std::runtime_error("cannot start the cluster node: " + node.error().message);
    cluster_ = node->get();
    work_ = std::move(*node);
  } else {
    work_ = std::make_unique<LocalWorkQueue>(pipeline_options(config_, breakers_),
                                             pipeline_metrics_.get());
  }
  set_worker_concurrency("ocr", config_.ocr_concurrency);

  table_ = std::make_unique<JobTable>(
      JobTable::Deps{.work = *work_,
                     .executor = executor_,
                     .clock = system_clock(),
                     .retry_timer = retry_timer_,
                     .spool = spool_,
                     .durable = durable_,
                     .metrics = *metrics_,
                     .reopen = [this](const std::string& id) { return intake_->reopen(id); },
                     .wake = [this] { uv_async_send(finished_async_.get()); },
                     .quotas = &quotas_,
                     .notify = [this](NotifyRecord r) { notifications_->add(std::move(r)); },
                     .reports = &finished_reports_},
      table_limits(config_));
  open_lineage_store();
  intake_ = std::make_unique<JobIntake>(JobIntake::Deps{.executor = executor_,
                                                        .clock = system_clock(),
                                                        .spool = spool_,
                                                        .durable = durable_,
                                                        .submitters = submitters_,
                                                        .table = *table_,
                                                        .metrics = *metrics_,
                                                        .progress = documents_finished_,
                                                        .quotas = &quotas_,
                                                        .lineage = lineage_.get()},
                                        config_);
  control_handler_ = std::make_unique<ControlHandler>(
      ControlHandler::Deps{.executor = executor_,
                           .clock = system_clock(),
                           .spool = spool_,
                           .submitters = submitters_,
                           .table = *table_,
                           .intake = *intake_,
                           .work = *work_,
                           .metrics = *metrics_,
                           .breakers = breakers_.get(),
                           .durable = durable_,
                           .rescan_incoming =
                               [this] {
                                 if (watch_) watch_->rescan();
                               },
                           .quotas = &quotas_,
                           .notifications = [this] { return notifications_->status(); },
                           .lineage = lineage_.get(),
                           .reports = &finished_reports_});
}

void Daemon::open_lineage_store() {
  const std::string path = spool_.root() + "/" + LineageStore::kFileName;
  std::string note;
  auto store = LineageStore::open(path, durable_, &note);
  if (!note.empty()) log_error("lineage store damaged", {{"path", path}, {"what", note}});
  if (!store) {
    // Not the daemon's end: if_exists "unchanged" jobs then do every document, and which and
    // plan say the store is not available.
    log_error("cannot open the lineage store; if_exists \"unchanged\" redoes every document",
              {{"path", path}, {"error", store.error().message}});
    return;
  }
  lineage_ = std::move(*store);
}

Daemon::~Daemon() {
  if (metrics_server_) metrics_server_->stop();  // no scrape may run while the rest is torn down
  if (work_) work_->stop(std::chrono::milliseconds(config_.shutdown_grace_ms));
  CommandPools::instance().stop_all();  // no document runs any more
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

int Daemon::run() {
  control_handler_->set_started_at(system_clock().wall_ms());
  uv_loop_init(&loop_);
  open_handles();
  notifier_ = std::make_unique<ServiceNotifier>(&loop_, [this] { return health(); });
  notifier_->start();
  log_info("metrics listening", {{"address", metrics_server_->address()}});
  restore_pause();
  // Records an earlier run left (a few small files): read before jobs resume, delivered on the
  // notifier's own threads.
  notifications_->resume_pending();
  intake_->resume_active_jobs([this] {
    if (table_->stopping()) return;
    // Only now: the start's sweep of stale temp files in done/ and failed/ is over, and would
    // otherwise remove a report being rewritten.
    notifications_->start(kNotifierThreads);
    start_intake();
    run_retention();
  });

  uv_run(&loop_, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&loop_);
  if (rc != 0 || handles_open_ != 0) {
    log_error("event loop closed with handles still open",
              {{"error", rc != 0 ? uv_strerror(rc) : "a daemon handle is not closed"}});
    return 1;
  }
  log_info("docpipe stopped");
  return 0;
}

// The daemon's own handles: SIGINT/SIGTERM (stop), SIGHUP (reload), the finished-jobs wake-up
// and the retry timer. Opening them on a fresh loop cannot fail but for a programming error.
void Daemon::open_handles() {
  auto signal = [this](UvHandle<uv_signal_t>& h, int signum, uv_signal_cb cb) {
    if (h.open(this, [this](uv_signal_t* s) { return uv_signal_init(&loop_, s); }) == 0) {
      ++handles_open_;
      uv_signal_start(h.get(), cb, signum);
    }
  };
  signal(sighup_, SIGHUP,
         [](uv_signal_t* s, int) { UvHandle<uv_signal_t>::owner_of<Daemon>(s)->reload(); });
  signal(sigint_, SIGINT, [](uv_signal_t* s, int) {
    UvHandle<uv_signal_t>::owner_of<Daemon>(s)->begin_shutdown("SIGINT");
  });
  signal(sigterm_, SIGTERM, [](uv_signal_t* s, int) {
    UvHandle<uv_signal_t>::owner_of<Daemon>(s)->begin_shutdown("SIGTERM");
  });
  if (finished_async_.open(this, [this](uv_async_t* a) {
        return uv_async_init(&loop_, a, [](uv_async_t* a) {
          Daemon* self = UvHandle<uv_async_t>::owner_of<Daemon>(a);
          self->table_->drain_finished();
          self->drain_adoptions();
          self->drain_posted();
        });
      }) == 0) {
    ++handles_open_;
    std::lock_guard lock(post_mu_);
    post_open_ = true;
  }
  if (retry_timer_.open(&loop_) == 0) ++handles_open_;
  if (retention_timer_.open(&loop_) == 0) ++handles_open_;
}

bool Daemon::post_to_loop(std::function<void()> fn) {
  std::lock_guard lock(post_mu_);
  if (!post_open_) return false;
  posted_.push_back(std::move(fn));
  uv_async_send(finished_async_.get());
  return true;
}

void Daemon::drain_posted() {
  std::vector<std::function<void()>> work;
  {
    std::lock_guard lock(post_mu_);
    work.swap(posted_);
  }
  for (auto& fn : work) fn();
}

// Jobs the cluster node took over from a silent node: admitted and resumed here.
void Daemon::drain_adoptions() {
  std::vector<JobRecord> records;
  {
    std::lock_guard lock(adopt_mu_);
    records.swap(adoptions_);
  }
  for (JobRecord& r : records) {
    if (table_->stopping()) break;  // taken over again by another node once this one is gone
    const std::string id = r.id;
    intake_->adopt(std::move(r.id), std::move(r.text), std::move(r.submitter), [this, id](bool ok) {
      if (!ok && cluster_ != nullptr) cluster_->adoption_failed(id);
    });
  }
}

void Daemon::close_handles() {
  auto closed = [this] { --handles_open_; };
  retry_timer_.close(closed);
  retention_timer_.close(closed);
  {
    std::lock_guard lock(post_mu_);
    post_open_ = false;  // what was posted and not run is dropped: its waiter times out
  }
  finished_async_.close(closed);
  sigint_.close(closed);
  sigterm_.close(closed);
  sighup_.close(closed);
}

void Daemon::start_intake() {
  watch_ = std::make_unique<WatchFolder>(
      &loop_, spool_.incoming(), config_.settle_ms, config_.rescan_interval_ms, metrics_.get(),
      [this](const std::string& name) { intake_->on_job_file_ready(name); });
  intake_->set_forget([this](const std::string& name) {
    if (watch_) watch_->forget(name);
  });
  int rc = watch_->start();
  if (rc != 0) {
    log_error("cannot watch the incoming folder; relying on the periodic rescan",
              {{"dir", spool_.incoming()}, {"error", uv_strerror(rc)}});
  }
  control_ = std::make_unique<ControlServer>(
      &loop_, config_.control_socket, control_limits(config_),
      [this](ControlRequest request, const Credentials& peer, ControlServer::Reply reply) {
        control_handler_->handle(std::move(request), peer, std::move(reply));
      });
  std::string control_error = control_->start();
  if (!control_error.empty()) {
    // Intake through incoming/ still works; the CLI falls back to dropping files there.
    log_error("control socket unavailable", {{"error", control_error}});
  }
  log_info("docpipe ready",
           {{"spool", spool_.root()}, {"workers", std::to_string(config_.workers)}});
  notifier_->ready();
}

void Daemon::restore_pause() {
  // A pause recorded by an earlier run holds until `docpipe resume` (intake_pause.h). One that
  // cannot be read was still made by someone: intake stays paused, and says why.
  Result<std::optional<IntakePause>> pause = load_intake_pause(pause_file_path(spool_.root()));
  if (!pause) {
    log_error("cannot read the recorded pause; intake stays paused until `docpipe resume`",
              {{"error", pause.error().message}});
    table_->set_pause(IntakePause{system_clock().wall_ms(), 0,
                                  pause_reason("unreadable pause file: " + pause.error().message)});
    return;
  }
  if (!*pause) return;
  log_warn("intake is paused (recorded before this start); `docpipe resume` resumes it",
           {{"since", format_utc((*pause)->since_ms)},
            {"by_uid", std::to_string((*pause)->by_uid)},
            {"reason", (*pause)->reason}});
  table_->set_pause(**pause);
}

void Daemon::run_retention() {
  if (retention_running_ || table_->stopping()) return;
  retention_running_ = true;
  struct Pass {
    PruneResult pruned[3];
    std::optional<FolderUsage> usage[5];
    std::optional<Result<LineagePruneResult>> lineage;
  };
  auto pass = std::make_shared<Pass>();
  std::shared_ptr<const DaemonConfig> cfg = intake_->config();
  executor_.run(
      [this, pass, cfg, now = system_clock().wall_ms()] {
        const RetentionRule* rules[3] = {&cfg->retention.done, &cfg->retention.failed,
                                         &cfg->retention.rejected};
        const std::string dirs[3] = {spool_.done(), spool_.failed(), spool_.rejected()};
        const SpoolFolder kinds[3] = {SpoolFolder::kDone, SpoolFolder::kFailed,
                                      SpoolFolder::kRejected};
        PruneContext context;
        context.active = spool_.active();
        context.submitters = spool_.root() + "/submitters";
        context.notify = notify_folder(spool_.root());
        context.stop = &retention_stop_;
        context.group_lock = &finished_reports_.lock();
        for (size_t i = 0; i < 3; ++i) {
          if (rules[i]->max_age_days == 0 && rules[i]->max_jobs == 0) continue;
          pass->pruned[i] = prune_folder(dirs[i], kinds[i],
                                         PruneRule{.max_age_ms = rules[i]->max_age_days * 86400000,
                                                   .max_jobs = rules[i]->max_jobs},
                                         now, context);
        }
        const std::string all[5] = {spool_.incoming(), spool_.active(), spool_.done(),
                                    spool_.failed(), spool_.rejected()};
        for (size_t i = 0; i < 5; ++i) pass->usage[i] = folder_usage(all[i]);
        // Lineage rows whose output file is gone (docs/design.md "Redo only what changed"):
        // at most kLineageChecksPerPass rows a pass, going on where the last pass stopped.
        if (lineage_ != nullptr) {
          pass->lineage = prune_missing_outputs(*lineage_, lineage_cursor_, kLineageChecksPerPass,
                                                &retention_stop_);
        }
      },
      [this, pass] {
        retention_running_ = false;
        bool more = false;
        for (size_t i = 0; i < 3; ++i) {
          const PruneResult& r = pass->pruned[i];
          const char* folder = DaemonMetrics::kSpoolFolders[i + 2];
          if (r.jobs_removed > 0) {
            metrics_->retention_removed(i, r.jobs_removed);
            log_info("retention removed old jobs", {{"folder", folder},
                                                    {"jobs", std::to_string(r.jobs_removed)},
                                                    {"files", std::to_string(r.files_removed)},
                                                    {"bytes", std::to_string(r.bytes_removed)}});
          }
          more = more || r.more;
          for (const std::string& e : r.errors) {
            log_warn("retention cannot prune", {{"folder", folder}, {"error", e}});
          }
          if (r.errors_dropped > 0) {
            log_warn("retention cannot prune",
                     {{"folder", folder}, {"more_errors", std::to_string(r.errors_dropped)}});
          }
        }
        for (size_t i = 0; i < 5; ++i) {
          if (pass->usage[i])
            metrics_->spool_usage(i, pass->usage[i]->files, pass->usage[i]->bytes);
        }
        if (pass->lineage && !*pass->lineage) {
          log_warn("retention cannot prune the lineage store",
                   {{"error", pass->lineage->error().message}});
        } else if (pass->lineage) {
          const LineagePruneResult& l = **pass->lineage;
          if (l.removed > 0) {
            log_info(
                "retention removed lineage records of outputs that are gone",
                {{"records", std::to_string(l.removed)}, {"checked", std::to_string(l.checked)}});
          }
          more = more || l.more;
        }
        if (table_->stopping()) return;
        // The interval of now (a reload may have changed it); soon again when a pass was capped.
        const int64_t next_ms = more ? 100 : intake_->config()->retention.interval_ms;
        retention_timer_.arm(std::chrono::milliseconds(next_ms), [this] { run_retention(); });
      });
}

ServiceNotifier::Health Daemon::health() {
  ServiceNotifier::Health h;
  h.documents_finished = documents_finished_.load(std::memory_order_relaxed);
  h.busy = table_->busy() || work_->documents_in_flight() > 0;
  // Every document ends within its job's document_timeout_ms (it is cancelled otherwise), so a
  // busy pipeline with no document finished for longer than that, plus a margin, is stuck.
  h.stall_after_ms = table_->longest_document_timeout_ms() + 60000;
  uint64_t now = uv_now(&loop_);
  double rate = 0;
  if (rate_sample_ms_ != 0 && now > rate_sample_ms_) {
    rate = static_cast<double>(h.documents_finished - rate_sample_documents_) * 1000.0 /
           static_cast<double>(now - rate_sample_ms_);
  }
  rate_sample_documents_ = h.documents_finished;
  rate_sample_ms_ = now;
  char buf[160];
  std::snprintf(buf, sizeof buf, "%zu job(s) running, %zu queued, %.0f documents/s%s%s",
                table_->running(), table_->queued(), rate,
                table_->paused() ? ", intake paused" : "", table_->stopping() ? ", stopping" : "");
  h.status = buf;
  return h;
}

void Daemon::begin_shutdown(const char* signal_name) {
  if (table_->stopping()) {
    log_warn("already stopping; waiting for in-flight documents", {{"signal", signal_name}});
    return;
  }
  table_->begin_stopping();
  retention_stop_ = true;
  notifier_->stopping();
  log_info("stopping", {{"signal", signal_name}});
  if (watch_) watch_->close();
  if (control_) control_->close();
  // WorkQueue::stop() joins threads while in-flight documents finish: keep it off the loop.
  executor_.run(
      [this, grace = config_.shutdown_grace_ms] {
        work_->stop(std::chrono::milliseconds(grace));
        // exec pool processes: EOF and SIGTERM, SIGKILL after their stop_grace_ms.
        CommandPools::instance().stop_all();
        // An attempt in flight is cut short, uncounted; its record is resumed at the next start.
        notifications_->stop();
      },
      [this] {
        table_->finish_stopping();  // reports of jobs that finished meanwhile
        notifier_->close();
        close_handles();
      });
}

void Daemon::reload() {
  if (table_->stopping()) return;
  if (!reload_config_) {
    log_warn("SIGHUP ignored: the daemon was started without a reloadable config");
    return;
  }
  notifier_->reloading();
  log_info("reloading config");
  auto next = std::make_shared<std::optional<DaemonConfig>>();
  auto error = std::make_shared<std::string>();
  executor_.run(
      [load = reload_config_, next, error] {
        try {
          *next = load();
          load_config_http_tokens(**next);
        } catch (const std::exception& e) {
          *error = e.what();
        }
      },
      [this, next, error] {
        if (*next) {
          apply_config(std::move(**next));
        } else {
          log_error("config reload refused; keeping the old config", {{"error", *error}});
        }
        notifier_->ready();
      });
}

void Daemon::apply_config(DaemonConfig next) {
  // What cannot change under a running daemon keeps its start-up value until a restart.
  LogFields fixed;
  auto keep = [&fixed](const char* key, auto& now, const auto& old) {
    if (now != old) fixed.emplace_back(key, "changed; takes effect at restart");
    now = old;
  };
  keep("spool_dir", next.spool_dir, config_.spool_dir);
  keep("metrics_listen", next.metrics_listen, config_.metrics_listen);
  keep("control_socket", next.control_socket, config_.control_socket);
  keep("io_threads", next.io_threads, config_.io_threads);
  keep("durability", next.durability_fsync, config_.durability_fsync);
  // Validation asks config.cluster how this daemon runs (refusing what cluster mode cannot do).
  keep("cluster", next.cluster, config_.cluster);
  if (!fixed.empty()) log_warn("config reload: some keys need a restart", fixed);

  LogLevel level = LogLevel::kInfo;
  parse_log_level(next.log_level, level);
  log_configure(level, next.log_format == "json");
  work_->reconfigure({.workers = next.workers,
                      .max_in_flight_documents = static_cast<size_t>(next.max_in_flight_documents),
                      .memory_budget_bytes = static_cast<size_t>(next.memory_budget_bytes)});
  set_worker_concurrency("ocr", next.ocr_concurrency);
  if (watch_) watch_->set_timing(next.settle_ms, next.rescan_interval_ms);
  http_status_->set_tokens(next.http_tokens);
  if (control_) control_->set_limits(control_limits(next));
  breaker_monitor_->configure(next.commands);
  notifications_->configure(notifier_settings(next));
  config_ = std::move(next);
  intake_->set_config(config_);
  // Pools of commands the reload dropped or changed end once the jobs using them have finished.
  CommandPools::instance().retire_unlisted(config_.commands);
  log_info("config reloaded",
           {{"workers", std::to_string(config_.workers)},
            {"max_in_flight_documents", std::to_string(config_.max_in_flight_documents)},
            {"memory_budget_bytes", std::to_string(config_.memory_budget_bytes)},
            {"max_active_jobs", std::to_string(config_.max_active_jobs)},
            {"log_level", config_.log_level}});
  table_->set_limits(table_limits(config_));  // admits: max_active_jobs may have grown
}

}  // namespace docpipe
