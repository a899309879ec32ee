#include "daemon/http_status.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>

#include "core/job_spec.h"

namespace docpipe {

namespace {

// A finished job's report is read from the spool on the executor: more time than a loop ping.
constexpr int kJobTimeoutFactor = 5;

HttpReply json_error(int status, const std::string& message) {
  return HttpReply::json(status, nlohmann::json{{"error", message}}.dump() + "\n");
}

// The token of "Authorization: Bearer TOKEN" (the scheme is case-insensitive, RFC 7235).
std::string bearer_token(const std::string& header) {
  static constexpr std::string_view kScheme = "bearer ";
  if (header.size() <= kScheme.size()) return "";
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return "";
  }
  size_t start = header.find_first_not_of(' ', kScheme.size());
  if (start == std::string::npos) return "";
  size_t end = header.find_last_not_of(" \t");
  return header.substr(start, end + 1 - start);
}

}  // namespace

std::string spool_write_problem(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
    // A file system without O_TMPFILE (NFS, some FUSE): a named file, removed at once.
    std::string probe = dir + "/.docpipe-readyz-XXXXXX";
    fd = ::mkostemp(probe.data(), O_CLOEXEC);
    if (fd >= 0) ::unlink(probe.c_str());
  }
  if (fd < 0) return "spool " + dir + " takes no new file: " + std::strerror(errno);
  ::close(fd);
  struct statvfs vfs {};
  if (::statvfs(dir.c_str(), &vfs) == 0) {
    if (vfs.f_bavail == 0) return "spool " + dir + " has no free space";
    if (vfs.f_files != 0 && vfs.f_favail == 0) return "spool " + dir + " has no free inodes";
  }
  return "";
}

void HttpStatus::set_tokens(std::shared_ptr<const HttpTokens> tokens) {
  std::lock_guard lock(tokens_mu_);
  tokens_ = std::move(tokens);
}

std::shared_ptr<const HttpTokens> HttpStatus::tokens() const {
  std::lock_guard lock(tokens_mu_);
  return tokens_;
}

void HttpStatus::add_routes(MetricsServer& server) {
  server.add_route("/healthz", [this](const HttpRequest& r) { return healthz(r); });
  server.add_route("/readyz", [this](const HttpRequest& r) { return readyz(r); });
  server.add_route("/jobs", [this](const HttpRequest& r) { return job(r); });
}

template <typename T>
std::optional<T> HttpStatus::on_loop(std::function<void(std::function<void(T)>)> fn,
                                     std::chrono::milliseconds timeout) const {
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<T> value;
  };
  auto shared = std::make_shared<Shared>();
  bool posted = deps_.post([fn = std::move(fn), shared] {
    fn([shared](T value) {
      std::lock_guard lock(shared->mu);
      shared->value = std::move(value);
      shared->cv.notify_all();
    });
  });
  if (!posted) return std::nullopt;
  std::unique_lock lock(shared->mu);
  shared->cv.wait_for(lock, timeout, [&] { return shared->value.has_value(); });
  return shared->value;
}

HttpReply HttpStatus::healthz(const HttpRequest&) const {
  auto alive = on_loop<bool>([](std::function<void(bool)> done) { done(true); }, deps_.timeout);
  if (!alive) {
    return HttpReply::text(503, "unhealthy: the event loop did not answer within " +
                                    std::to_string(deps_.timeout.count()) + " ms\n");
  }
  return HttpReply::text(200, "ok\n");
}

HttpReply HttpStatus::readyz(const HttpRequest&) const {
  nlohmann::json problems = nlohmann::json::array();
  auto state = on_loop<std::string>(
      [readiness = deps_.readiness](std::function<void(std::string)> done) { done(readiness()); },
      deps_.timeout);
  if (!state) {
    problems.push_back("the event loop did not answer within " +
                       std::to_string(deps_.timeout.count()) + " ms");
  } else if (!state->empty()) {
    problems.push_back(*state);
  }
  std::string spool = spool_write_problem(deps_.spool_dir);
  if (!spool.empty()) problems.push_back(spool);
  const bool ready = problems.empty();
  nlohmann::json body{{"ready", ready}};
  if (!ready) body["problems"] = std::move(problems);
  return HttpReply::json(ready ? 200 : 503, body.dump() + "\n");
}

HttpReply HttpStatus::job(const HttpRequest& request) const {
  static constexpr std::string_view kPrefix = "/jobs/";
  std::string_view path = request.path;
  if (!path.starts_with(kPrefix) || path.size() == kPrefix.size()) {
    return json_error(404, "ask for one job: /jobs/ID");
  }
  const std::string id(path.substr(kPrefix.size()));
  std::shared_ptr<const HttpTokens> tokens = this->tokens();
  if (!tokens) {
    return json_error(403,
                      "job status over HTTP is off: the daemon config sets no http_tokens_file "
                      "(docpipe.json(5)); use `docpipe status ID`");
  }
  const std::string token = bearer_token(request.authorization);
  auto entry = token.empty() ? std::nullopt : tokens->find(token);
  if (!entry) {
    HttpReply reply = json_error(401, token.empty() ? "an Authorization: Bearer token is required"
                                                    : "the bearer token is not known");
    reply.headers = {{"WWW-Authenticate", "Bearer realm=\"docpipe\""}};
    return reply;
  }
  if (!is_valid_job_id(id)) return json_error(404, "no such job (not a valid job id)");
  // The user's groups as the user database has them now (admin_group membership counts).
  Result<Credentials> who = deps_.credentials_for(entry->uid);
  if (!who) {
    return json_error(
        503, "cannot look up the token's user " + entry->user + ": " + who.error().message);
  }
  auto answer = on_loop<nlohmann::json>(
      [status = deps_.job_status, id, peer = *who](std::function<void(nlohmann::json)> done) {
        status(id, peer, std::move(done));
      },
      kJobTimeoutFactor * deps_.timeout);
  if (!answer) {
    return json_error(503, "the daemon did not answer within " +
                               std::to_string((kJobTimeoutFactor * deps_.timeout).count()) + " ms");
  }
  if (!answer->value("ok", false)) {
    return json_error(404, answer->value("error", std::string("no such job")));
  }
  return HttpReply::json(200, (*answer)["job"].dump() + "\n");
}

}  // namespace docpipe
