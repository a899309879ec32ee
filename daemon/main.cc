// docpipe: the command line (DESIGN.md "Command line"). CLI11 is included here only.
// Exit codes: 0 success, 1 failure of the thing asked, 2 usage or config error.

#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "config/daemon_config.h"
#include "core/fs_util.h"
#include "core/path_util.h"
#include "core/transform.h"
#include "core/transforms/isolated_worker.h"
#include "daemon/cli_client.h"
#include "daemon/daemon.h"
#include "daemon/log.h"

namespace {

using docpipe::DaemonConfig;

std::string current_dir() {
  char buf[4096];
  return ::getcwd(buf, sizeof buf) != nullptr ? std::string(buf) : std::string(".");
}

// Flags that override the config file; unset ones leave it alone.
struct Overrides {
  std::string config_path;
  std::string spool;
  std::string metrics_listen;
  int workers = 0;
  int io_threads = 0;
  int64_t max_in_flight = 0;
  int64_t memory_budget = 0;
  int64_t settle_ms = -1;
  int64_t rescan_ms = 0;
  std::string durability;
  std::string log_level;
  std::string log_format;

  void add_to(CLI::App* cmd, bool daemon_flags) {
    cmd->add_option("--config", config_path, "daemon config file (JSON)");
    cmd->add_option("--spool", spool, "spool folder (overrides spool_dir)");
    if (!daemon_flags) return;
    cmd->add_option("--metrics-listen", metrics_listen,
                    "HOST:PORT for /metrics (port 0: any free)");
    cmd->add_option("--workers", workers, "transformer threads")->check(CLI::PositiveNumber);
    cmd->add_option("--io-threads", io_threads, "reader and writer threads")
        ->check(CLI::PositiveNumber);
    cmd->add_option("--max-in-flight-documents", max_in_flight, "documents in the pipeline at once")
        ->check(CLI::PositiveNumber);
    cmd->add_option("--memory-budget-bytes", memory_budget, "bytes of document buffers in flight")
        ->check(CLI::PositiveNumber);
    cmd->add_option("--settle-ms", settle_ms, "stability wait for files written in place")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--rescan-interval-ms", rescan_ms, "periodic rescan of incoming/")
        ->check(CLI::PositiveNumber);
    cmd->add_option("--durability", durability, "fsync or none")
        ->check(CLI::IsMember({"fsync", "none"}));
    cmd->add_option("--log-level", log_level, "debug, info, warn or error")
        ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
    cmd->add_option("--log-format", log_format, "text or json")
        ->check(CLI::IsMember({"text", "json"}));
  }

  DaemonConfig load() const {
    DaemonConfig c = config_path.empty() ? docpipe::default_config(current_dir())
                                         : docpipe::load_config(config_path);
    if (!spool.empty()) {
      bool socket_follows = c.control_socket == c.spool_dir + "/control.sock";
      c.spool_dir = docpipe::absolute_path(spool);
      if (socket_follows) c.control_socket = c.spool_dir + "/control.sock";
    }
    if (!metrics_listen.empty()) c.metrics_listen = metrics_listen;
    if (workers > 0) c.workers = workers;
    if (io_threads > 0) c.io_threads = io_threads;
    if (max_in_flight > 0) c.max_in_flight_documents = max_in_flight;
    if (memory_budget > 0) c.memory_budget_bytes = memory_budget;
    if (settle_ms >= 0) c.settle_ms = settle_ms;
    if (rescan_ms > 0) c.rescan_interval_ms = rescan_ms;
    if (!durability.empty()) c.durability_fsync = durability == "fsync";
    if (!log_level.empty()) c.log_level = log_level;
    if (!log_format.empty()) c.log_format = log_format;
    docpipe::validate_config(c);
    return c;
  }
};

int cmd_run(const Overrides& flags) {
  DaemonConfig config = flags.load();
  docpipe::LogLevel level = docpipe::LogLevel::kInfo;
  docpipe::parse_log_level(config.log_level, level);
  docpipe::log_configure(level, config.log_format == "json");
  docpipe::log_info("docpipe starting", {{"version", DOCPIPE_VERSION},
                                         {"spool", config.spool_dir},
                                         {"metrics_listen", config.metrics_listen}});
  docpipe::Daemon daemon(std::move(config), [flags] { return flags.load(); });
  return daemon.run();
}

int cmd_validate(const Overrides& flags, const std::vector<std::string>& files) {
  DaemonConfig config = flags.load();
  bool all_valid = true;
  for (const std::string& file : files) {
    auto text = docpipe::read_job_file(file, config.max_job_file_bytes);
    if (!text) {
      std::cout << file << ": " << text.error().message << "\n";
      all_valid = false;
      continue;
    }
    std::string base(docpipe::parent_path(docpipe::absolute_path(file)));
    docpipe::FieldErrors errors;
    auto job =
        docpipe::validate_job_text(*text, docpipe::job_file_stem(file), base, config, errors);
    if (!job) {
      all_valid = false;
      for (const auto& e : errors)
        std::cout << file << ": " << docpipe::format_field_error(e) << "\n";
    } else {
      std::cout << file << ": valid, job \"" << job->spec.id << "\", " << job->documents
                << " document(s)\n";
    }
  }
  return all_valid ? 0 : 1;
}

int cmd_transforms(bool json) {
  auto all = docpipe::TransformRegistry::instance().all();
  if (json) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const auto* t : all) {
      nlohmann::ordered_json params = nlohmann::ordered_json::array();
      for (const auto& p : t->params) {
        nlohmann::ordered_json pj{{"name", p.name}, {"type", p.type}};
        if (p.default_value.empty()) {
          pj["required"] = true;
        } else {
          pj["default"] = nlohmann::ordered_json::parse(p.default_value);
        }
        pj["description"] = p.description;
        params.push_back(std::move(pj));
      }
      out.push_back({{"op", t->op},
                     {"description", t->description},
                     {"streaming", t->streaming},
                     {"params", std::move(params)}});
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  for (const auto* t : all) {
    std::cout << t->op << (t->streaming ? "  (streaming)" : "  (whole document)") << "\n    "
              << t->description << "\n";
    for (const auto& p : t->params) {
      std::cout << "    " << p.name << ": " << p.type
                << (p.default_value.empty() ? " (required)" : " = " + p.default_value) << "  "
                << p.description << "\n";
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // `docpipe __transform-worker ...`: this binary re-executed as an isolated transform's worker.
  if (int rc = docpipe::run_transform_worker_if_asked(argc, argv); rc >= 0) return rc;
  CLI::App app{"docpipe: document batch-processing daemon"};
  app.set_version_flag("--version", std::string("docpipe ") + DOCPIPE_VERSION);
  app.require_subcommand(1);

  Overrides run_flags;
  auto* run = app.add_subcommand("run", "Run the daemon in the foreground");
  run_flags.add_to(run, true);

  Overrides validate_flags;
  std::vector<std::string> validate_files;
  auto* validate = app.add_subcommand("validate", "Check job files without running them");
  validate_flags.add_to(validate, false);
  validate->add_option("JOB.json", validate_files, "job files")->required();

  Overrides submit_flags;
  std::string submit_file;
  bool submit_wait = false;
  auto* submit = app.add_subcommand(
      "submit", "Hand a job to the daemon (control socket; without a daemon, drop into incoming/)");
  submit_flags.add_to(submit, false);
  submit->add_option("JOB.json", submit_file, "job file")->required();
  submit->add_flag("--wait", submit_wait, "show progress; exit 0 only if the job succeeded");

  Overrides status_flags;
  std::string status_id;
  bool status_json = false;
  auto* status = app.add_subcommand("status", "Daemon state and running jobs, or one job");
  status_flags.add_to(status, false);
  status->add_option("JOB_ID", status_id, "one job");
  status->add_flag("--json", status_json, "machine-readable output");

  Overrides cancel_flags;
  std::string cancel_id;
  auto* cancel = app.add_subcommand("cancel", "Cancel a queued or running job");
  cancel_flags.add_to(cancel, false);
  cancel->add_option("JOB_ID", cancel_id, "the job")->required();

  Overrides retry_flags;
  std::string retry_id;
  std::string retry_new_id;
  bool retry_wait = false;
  auto* retry = app.add_subcommand(
      "retry",
      "A new job of the failed and cancelled documents of a finished job, with the same chain; "
      "exit 0 if submitted, 1 on error, 3 if nothing is left to retry");
  retry_flags.add_to(retry, false);
  retry->add_option("JOB_ID", retry_id, "the finished job")->required();
  retry->add_option("--id", retry_new_id, "the new job's id (default: JOB_ID-retry-N)");
  retry->add_flag("--wait", retry_wait, "show progress; exit 0 only if the retry succeeded");

  Overrides pause_flags;
  std::string pause_reason;
  auto* pause = app.add_subcommand(
      "pause", "Pause intake: no job starts (running ones go on) until `docpipe resume`");
  pause_flags.add_to(pause, false);
  pause->add_option("--reason", pause_reason, "why, shown in status (at most 200 bytes)");

  Overrides resume_flags;
  auto* resume =
      app.add_subcommand("resume", "Resume intake: queued jobs and waiting job files start");
  resume_flags.add_to(resume, false);

  Overrides which_flags;
  std::string which_file;
  bool which_json = false;
  auto* which = app.add_subcommand(
      "which", "Which job, input, input hash, chain and time produced an output file (lineage)");
  which_flags.add_to(which, false);
  which->add_option("OUTPUT_FILE", which_file, "an output file")->required();
  which->add_flag("--json", which_json, "machine-readable output");

  Overrides plan_flags;
  std::string plan_file;
  bool plan_json = false;
  auto* plan = app.add_subcommand(
      "plan",
      "What a job would do (new, changed, unchanged, would overwrite, orphans), without running "
      "it; exit 0 if nothing would change, 2 if something would, 1 on error");
  plan_flags.add_to(plan, false);
  plan->add_option("JOB.json", plan_file, "job file")->required();
  plan->add_flag("--json", plan_json, "machine-readable output");

  bool transforms_json = false;
  auto* transforms = app.add_subcommand("transforms", "List the transforms and their parameters");
  transforms->add_flag("--json", transforms_json, "machine-readable output");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  try {
    if (*run) return cmd_run(run_flags);
    if (*validate) return cmd_validate(validate_flags, validate_files);
    if (*submit) {
      DaemonConfig config = submit_flags.load();
      // Refused before anything reads the file whole (bounded again where it is read).
      docpipe::Status size = docpipe::check_job_file_size(submit_file, config.max_job_file_bytes);
      if (!size) {
        std::cerr << "docpipe submit: " << submit_file << ": " << size.error().message << "\n";
        return 1;
      }
      return docpipe::cli_submit(submit_file, submit_wait, config, std::cout, std::cerr);
    }
    if (*status) {
      return docpipe::cli_status(status_id, status_json, status_flags.load(), std::cout, std::cerr);
    }
    if (*cancel) return docpipe::cli_cancel(cancel_id, cancel_flags.load(), std::cout, std::cerr);
    if (*retry) {
      return docpipe::cli_retry(retry_id, retry_new_id, retry_wait, retry_flags.load(), std::cout,
                                std::cerr);
    }
    if (*pause) return docpipe::cli_pause(pause_reason, pause_flags.load(), std::cout, std::cerr);
    if (*resume) return docpipe::cli_resume(resume_flags.load(), std::cout, std::cerr);
    if (*transforms) return cmd_transforms(transforms_json);
    if (*which)
      return docpipe::cli_which(which_file, which_json, which_flags.load(), std::cout, std::cerr);
    if (*plan) {
      DaemonConfig config;
      try {
        config = plan_flags.load();
      } catch (const docpipe::ConfigError& e) {
        // For plan, 2 means "something would change": every error is 1.
        std::cerr << "docpipe: config error: " << e.what() << "\n";
        return 1;
      }
      docpipe::Status size = docpipe::check_job_file_size(plan_file, config.max_job_file_bytes);
      if (!size) {
        std::cerr << "docpipe plan: " << plan_file << ": " << size.error().message << "\n";
        return 1;
      }
      return docpipe::cli_plan(plan_file, plan_json, config, std::cout, std::cerr);
    }
  } catch (const docpipe::ConfigError& e) {
    std::cerr << "docpipe: config error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "docpipe: " << e.what() << "\n";
    return 1;
  }
  return 2;
}
