#include "daemon/cli_client.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/fs_util.h"
#include "core/path_util.h"
#include "daemon/control_server.h"
#include "daemon/submit.h"

namespace docpipe {

namespace {

constexpr int kRequestTimeoutMs = 30000;

// A daemon's text that names files (warnings, paths) as a terminal may show it: control bytes
// (an escape sequence in a hostile file name) as '?'.
std::string printable(std::string text) {
  for (char& c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return text;
}

std::string human_duration(double seconds) {
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  } else if (s >= 60) {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lds", s);
  }
  return buf;
}

std::string progress_line(const nlohmann::json& job) {
  char buf[256];
  uint64_t done = job.value("done", uint64_t{0});
  uint64_t total = job.value("total", uint64_t{0});
  double pct = total ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 0;
  std::snprintf(buf, sizeof buf, "%s: %s %llu/%llu (%.0f%%), %llu failed, %.0f docs/s",
                job.value("id", std::string()).c_str(), job.value("state", std::string()).c_str(),
                static_cast<unsigned long long>(done), static_cast<unsigned long long>(total), pct,
                static_cast<unsigned long long>(job.value("failed", uint64_t{0})),
                job.value("documents_per_second", 0.0));
  std::string line = buf;
  if (job.contains("eta_seconds"))
    line += ", ETA " + human_duration(job["eta_seconds"].get<double>());
  if (job.contains("waiting_for")) {
    line += "; waiting for " + job.value("waiting_for", std::string()) + " on " +
            job.value("coordinator", std::string());
  } else if (job.contains("coordinator")) {
    line +=
        job.value("distributed", false)
            ? "; coordinated by " + job.value("coordinator", std::string())
            : "; on " + job.value("coordinator", std::string()) + " alone (NATS was unreachable)";
  }
  return line;
}

std::string command_lines(const nlohmann::json& commands);

// The "notifications" object: how many wait, and each webhook host's breaker as a command's is
// shown ("webhook host H: open since ...").
std::string notification_lines(const nlohmann::json& n) {
  std::string out = "  notifications: " + std::to_string(n.value("pending", 0)) + " pending\n";
  const std::string lines = command_lines(n.value("webhook_hosts", nlohmann::json::object()));
  size_t start = 0;
  while (start < lines.size()) {
    size_t end = lines.find('\n', start);
    if (end == std::string::npos) end = lines.size();
    std::string line = lines.substr(start, end - start);
    const std::string head = "  command ";
    if (line.starts_with(head)) line = "  webhook host " + line.substr(head.size());
    out += line + "\n";
    start = end + 1;
  }
  return out;
}

// The "commands" object of the daemon's status, as one line per command's breaker.
std::string command_lines(const nlohmann::json& commands) {
  std::string out;
  for (const auto& [name, c] : commands.items()) {
    const std::string state = c.value("state", std::string());
    const int consecutive = c.value("consecutive_failures", 0);
    const int threshold = c.value("failures", 0);
    out += "  command " + name + ": ";
    if (threshold == 0) {
      out += "breaker off\n";
      continue;
    }
    out += state;
    if (state == "closed") {
      if (consecutive > 0) {
        out += ", " + std::to_string(consecutive) + " of " + std::to_string(threshold) +
               " consecutive failures";
      }
    } else {
      out += " since " + c.value("opened_at", std::string()) + " after " +
             std::to_string(consecutive) + " consecutive failures";
      if (state == "open") {
        out += "; next probe at " + c.value("next_probe_at", std::string()) + " (open for " +
               std::to_string(c.value("open_ms", int64_t{0})) + " ms)";
      } else {
        out += c.value("probe_running", false) ? "; a probe document is running"
                                               : "; the next document probes";
      }
      if (c.contains("last_failure")) out += "; last: " + c.value("last_failure", std::string());
    }
    out += "\n";
  }
  return out;
}

// The "cluster" object of a node's status, as lines: this node and the nodes it sees.
std::string cluster_lines(const nlohmann::json& c) {
  std::string out =
      "  cluster: node " + c.value("node", std::string()) + ", stream " +
      c.value("stream", std::string()) + ", " +
      (c.value("connected", false) ? "connected to " + c.value("connected_url", std::string())
                                   : std::string("NOT connected to NATS (reconnecting)")) +
      "; holding " + std::to_string(c.value("held", uint64_t{0})) + " of " +
      std::to_string(c.value("max_ack_pending", uint64_t{0})) + " document messages; " +
      std::to_string(c.value("messages_pending", int64_t{0})) + " waiting in the stream\n";
  for (const auto& n : c.value("nodes", nlohmann::json::array())) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "    node %s: holding %llu of %llu, coordinating %llu job(s), seen %.0fs ago\n",
                  n.value("node", std::string()).c_str(),
                  static_cast<unsigned long long>(n.value("held", uint64_t{0})),
                  static_cast<unsigned long long>(n.value("max_ack_pending", uint64_t{0})),
                  static_cast<unsigned long long>(n.value("jobs_coordinated", uint64_t{0})),
                  n.value("seen_seconds_ago", 0.0));
    out += buf;
  }
  return out;
}

bool is_final(const std::string& state) {
  return state == "succeeded" || state == "failed" || state == "cancelled";
}

// Polls the job until it ends; prints a live line on a terminal, a line every few seconds
// otherwise. Returns 0 only if the job succeeded.
int wait_for_job(const std::string& id, const DaemonConfig& config, std::ostream& out,
                 std::ostream& err, const char* command = "submit") {
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  auto last_print = std::chrono::steady_clock::now() - std::chrono::hours(1);
  for (;;) {
    nlohmann::json reply;
    try {
      reply =
          control_request(config.control_socket, {{"op", "status"}, {"id", id}}, kRequestTimeoutMs);
    } catch (const std::exception& e) {
      // The daemon may be restarting; the job is safe in the spool. Keep waiting.
      if (std::chrono::steady_clock::now() - last_print > std::chrono::seconds(5)) {
        err << "docpipe " << command << ": " << e.what() << "; still waiting\n";
        last_print = std::chrono::steady_clock::now();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      continue;
    }
    if (!reply.value("ok", false)) {
      err << "docpipe " << command << ": " << reply.value("error", std::string("status failed"))
          << "\n";
      return 1;
    }
    const nlohmann::json& job = reply["job"];
    std::string state = job.value("state", std::string());
    auto now = std::chrono::steady_clock::now();
    if (is_final(state)) {
      if (tty) out << "\r\033[K";
      const nlohmann::json& report = job["report"];
      const auto& c = report["counts"];
      out << id << ": " << state << ", " << c.value("succeeded", 0) << " succeeded, "
          << c.value("failed", 0) << " failed, " << c.value("skipped", 0) << " skipped of "
          << c.value("total", 0) << " in " << report.value("duration_seconds", 0.0) << " s";
      if (report.contains("reason")) out << " (" << report["reason"].get<std::string>() << ")";
      out << "\n";
      for (const auto& f : report.value("failed_documents", nlohmann::json::array())) {
        // A document's error names its input already ("/in/a.txt: exec: ..."): say it once.
        const std::string input = f.value("input", std::string());
        const std::string error = f.value("error", std::string());
        out << "  failed: ";
        if (!error.starts_with(input + ": ")) out << input << ": ";
        out << error << "\n";
      }
      out.flush();
      return state == "succeeded" ? 0 : 1;
    }
    if (tty) {
      out << "\r\033[K" << progress_line(job) << std::flush;
    } else if (now - last_print >= std::chrono::seconds(2)) {
      out << progress_line(job) << "\n" << std::flush;
      last_print = now;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(tty ? 200 : 250));
  }
}

// Without a daemon: wait for the report to appear in the spool.
int wait_for_report(const std::string& id, const DaemonConfig& config, std::ostream& out) {
  out << "no daemon answers on " << config.control_socket << "; waiting for " << id
      << " to finish\n"
      << std::flush;
  for (;;) {
    for (const char* dir : {"done", "failed"}) {
      auto text = read_file(config.spool_dir + "/" + dir + "/" + id + ".report.json");
      if (!text) continue;
      nlohmann::json report = nlohmann::json::parse(*text, nullptr, false);
      std::string state = report.is_object() ? report.value("state", std::string()) : "";
      out << id << ": " << state << "\n";
      return state == "succeeded" ? 0 : 1;
    }
    if (control_socket_answers(config.control_socket)) return wait_for_job(id, config, out, out);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

// Reads `job_file` and sends it with `op` ("submit", "plan"): the reply when the daemon accepted
// it, else nullopt with the reasons written to `err` (prefixed "docpipe OP: " or the file name).
std::optional<nlohmann::json> send_job_file(const std::string& op, const std::string& job_file,
                                            const DaemonConfig& config, int timeout_ms,
                                            std::ostream& err) {
  auto text = read_file(job_file);
  if (!text) {
    err << "docpipe " << op << ": " << text.error().message << "\n";
    return std::nullopt;
  }
  nlohmann::json job = nlohmann::json::parse(*text, nullptr, false);
  if (job.is_discarded() || !job.is_object()) {
    // Let the daemon-side validator word the error (line and column); send it as a string.
    err << job_file << ": not a JSON object; run `docpipe validate " << job_file
        << "` for details\n";
    return std::nullopt;
  }
  if (!job.contains("id")) job["id"] = job_file_stem(job_file);
  nlohmann::json reply;
  try {
    reply = control_request(
        config.control_socket,
        {{"op", op}, {"job", job}, {"base_dir", std::string(parent_path(absolute_path(job_file)))}},
        timeout_ms);
  } catch (const std::exception& e) {
    err << "docpipe " << op << ": " << e.what() << "\n";
    return std::nullopt;
  }
  if (!reply.value("ok", false)) {
    if (reply.contains("errors")) {
      for (const auto& e : reply["errors"]) {
        err << job_file << ": " << e.value("message", std::string()) << "\n";
      }
    } else {
      err << "docpipe " << op << ": " << reply.value("error", std::string("refused")) << "\n";
    }
    return std::nullopt;
  }
  return reply;
}

}  // namespace

int cli_submit(const std::string& job_file, bool wait, const DaemonConfig& config,
               std::ostream& out, std::ostream& err) {
  if (!control_socket_answers(config.control_socket)) {
    std::string id;
    int rc = submit_by_drop(job_file, config, out, err, &id);
    if (rc != 0 || !wait) return rc;
    return wait_for_report(id, config, out);
  }
  std::optional<nlohmann::json> sent =
      send_job_file("submit", job_file, config, kRequestTimeoutMs, err);
  if (!sent) return 1;
  const nlohmann::json& reply = *sent;
  std::string id = reply["id"].get<std::string>();
  out << "submitted job \"" << id << "\" (" << reply.value("documents", 0) << " document(s))\n"
      << std::flush;
  if (reply.contains("note"))
    err << "docpipe submit: " << reply.value("note", std::string()) << "\n";
  return wait ? wait_for_job(id, config, out, err) : 0;
}

namespace {

// "open", or "paused since 2026-...Z by uid 0 (reason)".
std::string intake_text(const nlohmann::json& intake) {
  if (!intake.is_object() || intake.value("state", std::string()) != "paused") return "open";
  std::string text = "paused since " + intake.value("since", std::string()) + " by uid " +
                     std::to_string(intake.value("by_uid", 0u));
  const std::string reason = intake.value("reason", std::string());
  if (!reason.empty()) text += " (" + reason + ")";
  return text + "; no job starts until `docpipe resume`";
}

// "your jobs: 3 of 5 queued or running (quotas.default.max_queued_jobs); priority at most 5
// (quotas.groups.batch.max_priority)", or "... no cap" where none applies.
std::string quota_text(const nlohmann::json& q) {
  std::string text = "your jobs (uid " + std::to_string(q.value("uid", 0u)) +
                     "): " + std::to_string(q.value("jobs", int64_t{0}));
  const nlohmann::json max_jobs = q.value("max_queued_jobs", nlohmann::json());
  if (max_jobs.is_number_integer()) {
    text += " of " + std::to_string(max_jobs.get<int64_t>()) + " queued or running (" +
            q.value("max_queued_jobs_from", std::string()) + ")";
  } else {
    text += " queued or running, no cap";
  }
  const nlohmann::json max_priority = q.value("max_priority", nlohmann::json());
  if (max_priority.is_number_integer()) {
    text += "; priority at most " + std::to_string(max_priority.get<int64_t>()) + " (" +
            q.value("max_priority_from", std::string()) + ")";
  } else {
    text += "; any priority";
  }
  return text;
}

// pause or resume: one request, the intake state it leaves printed.
int intake_request(const char* name, nlohmann::json request, const DaemonConfig& config,
                   std::ostream& out, std::ostream& err) {
  nlohmann::json reply;
  try {
    reply = control_request(config.control_socket, request, kRequestTimeoutMs);
  } catch (const std::exception& e) {
    err << "docpipe " << name << ": " << e.what() << "\n";
    return 1;
  }
  if (!reply.value("ok", false)) {
    err << "docpipe " << name << ": " << reply.value("error", std::string("failed")) << "\n";
    return 1;
  }
  out << "intake: " << intake_text(reply.value("intake", nlohmann::json::object())) << "\n";
  if (reply.contains("note"))
    err << "docpipe " << name << ": " << reply.value("note", std::string()) << "\n";
  return 0;
}

}  // namespace

int cli_pause(const std::string& reason, const DaemonConfig& config, std::ostream& out,
              std::ostream& err) {
  nlohmann::json request{{"op", "pause"}};
  if (!reason.empty()) request["reason"] = reason;
  return intake_request("pause", std::move(request), config, out, err);
}

int cli_resume(const DaemonConfig& config, std::ostream& out, std::ostream& err) {
  return intake_request("resume", {{"op", "resume"}}, config, out, err);
}

int cli_status(const std::string& id, bool json, const DaemonConfig& config, std::ostream& out,
               std::ostream& err) {
  nlohmann::json request{{"op", "status"}};
  if (!id.empty()) request["id"] = id;
  nlohmann::json reply;
  try {
    reply = control_request(config.control_socket, request, kRequestTimeoutMs);
  } catch (const std::exception& e) {
    err << "docpipe status: " << e.what() << "\n";
    return 1;
  }
  if (!reply.value("ok", false)) {
    err << "docpipe status: " << reply.value("error", std::string("failed")) << "\n";
    return 1;
  }
  if (json) {
    out << reply.dump(2) << "\n";
    return 0;
  }
  if (!id.empty()) {
    const auto& job = reply["job"];
    if (job.contains("report")) {
      const auto& r = job["report"];
      out << id << ": " << r.value("state", std::string()) << ", "
          << r["counts"].value("succeeded", 0) << "/" << r["counts"].value("total", 0)
          << " succeeded, " << r["counts"].value("failed", 0) << " failed, finished "
          << r.value("finished_at", std::string()) << "\n";
      const nlohmann::json notify = r.value("notify", nlohmann::json::object());
      for (const auto& [channel, n] : notify.items()) {
        out << "  notify " << channel << ": " << n.value("state", std::string()) << " after "
            << n.value("attempts", 0) << " attempt(s)";
        if (n.contains("http_status")) out << ", HTTP " << n.value("http_status", 0);
        if (n.contains("next_attempt_at")) out << "; next at " << n.value("next_attempt_at", "");
        if (n.contains("last_error") && n.value("state", "") != "delivered") {
          out << "; last error: " << n.value("last_error", std::string());
        }
        out << "\n";
      }
    } else {
      out << progress_line(job) << "\n";
    }
    return 0;
  }
  const auto& d = reply["daemon"];
  out << "docpipe " << d.value("version", std::string()) << ", pid " << d.value("pid", 0) << ", up "
      << human_duration(d.value("uptime_seconds", 0.0)) << ", " << d.value("state", std::string())
      << "\n  jobs: " << d.value("jobs_running", 0) << " running, " << d.value("jobs_queued", 0)
      << " queued; documents in flight: " << d.value("documents_in_flight", 0)
      << "; buffers: " << d.value("buffer_bytes_in_use", 0) << " of "
      << d.value("memory_budget_bytes", 0) << " bytes\n";
  if (d.contains("intake")) out << "  intake: " << intake_text(d["intake"]) << "\n";
  if (d.contains("quota")) out << "  " << quota_text(d["quota"]) << "\n";
  if (d.contains("cluster")) out << cluster_lines(d["cluster"]);
  if (d.contains("commands")) out << command_lines(d["commands"]);
  if (d.contains("notifications")) out << notification_lines(d["notifications"]);
  for (const auto& job : reply["jobs"]) out << "  " << progress_line(job) << "\n";
  return 0;
}

int cli_cancel(const std::string& id, const DaemonConfig& config, std::ostream& out,
               std::ostream& err) {
  nlohmann::json reply;
  try {
    reply =
        control_request(config.control_socket, {{"op", "cancel"}, {"id", id}}, kRequestTimeoutMs);
  } catch (const std::exception& e) {
    err << "docpipe cancel: " << e.what() << "\n";
    return 1;
  }
  if (!reply.value("ok", false)) {
    err << "docpipe cancel: " << reply.value("error", std::string("failed")) << "\n";
    return 1;
  }
  out << id << ": " << reply.value("state", std::string("cancelling")) << "\n";
  return 0;
}

int cli_retry(const std::string& id, const std::string& new_id, bool wait,
              const DaemonConfig& config, std::ostream& out, std::ostream& err) {
  nlohmann::json request{{"op", "retry"}, {"id", id}};
  if (!new_id.empty()) request["new_id"] = new_id;
  nlohmann::json reply;
  try {
    // The daemon walks the original's inputs again: as long as a plan may take.
    reply = control_request(config.control_socket, request, 600000);
  } catch (const std::exception& e) {
    err << "docpipe retry: " << e.what() << "\n";
    return 1;
  }
  if (!reply.value("ok", false)) {
    err << "docpipe retry: " << reply.value("error", std::string("refused")) << "\n";
    for (const auto& e : reply.value("errors", nlohmann::json::array())) {
      err << "docpipe retry: " << e.value("message", std::string()) << "\n";
    }
    return reply.value("nothing_to_retry", false) ? 3 : 1;
  }
  const std::string retry_id = reply.value("id", std::string());
  out << "retrying " << reply.value("documents", uint64_t{0}) << " document(s) of job \"" << id
      << "\" as job \"" << retry_id << "\" (" << reply.value("failed", uint64_t{0}) << " failed, "
      << reply.value("cancelled", uint64_t{0}) << " never finished)\n"
      << std::flush;
  if (uint64_t gone = reply.value("gone", uint64_t{0}); gone > 0) {
    err << "docpipe retry: " << gone << " failed document(s) of \"" << id
        << "\" are not in its input now (moved, deleted or unreadable) and are left out\n";
  }
  if (uint64_t newer = reply.value("new_since", uint64_t{0}); newer > 0) {
    err << "docpipe retry: " << newer << " document(s) came into the input of \"" << id
        << "\" after it ran and are not retried: submit the job again for them\n";
  }
  for (const auto& w : reply.value("warnings", nlohmann::json::array())) {
    if (w.is_string()) err << "docpipe retry: " << printable(w.get<std::string>()) << "\n";
  }
  if (reply.contains("note"))
    err << "docpipe retry: " << reply.value("note", std::string()) << "\n";
  return wait ? wait_for_job(retry_id, config, out, err, "retry") : 0;
}

namespace {

// A plan walks the whole job and may hash inputs: longer than other requests.
constexpr int kPlanTimeoutMs = 600000;

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace

int cli_which(const std::string& output_file, bool json, const DaemonConfig& config,
              std::ostream& out, std::ostream& err) {
  nlohmann::json reply;
  try {
    reply =
        control_request(config.control_socket,
                        {{"op", "which"}, {"path", absolute_path(output_file)}}, kRequestTimeoutMs);
  } catch (const std::exception& e) {
    err << "docpipe which: " << e.what() << "\n";
    return 1;
  }
  if (!reply.value("ok", false)) {
    err << "docpipe which: " << reply.value("error", std::string("refused")) << "\n";
    return 1;
  }
  const nlohmann::json& l = reply["lineage"];
  if (json) {
    out << l.dump(2) << "\n";
    return 0;
  }
  out << "output:        " << l.value("output", std::string()) << "\n"
      << "job:           " << l.value("job", std::string()) << "\n"
      << "input:         " << l.value("input", std::string()) << "\n"
      << "input sha256:  " << l.value("input_sha256", std::string()) << "\n"
      << "chain:         " << l.value("chain", std::string()) << "\n";
  if (l.contains("chain_json") && l["chain_json"].is_object()) {
    for (const auto& step : l["chain_json"].value("steps", nlohmann::json::array())) {
      out << "  step:        " << step.value("op", std::string()) << " "
          << step.value("params", nlohmann::json::object()).dump() << " (version "
          << step.value("version", std::string()) << ")\n";
    }
  }
  out << "finished:      " << l.value("finished_at", std::string()) << "\n"
      << "output sha256: " << l.value("output_sha256", std::string())
      << (l.value("output_unchanged", false) ? "" : " (the file has changed since)") << "\n";
  return 0;
}

int cli_plan(const std::string& job_file, bool json, const DaemonConfig& config, std::ostream& out,
             std::ostream& err) {
  std::optional<nlohmann::json> sent = send_job_file("plan", job_file, config, kPlanTimeoutMs, err);
  if (!sent) return 1;
  const nlohmann::json& reply = *sent;
  const nlohmann::json& p = reply["plan"];
  const int rc = p.value("would_change", false) ? 2 : 0;
  if (json) {
    out << p.dump(2) << "\n";
    return rc;
  }
  const nlohmann::json& c = p["counts"];
  auto n = [&](const char* key) { return c.value(key, uint64_t{0}); };
  out << "plan for job \"" << p.value("id", std::string()) << "\" (if_exists "
      << p.value("if_exists", std::string()) << "), " << n("total") << " document(s):\n"
      << "  new              " << n("new") << "\n"
      << "  changed          " << n("changed") << "\n"
      << "  unchanged        " << n("unchanged") << "\n"
      << "  would overwrite  " << n("would_overwrite") << "\n";
  if (n("exists") > 0) out << "  exists (kept)    " << n("exists") << "\n";
  out << "  orphans          " << n("orphans") << "\n"
      << "  bytes to process " << human_bytes(p.value("bytes_to_process", uint64_t{0})) << "\n"
      << "  estimated time   "
      << (p["estimate_seconds"].is_number()
              ? "~" + human_duration(p["estimate_seconds"].get<double>())
              : std::string("unknown"))
      << " (" << p.value("estimate_basis", std::string()) << ")\n";
  if (n("hashed") > 0) {
    out << "  hashed           " << n("hashed")
        << " input(s) whose stat changed were read to compare\n";
  }
  for (const auto& d : p["documents"]) {
    const std::string action = d.value("action", std::string());
    const char* mark = action == "new" ? "+" : action == "changed" ? "~" : "!";
    out << mark << " " << action << ": " << printable(d.value("input", std::string())) << " -> "
        << printable(d.value("output", std::string())) << " ("
        << printable(d.value("why", std::string())) << ")\n";
  }
  if (p.value("documents_truncated", false)) out << "  ... (more not listed; see the counts)\n";
  for (const auto& o : p["orphans"]) {
    out << "- orphan: " << printable(o.value("output", std::string())) << " (its input "
        << printable(o.value("input", std::string())) << " is gone)\n";
  }
  if (p.value("orphans_truncated", false)) out << "  ... (more orphans not listed)\n";
  for (const auto& w : p["warnings"]) out << "warning: " << printable(w.get<std::string>()) << "\n";
  return rc;
}

}  // namespace docpipe
