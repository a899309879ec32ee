#pragma once
// Changes to the report of a finished job (done/ID.report.json or failed/ID.report.json) after
// it finished: the notify section (daemon/notifier.h) and the retry links (daemon/job_retry.h).
// Each change reads the report as it is on disk, changes it and writes it back atomically, all
// under one lock, which retention also holds while it removes one job's files
// (PruneContext::group_lock). So no change undoes another, and a report is never written back
// for a job that retention removed (a lone report would make its id look finished forever).
// Blocking file work: call it off the loop thread.

#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "core/result.h"

namespace docpipe {

class FinishedReports {
 public:
  FinishedReports(std::string spool_root, bool durable)
      : root_(std::move(spool_root)), durable_(durable) {}

  // Applies `change` to job `id`'s report in done/ or failed/ (wherever its ID.json is) and
  // writes it atomically, unless `change` returns false (nothing to change). The report keeps
  // its mtime: retention ages a finished job by it, and a rewrite is not a new end. `fallback`:
  // the report's text to start from when the one on disk is missing or unreadable ("" : then
  // the change fails). kNotFound when the job is in neither folder (never finished here, or
  // pruned).
  Status update(const std::string& id,
                const std::function<bool(nlohmann::ordered_json& report)>& change,
                const std::string& fallback = {});

  // Held by retention across the check and removal of one finished job's files.
  std::mutex& lock() { return mu_; }

 private:
  const std::string root_;
  const bool durable_;
  std::mutex mu_;
};

}  // namespace docpipe
