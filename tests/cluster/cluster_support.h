#pragma once
// Several real docpipe daemons sharing one input and one output folder through real nats-server
// processes (tests/support/nats_server.h). Each node has its own spool, control socket and
// metrics port ("127.0.0.1:0"); the tests talk to them the way operators do: job files, the
// output folder, the manifest and report, `docpipe status --json`, /metrics and the log.

#include <doctest/doctest.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"
#include "tests/support/nats_server.h"

namespace cluster_test {

using e2e::milliseconds;
using nlohmann::json;

// Document counts come from DOCPIPE_CLUSTER_DOCS when set (scripts/test passes a smaller number
// under sanitizers); `fallback` otherwise. Tests that need fewer scale it with `fraction`.
// `at_least`: tests that kill something mid-job need enough documents to still be mid-job.
inline int documents(int fallback, double fraction = 1.0, int at_least = 20) {
  int n = fallback;
  if (const char* env = std::getenv("DOCPIPE_CLUSTER_DOCS")) n = std::atoi(env);
  n = static_cast<int>(n * fraction);
  return n < at_least ? at_least : n;
}

// Document i: its path below the input folder and its content (distinct per document, so that a
// swapped or short output is caught by the byte comparison).
inline std::string doc_path(int i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "d%03d/doc-%06d.txt", i / 1000, i);
  return buf;
}
inline std::string doc_content(int i) {
  return "document " + std::to_string(i) + "\n" + std::string(static_cast<size_t>(i % 97), 'x') +
         "\nend " + std::to_string(i) + "\n";
}
inline void write_corpus(const std::string& in, int count) {
  for (int i = 0; i < count; ++i) e2e::write_file(in + "/" + doc_path(i), doc_content(i));
}

// The cluster section every node of a test shares, with `node` set per node.
inline json cluster_section(const std::vector<std::string>& urls, json overrides = json::object()) {
  json c{{"nats", urls},     {"stream", "DOCPIPE"},     {"ack_wait_ms", 2000},
         {"lease_ms", 3000}, {"reconnect_wait_ms", 200}, {"reconnect_max_wait_ms", 1000}};
  for (auto& [k, v] : overrides.items()) c[k] = v;
  return c;
}

// One daemon of the cluster: its config file, spool and process (restartable after a kill).
class Node {
 public:
  Node(const std::string& base, std::string name, json config, std::string binary = "")
      : name_(std::move(name)), spool_(base + "/" + name_ + "-spool"),
        config_path_(base + "/" + name_ + ".json"), binary_(std::move(binary)) {
    config["cluster"]["node"] = name_;
    if (!config.contains("settle_ms")) config["settle_ms"] = 0;
    if (!config.contains("durability")) config["durability"] = "none";
    e2e::write_config(config_path_, config.dump(2));
  }

  // Starts the daemon; with `wait_ready`, also waits until its streams, consumer and buckets are
  // set up ("cluster: node ready"): a job admitted before that runs on its node alone.
  void start(bool wait_ready = true) {
    process_ = std::make_unique<e2e::DaemonProcess>(
        spool_, std::vector<std::string>{"--config", config_path_},
        spool_ + ".daemon-" + std::to_string(++starts_) + ".log");
    if (!binary_.empty()) process_->set_binary(binary_);
    process_->start();
    if (wait_ready && process_->wait_for_log_lines({"cluster: node ready"}, milliseconds(20000))
                          .empty()) {
      throw std::runtime_error(name_ + ": no \"cluster: node ready\" within 20 s:\n" + log());
    }
  }
  // SIGKILL and reap: no clean shutdown, like a crashed host.
  void kill9() {
    REQUIRE(::kill(process_->pid(), SIGKILL) == 0);
    process_->wait_exit();
  }

  const std::string& name() const { return name_; }
  const std::string& spool() const { return spool_; }
  e2e::DaemonProcess& process() { return *process_; }
  std::string log() const { return process_->log(); }
  bool log_has(const std::string& text) const { return !process_->log_lines_with({text}).empty(); }

  double metric(const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    return process_->metric(name, labels).value_or(-1);
  }
  // `docpipe status --json [ID]` through the CLI and the control socket.
  json status(const std::string& scratch, const std::string& job = "") {
    std::vector<std::string> args{"status", "--spool", spool_, "--json"};
    if (!job.empty()) args.push_back(job);
    e2e::CommandResult r = e2e::docpipe(args, scratch);
    if (r.exit_code != 0) {
      throw std::runtime_error(name_ + ": docpipe status exited " + std::to_string(r.exit_code) +
                               ": " + r.err);
    }
    return json::parse(r.out);
  }
  // The "cluster" object of `docpipe status --json`.
  json cluster_status(const std::string& scratch) { return status(scratch)["daemon"]["cluster"]; }
  // The job ended here: done/, or failed/ for a reason of its own. A copy this node closed as
  // "cancelled" because another node took the job over does not count: the job goes on there.
  bool finished(const std::string& job) const {
    if (e2e::file_exists(spool_ + "/done/" + job + ".json")) return true;
    const std::string failed = spool_ + "/failed/" + job;
    if (!e2e::file_exists(failed + ".json")) return false;
    try {
      const json report = e2e::read_json(failed + ".report.json");
      return !(report.value("state", "") == "cancelled" &&
               report.value("reason", "").find("took the job over") != std::string::npos);
    } catch (const std::exception&) {
      return true;
    }
  }

 private:
  std::string name_, spool_, config_path_, binary_;
  int starts_ = 0;
  std::unique_ptr<e2e::DaemonProcess> process_;
};

// Three nodes n1..n3 on one config, started (each waited for until "cluster: node ready").
struct ThreeNodes {
  ThreeNodes(const std::string& base, const json& config, const std::string& binary = "")
      : n1(base, "n1", config, binary), n2(base, "n2", config, binary),
        n3(base, "n3", config, binary) {
    n1.start();
    n2.start();
    n3.start();
  }
  std::vector<Node*> all() { return {&n1, &n2, &n3}; }
  Node n1, n2, n3;
};

// The node whose spool holds the finished job (done/ or failed/), waiting up to `timeout`.
inline Node* wait_finished(std::vector<Node*> nodes, const std::string& job, milliseconds timeout) {
  Node* found = nullptr;
  e2e::poll_until(timeout, [&] {
    for (Node* n : nodes)
      if (n->finished(job)) found = n;
    return found != nullptr;
  });
  return found;
}

// Every document 0..count-1 has its output, byte for byte; nothing else is there (docpipe temp
// files are counted separately, see `temps`).
struct OutputCheck {
  int missing = 0, wrong = 0, extra = 0;
  std::vector<std::string> temps;  // ".*.docpipe-tmp.*" files
  std::string first_problem;
};
inline OutputCheck check_outputs(const std::string& out, int count) {
  OutputCheck c;
  std::set<std::string> expected;
  for (int i = 0; i < count; ++i) {
    const std::string rel = doc_path(i);
    expected.insert(rel);
    const std::string path = out + "/" + rel;
    if (!e2e::file_exists(path)) {
      if (c.first_problem.empty()) c.first_problem = "missing " + path;
      ++c.missing;
      continue;
    }
    const std::string got = e2e::read_file(path);
    if (got != doc_content(i)) {
      if (c.first_problem.empty())
        c.first_problem = path + ": " + e2e::describe_difference(doc_content(i), got);
      ++c.wrong;
    }
  }
  for (const std::string& rel : e2e::list_files(out)) {
    if (expected.count(rel) != 0) continue;
    if (rel.find(".docpipe-tmp.") != std::string::npos) {
      c.temps.push_back(rel);
    } else {
      if (c.first_problem.empty()) c.first_problem = "unexpected " + rel;
      ++c.extra;
    }
  }
  return c;
}

// The manifest of a finished job: how many lines, how many distinct inputs, how many succeeded.
struct ManifestCheck {
  size_t lines = 0, unique_inputs = 0, succeeded = 0;
};
inline ManifestCheck check_manifest(const std::string& path) {
  ManifestCheck m;
  std::set<std::string> inputs;
  for (const json& line : e2e::read_json_lines(path)) {
    ++m.lines;
    inputs.insert(line.at("input").get<std::string>());
    if (line.value("state", "") == "succeeded") ++m.succeeded;
  }
  m.unique_inputs = inputs.size();
  return m;
}

// The report and manifest of `job` in `node`'s done/ folder: succeeded, `count` lines, each
// input once, all succeeded.
inline void check_job_done(Node& node, const std::string& job, int count) {
  const std::string done = node.spool() + "/done/";
  if (!e2e::file_exists(done + job + ".report.json")) {
    const std::string failed = node.spool() + "/failed/" + job + ".report.json";
    FAIL_CHECK(node.name() << " has no done/" << job << ".report.json; failed/: "
                           << (e2e::file_exists(failed) ? e2e::read_file(failed) : "none")
                           << "\nlog:\n" << node.log());
    return;
  }
  json report = e2e::read_json(done + job + ".report.json");
  CHECK(report["state"] == "succeeded");
  CHECK(report["counts"]["succeeded"] == count);
  ManifestCheck m = check_manifest(done + job + ".manifest.jsonl");
  CHECK(m.lines == size_t(count));
  CHECK(m.unique_inputs == size_t(count));
  CHECK(m.succeeded == size_t(count));
}

}  // namespace cluster_test
