#pragma once
// The read-only status routes next to /metrics, on the same listener (docs/design.md "HTTP status
// endpoint"):
//   /healthz  200 while the event loop answers within `timeout` (liveness);
//   /readyz   200 while the loop answers, intake has started, the daemon is not stopping and the
//             spool takes a new file (readiness); 503 with the reasons otherwise;
//   /jobs/ID  the job's status (with its report once finished), for a caller presenting a bearer
//             token from http_tokens_file, with that user's rights: exactly what `docpipe status
//             ID` shows them. 401 without a valid token, 404 for a job they may not see (the same
//             answer as for a job that does not exist), 403 when no tokens are configured.
// Requests arrive on civetweb's threads; what needs the daemon's state runs on the loop thread
// (`post`) while the request's thread waits at most `timeout`.

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "config/http_tokens.h"
#include "core/credentials.h"
#include "core/result.h"
#include "daemon/metrics_server.h"

namespace docpipe {

class HttpStatus {
 public:
  // Runs `fn` on the loop thread soon; false if the loop no longer takes work (shutting down).
  using Post = std::function<bool(std::function<void()>)>;
  using JsonReply = std::function<void(nlohmann::json)>;
  // On the loop thread: the control socket's status reply for one job, as `peer` would get it.
  using JobStatus =
      std::function<void(const std::string& id, const Credentials& peer, JsonReply reply)>;
  // On the loop thread: why the daemon does not take work now ("stopping"), or "" when it does.
  using Readiness = std::function<std::string()>;
  using CredentialsFor = std::function<Result<Credentials>(uid_t)>;

  struct Deps {
    Post post;
    JobStatus job_status;
    Readiness readiness;
    std::string spool_dir;
    CredentialsFor credentials_for;  // the user database look-up (credentials_for_uid)
    std::chrono::milliseconds timeout{2000};
  };

  explicit HttpStatus(Deps deps) : deps_(std::move(deps)) {}

  // Any thread (the config's tokens, at start-up and on reload); nullptr: /jobs/ID is off.
  void set_tokens(std::shared_ptr<const HttpTokens> tokens);
  void add_routes(MetricsServer& server);

  HttpReply healthz(const HttpRequest& request) const;
  HttpReply readyz(const HttpRequest& request) const;
  HttpReply job(const HttpRequest& request) const;

 private:
  // Runs `fn` on the loop and waits for its answer; nullopt when the loop did not answer in time.
  template <typename T>
  std::optional<T> on_loop(std::function<void(std::function<void(T)>)> fn,
                           std::chrono::milliseconds timeout) const;
  std::shared_ptr<const HttpTokens> tokens() const;

  Deps deps_;
  mutable std::mutex tokens_mu_;
  std::shared_ptr<const HttpTokens> tokens_;
};

// Why `dir` would not take a new file now (not writable, no space or inodes), or "" if it would.
// Creates an unnamed O_TMPFILE (a named file removed at once where the file system has no
// O_TMPFILE), so nothing is left behind and no data is written.
std::string spool_write_problem(const std::string& dir);

}  // namespace docpipe
