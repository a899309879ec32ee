#include "daemon/daemon_metrics.h"

#include <dirent.h>
#include <prometheus/metric_family.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace docpipe {

DaemonMetrics::DaemonMetrics(prometheus::Registry& registry) {
  auto& jobs = prometheus::BuildCounter()
                   .Name("docpipe_jobs_total")
                   .Help("Jobs finished, by outcome (rejected: invalid job files)")
                   .Register(registry);
  jobs_[int(JobState::kSucceeded)] = &jobs.Add({{"outcome", "succeeded"}});
  jobs_[int(JobState::kFailed)] = &jobs.Add({{"outcome", "failed"}});
  jobs_[int(JobState::kCancelled)] = &jobs.Add({{"outcome", "cancelled"}});
  jobs_rejected_ = &jobs.Add({{"outcome", "rejected"}});
  jobs_active_ = &prometheus::BuildGauge()
                      .Name("docpipe_jobs_active")
                      .Help("Jobs whose documents are being processed")
                      .Register(registry)
                      .Add({});
  jobs_queued_ = &prometheus::BuildGauge()
                      .Name("docpipe_jobs_queued")
                      .Help("Valid jobs waiting for a slot (max_active_jobs)")
                      .Register(registry)
                      .Add({});
  intake_paused_ = &prometheus::BuildGauge()
                        .Name("docpipe_intake_paused")
                        .Help("1 while intake is paused (docpipe pause): no job starts")
                        .Register(registry)
                        .Add({});
  auto& spool_files = prometheus::BuildGauge()
                          .Name("docpipe_spool_files")
                          .Help(
                              "Files in each spool folder (temp files left out), at the last "
                              "retention pass")
                          .Register(registry);
  auto& spool_bytes = prometheus::BuildGauge()
                          .Name("docpipe_spool_bytes")
                          .Help(
                              "Bytes of the files in each spool folder, at the last retention "
                              "pass")
                          .Register(registry);
  for (size_t i = 0; i < 5; ++i) {
    spool_files_[i] = &spool_files.Add({{"folder", kSpoolFolders[i]}});
    spool_bytes_[i] = &spool_bytes.Add({{"folder", kSpoolFolders[i]}});
  }
  auto& removed = prometheus::BuildCounter()
                      .Name("docpipe_retention_removed_jobs_total")
                      .Help("Finished and rejected jobs removed from the spool by retention")
                      .Register(registry);
  for (size_t i = 0; i < 3; ++i) {
    retention_removed_[i] = &removed.Add({{"folder", kSpoolFolders[i + 2]}});
  }
  auto& refusals = prometheus::BuildCounter()
                       .Name("docpipe_quota_refusals_total")
                       .Help(
                           "Submits and dropped job files refused for their submitter's quota, "
                           "by the cap they were over")
                       .Register(registry);
  quota_refusals_[0] = &refusals.Add({{"reason", "queued_jobs"}});
  quota_refusals_[1] = &refusals.Add({{"reason", "priority"}});
  auto& input_actions =
      prometheus::BuildCounter()
          .Name("docpipe_input_actions_total")
          .Help(
              "Inputs deleted or moved after their document (input.after_success, "
              "input.after_failure), by action and outcome")
          .Register(registry);
  for (int a = 0; a < 2; ++a) {
    for (int o = 0; o < 2; ++o) {
      input_actions_[a][o] = &input_actions.Add(
          {{"action", a == 0 ? "delete" : "move"}, {"outcome", o == 0 ? "done" : "failed"}});
    }
  }
  auto& docs = prometheus::BuildCounter()
                   .Name("docpipe_documents_total")
                   .Help("Documents finished, by outcome")
                   .Register(registry);
  documents_[0] = &docs.Add({{"outcome", "succeeded"}});
  documents_[1] = &docs.Add({{"outcome", "failed"}});
  documents_[2] = &docs.Add({{"outcome", "skipped"}});
  auto& bytes = prometheus::BuildCounter()
                    .Name("docpipe_document_bytes_total")
                    .Help("Document bytes read (in) and written (out)")
                    .Register(registry);
  bytes_in_ = &bytes.Add({{"direction", "in"}});
  bytes_out_ = &bytes.Add({{"direction", "out"}});
  retries_ = &prometheus::BuildCounter()
                  .Name("docpipe_document_retries_total")
                  .Help("Document attempts retried after a transient failure")
                  .Register(registry)
                  .Add({});
  // Jobs last from milliseconds (one small document) to hours (large batches).
  prometheus::Histogram::BucketBoundaries buckets;
  for (double b = 0.001; b < 20000; b *= 4) buckets.push_back(b);
  job_duration_ = &prometheus::BuildHistogram()
                       .Name("docpipe_job_duration_seconds")
                       .Help("Time from a job's claim to its report")
                       .Register(registry)
                       .Add({}, buckets);
  auto& intake = prometheus::BuildCounter()
                     .Name("docpipe_intake_events_total")
                     .Help("Job file candidates seen, by source")
                     .Register(registry);
  intake_[int(IntakeSource::kWatch)] = &intake.Add({{"source", "watch"}});
  intake_[int(IntakeSource::kRescan)] = &intake.Add({{"source", "rescan"}});
  intake_[int(IntakeSource::kSocket)] = &intake.Add({{"source", "socket"}});
  intake_overflows_ = &prometheus::BuildCounter()
                           .Name("docpipe_intake_overflows_total")
                           .Help(
                               "Times the watch folder's inotify queue overflowed (events lost; "
                               "incoming/ was rescanned at once)")
                           .Register(registry)
                           .Add({});
}

void DaemonMetrics::job_finished(JobState state, double duration_seconds) {
  jobs_[int(state)]->Increment();
  job_duration_->Observe(duration_seconds);
}

void DaemonMetrics::document_finished(const DocumentOutcome& o) {
  switch (o.state) {
    case DocumentState::kSucceeded:
      documents_[0]->Increment();
      break;
    case DocumentState::kFailed:
      documents_[1]->Increment();
      break;
    case DocumentState::kSkipped:
      documents_[2]->Increment();
      break;
    case DocumentState::kCancelled:
      break;  // not processed; resumed or reported as cancelled
  }
  if (o.attempts > 1) retries_->Increment(o.attempts - 1);
  bytes_in_->Increment(static_cast<double>(o.bytes_in));
  bytes_out_->Increment(static_cast<double>(o.bytes_out));
}

namespace {

// process_* metrics as the Prometheus client libraries define them, from /proc/self.
class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    long ticks = ::sysconf(_SC_CLK_TCK);
    long page = ::sysconf(_SC_PAGESIZE);
    double cpu = 0, start = 0, rss = 0, vsize = 0;
    if (FILE* f = std::fopen("/proc/self/stat", "r")) {
      char buf[4096];
      size_t n = std::fread(buf, 1, sizeof buf - 1, f);
      std::fclose(f);
      buf[n] = 0;
      // Fields after the command name, which is in parentheses and may contain spaces.
      if (const char* p = std::strrchr(buf, ')')) {
        unsigned long utime = 0, stime = 0, vsz = 0;
        unsigned long long starttime = 0;
        long rss_pages = 0;
        if (std::sscanf(p + 2,
                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
                        "%*d %llu %lu %ld",
                        &utime, &stime, &starttime, &vsz, &rss_pages) == 5) {
          cpu = static_cast<double>(utime + stime) / static_cast<double>(ticks);
          rss = static_cast<double>(rss_pages) * static_cast<double>(page);
          vsize = static_cast<double>(vsz);
          start = boot_time() + static_cast<double>(starttime) / static_cast<double>(ticks);
        }
      }
    }
    out.push_back(family("process_cpu_seconds_total", "Total user and system CPU time in seconds.",
                         prometheus::MetricType::Counter, cpu));
    out.push_back(family("process_resident_memory_bytes", "Resident memory size in bytes.",
                         prometheus::MetricType::Gauge, rss));
    out.push_back(family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                         prometheus::MetricType::Gauge, vsize));
    out.push_back(family("process_start_time_seconds",
                         "Start time of the process since unix epoch in seconds.",
                         prometheus::MetricType::Gauge, start));
    out.push_back(family("process_open_fds", "Number of open file descriptors.",
                         prometheus::MetricType::Gauge, count_fds()));
    return out;
  }

 private:
  static prometheus::MetricFamily family(const char* name, const char* help,
                                         prometheus::MetricType type, double value) {
    prometheus::MetricFamily f;
    f.name = name;
    f.help = help;
    f.type = type;
    prometheus::ClientMetric m;
    if (type == prometheus::MetricType::Counter) {
      m.counter.value = value;
    } else {
      m.gauge.value = value;
    }
    f.metric.push_back(m);
    return f;
  }

  static double count_fds() {
    double n = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
      while (struct dirent* e = ::readdir(d)) {
        if (e->d_name[0] != '.') ++n;
      }
      ::closedir(d);
      n -= 1;  // the descriptor opendir itself holds
    }
    return n;
  }

  static double boot_time() {
    double btime = 0;
    if (FILE* f = std::fopen("/proc/stat", "r")) {
      char line[256];
      while (std::fgets(line, sizeof line, f)) {
        if (std::sscanf(line, "btime %lf", &btime) == 1) break;
      }
      std::fclose(f);
    }
    return btime;
  }
};

}  // namespace

std::shared_ptr<prometheus::Collectable> make_process_collector() {
  return std::make_shared<ProcessCollector>();
}

MeasuredThroughput DaemonMetrics::measured() const {
  MeasuredThroughput m;
  m.job_seconds = job_duration_->Collect().histogram.sample_sum;
  m.bytes_in = bytes_in_->Value();
  for (prometheus::Counter* c : documents_) m.documents += c->Value();
  return m;
}

}  // namespace docpipe
