// The monitoring files in deploy/ against a real Prometheus server: the shipped scrape config
// (with a 1 s interval and the test daemon's port) scrapes a real daemon that runs a job; the
// job's document count must show through Prometheus's HTTP API, and every PromQL expression of
// the Grafana dashboard and of the alert rules must evaluate without error, name only metrics the
// daemon exports, and leave a healthy daemon without firing alerts.

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <regex>
#include <set>

#include "tests/e2e/harness.h"
#include "tests/support/nats_server.h"

namespace e2e {
namespace {

constexpr int kDocuments = 40;
// Prometheus answers within ~0.1 s, but the first sample is queryable only after ~6 s.
constexpr milliseconds kFirstSampleTimeout{60000};

const std::string kDeployDir = std::string(DOCPIPE_SOURCE_DIR) + "/deploy";

// The absolute path of `name` in $PATH, or "" if it is not installed.
std::string find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (end > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

// A port that was free a moment ago: bind 127.0.0.1:0, read the port, close. Prometheus has no
// way to report the port it picked itself.
int free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  REQUIRE(ok);
  return ntohs(addr.sin_port);
}

std::string url_encode(std::string_view text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// Replaces the single occurrence of `from` in `text`; fails the test if there is not exactly one,
// so that a change to the shipped file cannot silently leave the test on the old values.
void replace_once(std::string& text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, "deploy/prometheus/prometheus.yml lacks " << from);
  REQUIRE_MESSAGE(text.find(from, at + 1) == std::string::npos,
                  "deploy/prometheus/prometheus.yml has " << from << " more than once");
  text.replace(at, from.size(), to);
}

// A `prometheus` server on 127.0.0.1 with its data in `dir`, stopped by the destructor.
class PrometheusServer {
 public:
  PrometheusServer(const std::string& binary, const std::string& dir)
      : address_("127.0.0.1:" + std::to_string(free_loopback_port())), log_path_(dir + "/log") {
    pid_ = spawn_process(
        {binary, "--config.file=" + dir + "/prometheus.yml", "--storage.tsdb.path=" + dir + "/data",
         "--web.listen-address=" + address_, "--log.level=warn"},
        log_path_);
    bool ready = poll_until(kStartTimeout, [&] {
      if (exited()) return true;
      try {
        return http_get(address_, "/-/ready").status == 200;
      } catch (const std::runtime_error&) {
        return false;  // not listening yet
      }
    });
    if (exited() || !ready) {
      stop();  // FAIL throws: no destructor runs for a half-constructed object
      FAIL("prometheus did not get ready on " << address_ << ":\n" << log());
    }
  }

  ~PrometheusServer() { stop(); }
  PrometheusServer(const PrometheusServer&) = delete;
  PrometheusServer& operator=(const PrometheusServer&) = delete;

  std::string log() const { return file_exists(log_path_) ? read_file(log_path_) : ""; }

  // GET an API path; the parsed JSON body, whatever the HTTP status (errors come as JSON too).
  nlohmann::json api(const std::string& path_and_query) const {
    HttpResponse r = http_get(address_, path_and_query);
    try {
      return nlohmann::json::parse(r.body);
    } catch (const nlohmann::json::exception&) {
      throw std::runtime_error("prometheus " + path_and_query + ": status " +
                               std::to_string(r.status) + ", not JSON: " + r.body.substr(0, 300));
    }
  }

  // An instant query: {"status": "success"|"error", "data": {"result": [...]}, "error": ...}.
  nlohmann::json query(const std::string& promql) const {
    return api("/api/v1/query?query=" + url_encode(promql));
  }

  // The value of a query that returns exactly one sample, else nullopt.
  std::optional<double> single_value(const std::string& promql) const {
    nlohmann::json r = query(promql);
    if (r.value("status", "") != "success") return std::nullopt;
    const nlohmann::json& result = r["data"]["result"];
    if (result.size() != 1) return std::nullopt;
    return std::stod(result[0]["value"][1].get<std::string>());
  }

 private:
  void stop() {
    if (exited()) return;
    ::kill(pid_, SIGTERM);
    if (!poll_until(kExitTimeout, [&] { return exited(); })) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      reaped_ = true;
    }
  }

  bool exited() {
    if (reaped_) return true;
    reaped_ = ::waitpid(pid_, nullptr, WNOHANG) == pid_;
    return reaped_;
  }

  std::string address_;
  std::string log_path_;
  pid_t pid_ = -1;
  bool reaped_ = false;
};

// Every "expr" of the dashboard's panel targets, rows included, with Grafana's variables
// replaced by what they stand for here (every instance, windows that fit a short test).
std::vector<std::string> dashboard_expressions(const nlohmann::json& node) {
  std::vector<std::string> out;
  if (node.is_object()) {
    if (node.contains("targets")) {
      for (const nlohmann::json& target : node["targets"]) {
        if (!target.contains("expr")) continue;
        std::string expr = target["expr"].get<std::string>();
        for (auto [var, value] : {std::pair<std::string, std::string>{"$__rate_interval", "30s"},
                                  {"$__range", "1m"},
                                  {"$instance", ".+"}}) {
          for (size_t at; (at = expr.find(var)) != std::string::npos;) {
            expr.replace(at, var.size(), value);
          }
        }
        out.push_back(expr);
      }
    }
    for (const auto& [key, child] : node.items()) {
      if (key == "templating") continue;  // label_values(...) is Grafana's, not PromQL
      std::vector<std::string> more = dashboard_expressions(child);
      out.insert(out.end(), more.begin(), more.end());
    }
  } else if (node.is_array()) {
    for (const nlohmann::json& child : node) {
      std::vector<std::string> more = dashboard_expressions(child);
      out.insert(out.end(), more.begin(), more.end());
    }
  }
  return out;
}

// docpipe_* and process_* metric names an expression refers to.
std::set<std::string> referenced_metrics(const std::string& expr) {
  static const std::regex kName(R"(\b(?:docpipe|process)_[a-z_]+\b)");
  std::set<std::string> names;
  for (std::sregex_iterator it(expr.begin(), expr.end(), kName), end; it != end; ++it) {
    names.insert(it->str());
  }
  return names;
}

size_t count_occurrences(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST_CASE(
    "e2e prometheus: a real Prometheus sees the job's documents and evaluates every dashboard "
    "and alert expression") {
  const std::string prometheus = find_in_path("prometheus");
  if (prometheus.empty()) {
    return skip_test("the prometheus binary is not installed (scripts/deps --deploy installs it)");
  }
  TempDir tmp;
  make_dirs(tmp / "in");
  for (int i = 0; i < kDocuments; ++i) {
    write_file(tmp / ("in/doc-" + std::to_string(i) + ".txt"),
               "document " + std::to_string(i) + "\n");
  }
  // A cluster node (one nats-server), so that the cluster row and alerts have their series too;
  // a single node exports no docpipe_cluster_* at all. Likewise the job goes through an exec
  // pool (the shipped example converter), for the docpipe_command_pool_* series.
  std::unique_ptr<docpipe::test::NatsServer> nats = docpipe::test::NatsServer::start("prom");
  // Its circuit breaker's series (docpipe_command_breaker_state) exist too.
  const nlohmann::json commands = {
      {"upper",
       {{"argv", {"/usr/bin/python3", kDeployDir + "/examples/pool_upper.py"}},
        {"mode", "pool"},
        {"pool", {{"size", 1}}}}}};
  write_file(tmp / "docpipe.json", R"({"cluster": {"nats": [")" + nats->url() +
                                       R"("], "node": "prom", "ack_wait_ms": 5000}, "commands": )" +
                                       commands.dump() + "}");
  DaemonProcess daemon(tmp / "spool", {"--config", tmp / "docpipe.json"});
  daemon.start();

  // The shipped config, scraping this daemon every second; alerts.yml beside it, as installed.
  std::string config = read_file(kDeployDir + "/prometheus/prometheus.yml");
  replace_once(config, "scrape_interval: 15s", "scrape_interval: 1s");
  replace_once(config, "evaluation_interval: 15s", "evaluation_interval: 1s");
  replace_once(config, "\"127.0.0.1:9464\"", "\"" + daemon.metrics_address() + "\"");
  make_dirs(tmp / "prometheus");
  write_file(tmp / "prometheus/prometheus.yml", config);
  const std::string alerts = read_file(kDeployDir + "/prometheus/alerts.yml");
  write_file(tmp / "prometheus/alerts.yml", alerts);
  PrometheusServer server(prometheus, tmp / "prometheus");

  drop_job(daemon.spool(), "prom.json",
           make_job("prom", tmp / "in", tmp / "out", {{{"op", "exec"}, {"command", "upper"}}}));
  JobOutcome outcome = daemon.wait_for_job("prom");
  REQUIRE(outcome.folder == "done");
  CHECK(outcome.report["counts"]["succeeded"] == kDocuments);

  const std::string documents = R"(docpipe_documents_total{job="docpipe", outcome="succeeded"})";
  std::optional<double> seen;
  bool reached = poll_until(kFirstSampleTimeout, [&] {
    seen = server.single_value(documents);
    return seen == kDocuments;
  });
  REQUIRE_MESSAGE(reached, documents << " through the API: "
                                     << (seen ? std::to_string(*seen) : "no single sample")
                                     << "\nprometheus log:\n"
                                     << server.log());
  CHECK(server.single_value(R"(up{job="docpipe"})") == 1);
  // Rates need two samples in their window; wait for a few more scrapes.
  auto scrapes = [&] {
    return server.single_value(R"(count_over_time(up{job="docpipe"}[1m]))").value_or(0);
  };
  REQUIRE_MESSAGE(poll_until(kFirstSampleTimeout, [&] { return scrapes() >= 4; }),
                  "only " << scrapes() << " scrapes in a minute");

  std::set<std::string> exported;
  for (const MetricSample& s : parse_prometheus_text(daemon.scrape())) exported.insert(s.name);
  auto check_references = [&](const std::string& expr) {
    for (const std::string& name : referenced_metrics(expr)) {
      INFO("expression: " << expr);
      CHECK_MESSAGE(exported.count(name) == 1, "the daemon does not export " << name);
    }
  };

  {  // every dashboard expression evaluates to at least one series
    std::vector<std::string> exprs =
        dashboard_expressions(read_json(kDeployDir + "/grafana/docpipe-dashboard.json"));
    REQUIRE(exprs.size() >= 20);
    for (const std::string& expr : exprs) {
      INFO("dashboard expression: " << expr);
      CHECK_MESSAGE(expr.find('$') == std::string::npos, "a Grafana variable the test lacks");
      nlohmann::json r = server.query(expr);
      CHECK_MESSAGE(r.value("status", "") == "success", r.dump());
      CHECK_MESSAGE(!r["data"]["result"].empty(), "no series: a metric or label name is wrong");
      check_references(expr);
    }
  }

  {  // every alert rule is loaded, evaluates cleanly, and none fires on a healthy daemon
    std::vector<nlohmann::json> rules;
    bool evaluated = poll_until(kFirstSampleTimeout, [&] {
      rules.clear();
      nlohmann::json r = server.api("/api/v1/rules");
      for (const nlohmann::json& group : r["data"]["groups"]) {
        for (const nlohmann::json& rule : group["rules"]) rules.push_back(rule);
      }
      return !rules.empty() && std::all_of(rules.begin(), rules.end(), [](const auto& rule) {
        return rule.value("health", "") != "unknown";
      });
    });
    REQUIRE_MESSAGE(evaluated, "rules not all evaluated: " << nlohmann::json(rules).dump());
    CHECK(rules.size() == count_occurrences(alerts, "- alert: "));
    for (const nlohmann::json& rule : rules) {
      const std::string expr = rule.value("query", "");
      INFO("alert " << rule.value("name", "") << ": " << expr);
      CHECK_MESSAGE(rule.value("health", "") == "ok", rule.value("lastError", ""));
      nlohmann::json r = server.query(expr);
      CHECK_MESSAGE(r.value("status", "") == "success", r.dump());
      check_references(expr);
    }
    nlohmann::json firing = nlohmann::json::array();
    nlohmann::json alerts_now = server.api("/api/v1/alerts");
    for (const nlohmann::json& alert : alerts_now["data"]["alerts"]) {
      if (alert.value("state", "") == "firing") firing.push_back(alert);
    }
    CHECK_MESSAGE(firing.empty(), "firing on a healthy daemon: " << firing.dump());
  }

  CHECK(daemon.terminate() == 0);
}

}  // namespace
}  // namespace e2e
