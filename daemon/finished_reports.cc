#include "daemon/finished_reports.h"

#include "core/fs_util.h"

namespace docpipe {

Status FinishedReports::update(const std::string& id,
                               const std::function<void(nlohmann::ordered_json&)>& change,
                               const std::string& fallback) {
  std::lock_guard lock(mu_);
  for (const char* folder : {"/done/", "/failed/"}) {
    const std::string dir = root_ + folder;
    // The job file marks the job as there (retention removes it last).
    if (!path_exists(dir + id + ".json")) continue;
    const std::string path = dir + id + ".report.json";
    nlohmann::ordered_json report;
    if (auto text = read_file(path)) report = nlohmann::ordered_json::parse(*text, nullptr, false);
    if (!report.is_object()) {
      report = nlohmann::ordered_json::parse(fallback, nullptr, false);
      if (!report.is_object()) {
        return make_error(ErrorCode::kInvalidArgument,
                          path + ": missing or not a JSON object; not rewritten");
      }
    }
    change(report);
    return write_file_atomic(
        path, report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
        durable_);
  }
  return make_error(ErrorCode::kNotFound, "job \"" + id + "\" is not in done/ or failed/");
}

}  // namespace docpipe
