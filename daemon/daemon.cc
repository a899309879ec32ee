#include "daemon/daemon.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <thread>

#include "core/fs_util.h"
#include "core/leftover_temps.h"
#include "core/path_util.h"
#include "core/time_util.h"
#include "daemon/log.h"

namespace docpipe {

struct Daemon::Work {
  uv_work_t req;
  std::function<void()> work;
  std::function<void()> after;
};

Daemon::Daemon(DaemonConfig config, ConfigLoader reload)
    : config_(std::move(config)),
      intake_config_(std::make_shared<const DaemonConfig>(config_)),
      reload_config_(std::move(reload)),
      durable_(config_.durability_fsync),
      spool_(config_.spool_dir, config_.durability_fsync) {
  Status st = spool_.create_layout();
  if (!st) throw std::runtime_error("cannot create the spool: " + st.error().message);
  // One daemon per spool: a second one would resume the first one's active jobs.
  std::string lock_path = spool_.root() + "/docpipe.lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0 || ::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    throw std::runtime_error("cannot lock " + lock_path + ": " + std::strerror(errno) +
                             (errno == EWOULDBLOCK ? " (another docpipe runs on this spool)" : ""));
  }

  registry_ = std::make_shared<prometheus::Registry>();
  prometheus::BuildGauge()
      .Name("docpipe_build_info")
      .Help("docpipe version; always 1")
      .Register(*registry_)
      .Add({{"version", DOCPIPE_VERSION}})
      .Set(1);
  pipeline_metrics_ = std::make_unique<PipelineMetrics>(*registry_);
  metrics_ = std::make_unique<DaemonMetrics>(*registry_);
  try {
    // civetweb holds a worker per connection until its request arrives: with the default 2
    // workers and 30 s request timeout, two idle connections stalled every scrape for 30 s.
    // More workers than a scraper needs, and an idle connection dropped after 1 s.
    exposer_ = std::make_unique<prometheus::Exposer>(
        std::vector<std::string>{"listening_ports", config_.metrics_listen, "num_threads", "8",
                                 "request_timeout_ms", "1000"});
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot serve metrics on " + config_.metrics_listen + ": " + e.what() +
                             " (is the port in use? set metrics_listen)");
  }
  exposer_->RegisterCollectable(registry_);
  process_collector_ = make_process_collector();
  exposer_->RegisterCollectable(process_collector_);

  PipelineOptions options;
  options.readers = config_.io_threads;
  options.writers = config_.io_threads;
  options.workers = config_.workers;
  options.max_in_flight_documents = static_cast<size_t>(config_.max_in_flight_documents);
  options.memory_budget_bytes = static_cast<size_t>(config_.memory_budget_bytes);
  options.fsync = config_.durability_fsync;
  pipeline_ = std::make_unique<Pipeline>(options, pipeline_metrics_.get());
}

namespace {

// civetweb's listener thread notices the stop request only when its poll() returns, which without
// traffic takes its full 2 s quantum; connecting to it now and then wakes it at once.
void stop_exposer(std::unique_ptr<prometheus::Exposer>& exposer, const std::string& listen) {
  if (!exposer) return;
  std::vector<int> ports = exposer->GetListeningPorts();
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  std::atomic<bool> stopped{false};
  std::thread waker;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  if (!ports.empty()) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
    if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons(static_cast<uint16_t>(ports.front()));
      addr_len = sizeof *v4;
    } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(static_cast<uint16_t>(ports.front()));
      addr_len = sizeof *v6;
    }
  }
  if (addr_len != 0) {
    waker = std::thread([&] {
      while (!stopped.load()) {
        int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
          ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), addr_len);
          ::close(fd);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
  }
  exposer.reset();
  stopped = true;
  if (waker.joinable()) waker.join();
}

}  // namespace

Daemon::~Daemon() {
  stop_exposer(exposer_, config_.metrics_listen);  // no scrape may run while the rest is torn down
  if (pipeline_) pipeline_->stop(std::chrono::milliseconds(config_.shutdown_grace_ms));
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

void Daemon::queue_work(std::function<void()> work, std::function<void()> after) {
  auto* w = new Work{{}, std::move(work), std::move(after)};
  w->req.data = w;
  int rc = uv_queue_work(
      &loop_, &w->req, [](uv_work_t* req) { static_cast<Work*>(req->data)->work(); },
      [](uv_work_t* req, int) {
        auto* w = static_cast<Work*>(req->data);
        w->after();
        delete w;
      });
  if (rc != 0) {  // never happens with a valid loop; run inline rather than lose the work
    w->work();
    w->after();
    delete w;
  }
}

int Daemon::run() {
  started_at_ms_ = wall_clock_ms();
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &finished_async_,
                [](uv_async_t* a) { static_cast<Daemon*>(a->data)->drain_finished(); });
  finished_async_.data = this;
  uv_timer_init(&loop_, &retry_timer_);
  retry_timer_.data = this;
  uv_signal_init(&loop_, &sigint_);
  uv_signal_init(&loop_, &sigterm_);
  uv_signal_init(&loop_, &sighup_);
  sigint_.data = sigterm_.data = sighup_.data = this;
  uv_signal_start(
      &sighup_, [](uv_signal_t* s, int) { static_cast<Daemon*>(s->data)->reload(); }, SIGHUP);
  uv_signal_start(
      &sigint_,
      [](uv_signal_t* s, int) { static_cast<Daemon*>(s->data)->begin_shutdown("SIGINT"); }, SIGINT);
  uv_signal_start(
      &sigterm_,
      [](uv_signal_t* s, int) { static_cast<Daemon*>(s->data)->begin_shutdown("SIGTERM"); },
      SIGTERM);

  notifier_ = std::make_unique<ServiceNotifier>(&loop_, [this] { return health(); });
  notifier_->start();
  std::vector<int> ports = exposer_->GetListeningPorts();
  std::string host = config_.metrics_listen.substr(0, config_.metrics_listen.rfind(':'));
  log_info("metrics listening",
           {{"address", host + ":" + std::to_string(ports.empty() ? 0 : ports.front())}});
  resume_active_jobs();

  uv_run(&loop_, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&loop_);
  if (rc != 0) {
    log_error("event loop closed with handles still open", {{"error", uv_strerror(rc)}});
    return 1;
  }
  log_info("docpipe stopped");
  return 0;
}

void Daemon::resume_active_jobs() {
  // Jobs an earlier run left in active/ go first, then intake starts, so that an incoming job
  // with the same id is refused rather than racing the resumed one.
  auto results =
      std::make_shared<std::vector<std::pair<IntakeResult, std::shared_ptr<DaemonJob>>>>();
  queue_work(
      [this, results, cfg = intake_config_] {
        spool_.remove_stale_temp_files();
        // Temp files that finished jobs could not remove (their folder turned read-only).
        LeftoverTemps::global().set_store(spool_.root() + "/leftover-temps.json");
        if (size_t n = LeftoverTemps::global().retry(); n > 0) {
          log_info("removed leftover temp files of finished jobs", {{"files", std::to_string(n)}});
        }
        submitters_.start();
        for (const std::string& id : list_active_job_ids(spool_)) {
          IntakeResult r = load_active_job(spool_, id, *cfg);
          std::shared_ptr<DaemonJob> job;
          if (r.kind == IntakeResult::Kind::kAccepted) {
            auto submitter = submitters_.load_active(id);
            if (submitter) r.job->spec.submitter = std::move(*submitter);
            if (!submitter) {
              r.kind = IntakeResult::Kind::kFailed;
              r.message = "cannot tell whom the job acts for: " + submitter.error().message;
              results->emplace_back(std::move(r), nullptr);
              continue;
            }
            // Outputs a crash left half-written: never renamed into place, so just litter.
            size_t removed = remove_docpipe_temp_files(r.job->spec.output.dir);
            if (removed > 0) {
              log_info("removed leftover temp files",
                       {{"job", id}, {"files", std::to_string(removed)}});
            }
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
      [this, results] {
        for (auto& [r, job] : *results) {
          const std::string id = job_file_stem(r.name);
          if (job) {
            log_info("job resumed",
                     {{"job", id}, {"already_done", std::to_string(job->resumed_documents())}});
            enqueue(std::move(job));
          } else if (r.kind == IntakeResult::Kind::kRejected) {
            finish_unresumable(id, r.errors);
          } else {
            log_error("cannot resume job; retrying", {{"job", id}, {"error", r.message}});
            resume_later(id, 1);
          }
        }
        if (!stopping_) start_intake();
      });
}

void Daemon::start_intake() {
  watch_ = std::make_unique<WatchFolder>(
      &loop_, spool_.incoming(), config_.settle_ms, config_.rescan_interval_ms, metrics_.get(),
      [this](const std::string& name) { on_job_file_ready(name); });
  int rc = watch_->start();
  if (rc != 0) {
    log_error("cannot watch the incoming folder; relying on the periodic rescan",
              {{"dir", spool_.incoming()}, {"error", uv_strerror(rc)}});
  }
  control_ = std::make_unique<ControlServer>(
      &loop_, config_.control_socket, control_limits(config_),
      [this](ControlRequest request, const Credentials& peer, ControlServer::Reply reply) {
        handle_control(std::move(request), peer, std::move(reply));
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

std::shared_ptr<DaemonJob> Daemon::make_job(ValidatedJob validated, bool resume, Status& opened) {
  std::string journal = spool_.active_journal(validated.spec.id);
  auto job = std::make_shared<DaemonJob>(std::move(validated.spec), validated.documents,
                                         wall_clock_ms(), metrics_.get(), &documents_finished_,
                                         [this](DaemonJob* j) { post_finished(j); });
  opened = job->open(journal, resume, durable_);
  return job;
}

void Daemon::on_job_file_ready(const std::string& name) {
  auto result = std::make_shared<IntakeResult>();
  auto job = std::make_shared<std::shared_ptr<DaemonJob>>();
  auto claimed_id = std::make_shared<std::string>();
  queue_work(
      [this, name, result, job, claimed_id, cfg = intake_config_] {
        *result = take_job_file(spool_, name, *cfg);
        if (result->kind != IntakeResult::Kind::kAccepted) return;
        // A dropped job acts for the owner of its file.
        result->job->spec.submitter =
            submitters_.adopt_claimed(result->job->spec.id, result->owner_uid);
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
          if (watch_) watch_->forget(result->name);
          resume_later(*claimed_id, 1);
          return;
        }
        on_intake_result(std::move(*result), std::move(*job));
      });
}

void Daemon::on_intake_result(IntakeResult r, std::shared_ptr<DaemonJob> job) {
  if (watch_) watch_->forget(r.name);
  switch (r.kind) {
    case IntakeResult::Kind::kAccepted:
      log_info("job accepted", {{"job", job->spec().id},
                                {"file", r.name},
                                {"documents", std::to_string(job->report().counts.total)}});
      enqueue(std::move(job));
      break;
    case IntakeResult::Kind::kRejected:
      metrics_->job_rejected();
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

void Daemon::enqueue(std::shared_ptr<DaemonJob> job) {
  jobs_[job->spec().id] = job;
  queued_.push_back(std::move(job));
  admit();
}

void Daemon::admit() {
  while (!stopping_ && running_.size() < static_cast<size_t>(config_.max_active_jobs) &&
         !queued_.empty()) {
    // Highest priority first; among equals, the earliest queued (stable).
    auto best = std::max_element(queued_.begin(), queued_.end(), [](const auto& a, const auto& b) {
      return a->spec().priority < b->spec().priority;
    });
    std::shared_ptr<DaemonJob> job = *best;
    queued_.erase(best);
    running_.insert(job->spec().id);
    job->mark_started(wall_clock_ms());
    log_info("job started", {{"job", job->spec().id}});
    pipeline_->add_job(job);
  }
  update_job_gauges();
}

void Daemon::update_job_gauges() {
  metrics_->jobs_active().Set(static_cast<double>(running_.size()));
  metrics_->jobs_queued().Set(static_cast<double>(queued_.size()));
}

ServiceNotifier::Health Daemon::health() {
  ServiceNotifier::Health h;
  h.documents_finished = documents_finished_.load(std::memory_order_relaxed);
  // A job waiting to finish (spool full) waits for space, not for the pipeline: not a stall.
  h.busy = std::any_of(jobs_.begin(), jobs_.end(),
                       [](const auto& j) { return !j.second->finish_state().finishing; }) ||
           pipeline_->documents_in_flight() > 0;
  // Every document ends within its job's document_timeout_ms (it is cancelled otherwise), so a
  // busy pipeline with no document finished for longer than that, plus a margin, is stuck.
  int64_t longest = 0;
  for (const auto& [id, job] : jobs_)
    longest = std::max(longest, job->spec().limits.document_timeout_ms);
  h.stall_after_ms = longest + 60000;
  uint64_t now = uv_now(&loop_);
  double rate = 0;
  if (rate_sample_ms_ != 0 && now > rate_sample_ms_) {
    rate = static_cast<double>(h.documents_finished - rate_sample_documents_) * 1000.0 /
           static_cast<double>(now - rate_sample_ms_);
  }
  rate_sample_documents_ = h.documents_finished;
  rate_sample_ms_ = now;
  char buf[160];
  std::snprintf(buf, sizeof buf, "%zu job(s) running, %zu queued, %.0f documents/s%s",
                running_.size(), queued_.size(), rate, stopping_ ? ", stopping" : "");
  h.status = buf;
  return h;
}

void Daemon::post_finished(DaemonJob* job) {
  {
    std::lock_guard<std::mutex> lock(finished_mu_);
    finished_.push_back(job);
  }
  uv_async_send(&finished_async_);
}

void Daemon::drain_finished() {
  // uv_async_send coalesces: take everything queued so far.
  std::vector<DaemonJob*> batch;
  {
    std::lock_guard<std::mutex> lock(finished_mu_);
    batch.swap(finished_);
  }
  for (DaemonJob* raw : batch) {
    auto it = jobs_.find(raw->spec().id);
    if (it == jobs_.end() || it->second.get() != raw) continue;
    finalize(it->second);
  }
}

void Daemon::begin_shutdown(const char* signal_name) {
  if (stopping_) {
    log_warn("already stopping; waiting for in-flight documents", {{"signal", signal_name}});
    return;
  }
  stopping_ = true;
  notifier_->stopping();
  log_info("stopping", {{"signal", signal_name}});
  if (watch_) watch_->close();
  if (control_) control_->close();
  // Pipeline::stop() joins threads while in-flight documents finish: keep it off the loop.
  queue_work(
      [this, grace = config_.shutdown_grace_ms] {
        pipeline_->stop(std::chrono::milliseconds(grace));
      },
      [this] {
        drain_finished();  // jobs that finished while stopping still get their report
        notifier_->close();
        retries_.clear();  // what is left finishes at the next start
        uv_close(reinterpret_cast<uv_handle_t*>(&retry_timer_), nullptr);
        uv_close(reinterpret_cast<uv_handle_t*>(&finished_async_), nullptr);
        uv_close(reinterpret_cast<uv_handle_t*>(&sigint_), nullptr);
        uv_close(reinterpret_cast<uv_handle_t*>(&sigterm_), nullptr);
        uv_close(reinterpret_cast<uv_handle_t*>(&sighup_), nullptr);
      });
}

void Daemon::reload() {
  if (stopping_) return;
  if (!reload_config_) {
    log_warn("SIGHUP ignored: the daemon was started without a reloadable config");
    return;
  }
  notifier_->reloading();
  log_info("reloading config");
  auto next = std::make_shared<std::optional<DaemonConfig>>();
  auto error = std::make_shared<std::string>();
  queue_work(
      [load = reload_config_, next, error] {
        try {
          *next = load();
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
  if (!fixed.empty()) log_warn("config reload: some keys need a restart", fixed);

  LogLevel level = LogLevel::kInfo;
  parse_log_level(next.log_level, level);
  log_configure(level, next.log_format == "json");
  pipeline_->reconfigure(next.workers, static_cast<size_t>(next.max_in_flight_documents),
                         static_cast<size_t>(next.memory_budget_bytes));
  if (watch_) watch_->set_timing(next.settle_ms, next.rescan_interval_ms);
  if (control_) control_->set_limits(control_limits(next));
  config_ = std::move(next);
  intake_config_ = std::make_shared<const DaemonConfig>(config_);
  log_info("config reloaded",
           {{"workers", std::to_string(config_.workers)},
            {"max_in_flight_documents", std::to_string(config_.max_in_flight_documents)},
            {"memory_budget_bytes", std::to_string(config_.memory_budget_bytes)},
            {"max_active_jobs", std::to_string(config_.max_active_jobs)},
            {"log_level", config_.log_level}});
  admit();  // max_active_jobs may have grown
}

}  // namespace docpipe
