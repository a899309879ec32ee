// The control socket's lineage requests (docs/design.md "Redo only what changed"): `which`
// (who produced a file) and `plan` (what a job would do). Both run on the executor: they read
// the lineage store and the file system.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/access_check.h"
#include "core/path_util.h"
#include "core/safe_fs.h"
#include "core/time_util.h"
#include "daemon/control_handler.h"
#include "daemon/intake.h"
#include "daemon/peer_credentials.h"
#include "daemon/plan.h"

namespace docpipe {

namespace {

nlohmann::json refuse(const std::string& message) { return {{"ok", false}, {"error", message}}; }

std::string quoted(const std::string& path) { return quote_client_text(path, 4096); }

nlohmann::json stamp_json(const FileStamp& f) {
  return {{"size", f.size}, {"mtime_ns", f.mtime_ns}, {"ino", f.ino}, {"dev", f.dev}};
}

// The answer to `which PATH` for `peer` (admin: may ask about any file).
nlohmann::json which_answer(const std::string& path, const Credentials& peer, bool admin,
                            LineageStore* store) {
  const std::string norm = normalize_path(path);
  // The folder resolved by the daemon; the caller's rights are then checked on the real path,
  // from "/" down, as the kernel would check them for the caller.
  const std::string parent = real_path(std::string(parent_path(norm)));
  if (parent.empty())
    return refuse("no such file: " + quoted(norm) + " (its folder does not exist)");
  if (!admin) {
    Status st = check_path_access(parent, peer, X_OK, "read");
    if (!st) {
      return refuse("not yours: you cannot read " + quoted(norm) + " (" + st.error().message + ")");
    }
  }
  const std::string real = (parent == "/" ? "" : parent) + "/" + std::string(base_name(norm));
  const int fd = ::open(real.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return refuse("no such file: " + quoted(norm));
    return refuse("cannot look at " + quoted(norm) + ": " + std::strerror(err));
  }
  struct stat st;
  const bool stated = ::fstat(fd, &st) == 0;
  const bool readable = admin || (stated && may_access(fd, st, peer, R_OK));
  ::close(fd);
  if (!stated) return refuse("cannot look at " + quoted(norm) + ": " + std::strerror(errno));
  if (!readable) return refuse("not yours: you cannot read " + quoted(norm));
  if (!S_ISREG(st.st_mode)) return refuse(quoted(norm) + " is not a regular file");
  if (store == nullptr) {
    return refuse("the lineage store is not available (see the daemon's log)");
  }
  // Recorded by the path the job named; the real path too, when the caller reached it through
  // a symlinked folder.
  Result<std::optional<LineageRow>> row = store->lookup(norm, /*with_chain_json=*/true);
  if (row && !*row && real != norm) row = store->lookup(real, true);
  if (!row) return refuse("cannot read the lineage store: " + row.error().message);
  if (!*row) {
    return refuse("no lineage record for " + quoted(norm) +
                  ": it was not written by a job with if_exists \"unchanged\", or its record "
                  "was pruned");
  }
  const LineageRow& r = **row;
  nlohmann::json chain = nlohmann::json::parse(r.chain_json, nullptr, false);
  const bool matches = r.output_stamp == stamp_of(st);
  return {{"ok", true},
          {"lineage",
           {{"output", r.output},
            {"job", r.job_id},
            {"input", r.input},
            {"input_sha256", r.input_sha256},
            {"input_stat", stamp_json(r.input_stamp)},
            {"chain", r.chain},
            {"chain_json", chain.is_discarded() ? nlohmann::json(nullptr) : chain},
            {"finished_at_ms", r.finished_at_ms},
            {"finished_at", format_utc(r.finished_at_ms)},
            {"output_sha256", r.output_sha256},
            {"output_stat", stamp_json(r.output_stamp)},
            // The file as it is now: its stat as the job left it (else edited or replaced since).
            {"output_unchanged", matches}}}};
}

}  // namespace

void ControlHandler::which(std::string path, const Credentials& peer, ControlServer::Reply reply) {
  auto out = std::make_shared<nlohmann::json>();
  deps_.executor.run([out, path = std::move(path), peer, admin = deps_.table.is_admin(peer),
                      store = deps_.lineage] { *out = which_answer(path, peer, admin, store); },
                     [out, reply] { reply(*out); });
}

void ControlHandler::plan(ControlRequest request, const Credentials& peer,
                          ControlServer::Reply reply) {
  std::string base_dir = request.base_dir.empty() ? deps_.spool.incoming() : request.base_dir;
  std::string default_id = "plan-" + std::to_string(deps_.clock.wall_ms());
  auto out = std::make_shared<nlohmann::json>();
  deps_.executor.run(
      [out, text = std::move(request.job_text), base_dir, default_id, list = request.list,
       submitter = submitter_for(peer), cfg = deps_.intake.config(), store = deps_.lineage,
       measured = deps_.metrics.measured()] {
        // Validated as for submit, with the caller's rights; nothing is claimed or queued.
        FieldErrors errors;
        std::optional<Error> shortage;
        std::optional<ValidatedJob> v = validate_job_text(text, default_id, base_dir, *cfg, errors,
                                                          submitter, false, &shortage);
        if (shortage) {
          *out = refuse("cannot plan the job now: " + shortage->message);
          return;
        }
        if (!v) {
          nlohmann::json list_errors = nlohmann::json::array();
          for (const auto& e : errors) {
            list_errors.push_back(
                {{"path", e.path}, {"reason", e.reason}, {"message", format_field_error(e)}});
          }
          *out = {{"ok", false}, {"error", "invalid job"}, {"errors", std::move(list_errors)}};
          return;
        }
        *out = {{"ok", true}, {"plan", plan_job(v->spec, store, list, measured)}};
      },
      [out, reply] { reply(*out); });
}

}  // namespace docpipe
