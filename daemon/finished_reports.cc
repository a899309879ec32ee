#include "daemon/finished_reports.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "core/fs_util.h"

namespace docpipe {

Status FinishedReports::update(const std::string& id,
                               const std::function<bool(nlohmann::ordered_json&)>& change,
                               const std::string& fallback) {
  std::lock_guard lock(mu_);
  for (const char* folder : {"/done/", "/failed/"}) {
    const std::string dir = root_ + folder;
    // The job file marks the job as there (retention removes it last).
    if (!path_exists(dir + id + ".json")) continue;
    const std::string path = dir + id + ".report.json";
    struct stat before {};
    const bool had = ::stat(path.c_str(), &before) == 0;
    nlohmann::ordered_json report;
    if (auto text = read_file(path)) report = nlohmann::ordered_json::parse(*text, nullptr, false);
    if (!report.is_object()) {
      report = nlohmann::ordered_json::parse(fallback, nullptr, false);
      if (!report.is_object()) {
        return make_error(ErrorCode::kInvalidArgument,
                          path + ": missing or not a JSON object; not rewritten");
      }
    }
    if (!change(report)) return {};
    Status written = write_file_atomic(
        path, report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
        durable_);
    if (written && had) {
      // Best effort: a lost mtime only makes retention keep the job a little longer.
      const struct timespec times[2] = {{0, UTIME_OMIT}, before.st_mtim};
      ::utimensat(AT_FDCWD, path.c_str(), times, 0);
    }
    return written;
  }
  return make_error(ErrorCode::kNotFound, "job \"" + id + "\" is not in done/ or failed/");
}

}  // namespace docpipe
