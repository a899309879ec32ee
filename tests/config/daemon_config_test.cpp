// The daemon config (config/daemon_config.h): defaults, relative paths, one error per key, and
// the shipped config/docpipe.json.

#include "config/daemon_config.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "tests/config/config_test_util.h"

namespace fs = std::filesystem;
using docpipe::ConfigError;
using docpipe::DaemonConfig;

namespace {

int cores() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

DaemonConfig parse(const std::string& text, const std::string& base = "/etc/docpipe") {
  return docpipe::test::parse_config_text(text, "docpipe.json", base);
}
std::string error_of(const std::string& text) {
  return docpipe::test::config_error_of(text, "docpipe.json");
}

std::string validation_error_of(const DaemonConfig& config) {
  try {
    docpipe::validate_config(config);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

void check_same(const DaemonConfig& a, const DaemonConfig& b) {
  CHECK(a.spool_dir == b.spool_dir);
  CHECK(a.metrics_listen == b.metrics_listen);
  CHECK(a.control_socket == b.control_socket);
  CHECK(a.workers == b.workers);
  CHECK(a.io_threads == b.io_threads);
  CHECK(a.max_in_flight_documents == b.max_in_flight_documents);
  CHECK(a.memory_budget_bytes == b.memory_budget_bytes);
  CHECK(a.max_active_jobs == b.max_active_jobs);
  CHECK(a.settle_ms == b.settle_ms);
  CHECK(a.max_job_file_bytes == b.max_job_file_bytes);
  CHECK(a.rescan_interval_ms == b.rescan_interval_ms);
  CHECK(a.durability_fsync == b.durability_fsync);
  CHECK(a.shutdown_grace_ms == b.shutdown_grace_ms);
  CHECK(a.allowed_input_roots == b.allowed_input_roots);
  CHECK(a.allowed_output_roots == b.allowed_output_roots);
  CHECK(a.log_level == b.log_level);
  CHECK(a.log_format == b.log_format);
  CHECK(a.commands.size() == b.commands.size());
}

}  // namespace

TEST_CASE("daemon config: defaults match the documented table") {
  DaemonConfig c = docpipe::default_config("/srv/docpipe");
  CHECK(c.spool_dir == "/srv/docpipe/var/spool");
  CHECK(c.metrics_listen == "127.0.0.1:9464");
  CHECK(c.control_socket == "/srv/docpipe/var/spool/control.sock");
  CHECK(c.workers == cores());
  CHECK(c.ocr_concurrency == cores());
  CHECK(c.io_threads == 2);
  CHECK(c.max_in_flight_documents == 256);
  CHECK(c.memory_budget_bytes == 268435456);
  CHECK(c.max_active_jobs == 16);
  CHECK(c.settle_ms == 500);
  CHECK(c.max_job_file_bytes == 1048576);
  CHECK(c.rescan_interval_ms == 30000);
  CHECK(c.durability_fsync);
  CHECK(c.shutdown_grace_ms == 10000);
  CHECK(c.allowed_input_roots == std::vector<std::string>{"/"});
  CHECK(c.allowed_output_roots == std::vector<std::string>{"/"});
  CHECK(c.log_level == "info");
  CHECK(c.log_format == "text");
  CHECK(c.commands.empty());
  CHECK(validation_error_of(c).empty());

  // An empty file means the defaults, relative to the file's folder.
  check_same(parse("{}", "/srv/docpipe"), c);
}

TEST_CASE("daemon config: every key is read") {
  DaemonConfig c = parse(R"({
    "spool_dir": "/var/lib/docpipe/spool",
    "metrics_listen": "[::1]:0",
    "control_socket": "/run/docpipe.sock",
    "workers": 3,
    "io_threads": 4,
    "ocr_concurrency": 1,
    "max_in_flight_documents": 10,
    "memory_budget_bytes": 1048576,
    "max_active_jobs": 2,
    "settle_ms": 0,
    "max_job_file_bytes": 4096,
    "rescan_interval_ms": 1000,
    "durability": "none",
    "shutdown_grace_ms": 0,
    "allowed_input_roots": ["/srv/in", "/data"],
    "allowed_output_roots": ["/srv/out"],
    "log_level": "debug",
    "log_format": "json",
    "commands": {
      "pandoc": { "argv": ["/usr/bin/pandoc", "-f", "markdown"], "timeout_ms": 5000 },
      "tr": { "argv": ["tr", "a-z", "A-Z"],
              "breaker": { "failures": 2, "open_ms": 1500, "max_open_ms": 9000 } }
    }
  })");
  CHECK(c.spool_dir == "/var/lib/docpipe/spool");
  CHECK(c.metrics_listen == "[::1]:0");
  CHECK(c.control_socket == "/run/docpipe.sock");
  CHECK(c.workers == 3);
  CHECK(c.io_threads == 4);
  CHECK(c.ocr_concurrency == 1);
  CHECK(c.max_in_flight_documents == 10);
  CHECK(c.memory_budget_bytes == 1048576);
  CHECK(c.max_active_jobs == 2);
  CHECK(c.settle_ms == 0);
  CHECK(c.max_job_file_bytes == 4096);
  CHECK(c.rescan_interval_ms == 1000);
  CHECK_FALSE(c.durability_fsync);
  CHECK(c.shutdown_grace_ms == 0);
  CHECK(c.allowed_input_roots == std::vector<std::string>{"/srv/in", "/data"});
  CHECK(c.allowed_output_roots == std::vector<std::string>{"/srv/out"});
  CHECK(c.log_level == "debug");
  CHECK(c.log_format == "json");
  REQUIRE(c.commands.size() == 2);
  CHECK(c.commands.at("pandoc").argv ==
        std::vector<std::string>{"/usr/bin/pandoc", "-f", "markdown"});
  CHECK(c.commands.at("pandoc").timeout_ms == 5000);
  CHECK(c.commands.at("tr").argv == std::vector<std::string>{"tr", "a-z", "A-Z"});
  CHECK(c.commands.at("tr").timeout_ms == 60000);
  // The breaker's defaults, and one given in full.
  CHECK(c.commands.at("pandoc").breaker.failures == 5);
  CHECK(c.commands.at("pandoc").breaker.open_ms == 30000);
  CHECK(c.commands.at("pandoc").breaker.max_open_ms == 600000);
  CHECK(c.commands.at("tr").breaker.failures == 2);
  CHECK(c.commands.at("tr").breaker.open_ms == 1500);
  CHECK(c.commands.at("tr").breaker.max_open_ms == 9000);
}

TEST_CASE("daemon config: a command's breaker can be turned off, and a long open_ms caps itself") {
  DaemonConfig c = parse(R"({"commands": {
      "a": {"argv": ["a"], "breaker": {"failures": 0}},
      "b": {"argv": ["b"], "breaker": {"open_ms": 3600000}}}})");
  CHECK(c.commands.at("a").breaker.failures == 0);
  CHECK(c.commands.at("b").breaker.open_ms == 3600000);
  CHECK(c.commands.at("b").breaker.max_open_ms == 3600000);
}

TEST_CASE("daemon config: relative paths resolve against the config file's folder") {
  DaemonConfig c = parse(R"({"spool_dir": "../var/spool",
                             "allowed_input_roots": ["data", "/abs/./x/.."],
                             "allowed_output_roots": ["../out"]})",
                         "/opt/docpipe/config");
  CHECK(c.spool_dir == "/opt/docpipe/var/spool");
  CHECK(c.control_socket == "/opt/docpipe/var/spool/control.sock");
  CHECK(c.allowed_input_roots == std::vector<std::string>{"/opt/docpipe/config/data", "/abs"});
  CHECK(c.allowed_output_roots == std::vector<std::string>{"/opt/docpipe/out"});

  c = parse(R"({"spool_dir": "spool", "control_socket": "run/ctl.sock"})", "/opt/d");
  CHECK(c.spool_dir == "/opt/d/spool");
  CHECK(c.control_socket == "/opt/d/run/ctl.sock");
}

TEST_CASE("daemon config: each bad key is an error naming the file and the key") {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"workers": "two"})", "docpipe.json: workers: expected integer >= 1, got \"two\""},
      {R"({"workers": 0})", "docpipe.json: workers: expected integer >= 1, got 0"},
      {R"({"workers": 5000})", "docpipe.json: workers: too many threads: 5000 (at most 1024)"},
      {R"({"io_threads": 1.5})", "docpipe.json: io_threads: expected integer >= 1, got 1.5"},
      {R"({"ocr_concurrency": 0})", "docpipe.json: ocr_concurrency: expected integer >= 1, got 0"},
      {R"({"ocr_concurrency": 2000})",
       "docpipe.json: ocr_concurrency: too many threads: 2000 (at most 1024)"},
      {R"({"wrkers": 2})", "docpipe.json: wrkers: unknown key"},
      {R"({"spool_dir": ""})", "docpipe.json: spool_dir: expected a non-empty string"},
      {R"({"spool_dir": 3})", "docpipe.json: spool_dir: expected string, got 3"},
      {R"({"max_in_flight_documents": -1})",
       "docpipe.json: max_in_flight_documents: expected integer >= 1, got -1"},
      {R"({"memory_budget_bytes": null})",
       "docpipe.json: memory_budget_bytes: expected integer >= 1, got null"},
      {R"({"max_active_jobs": 0})", "docpipe.json: max_active_jobs: expected integer >= 1, got 0"},
      {R"({"settle_ms": -5})", "docpipe.json: settle_ms: expected integer >= 0, got -5"},
      {R"({"max_job_file_bytes": 0})",
       "docpipe.json: max_job_file_bytes: expected integer >= 1, got 0"},
      {R"({"rescan_interval_ms": 0})",
       "docpipe.json: rescan_interval_ms: expected integer >= 1, got 0"},
      {R"({"shutdown_grace_ms": "10s"})",
       "docpipe.json: shutdown_grace_ms: expected integer >= 0, got \"10s\""},
      {R"({"durability": "sometimes"})",
       "docpipe.json: durability: expected one of \"fsync\", \"none\", got \"sometimes\""},
      {R"({"log_level": "trace"})",
       "docpipe.json: log_level: expected one of \"debug\", \"info\", \"warn\", \"error\", got "
       "\"trace\""},
      {R"({"log_format": "xml"})",
       "docpipe.json: log_format: expected one of \"text\", \"json\", got \"xml\""},
      {R"({"metrics_listen": "localhost"})",
       "docpipe.json: metrics_listen: expected HOST:PORT with a port 0..65535, got \"localhost\""},
      {R"({"metrics_listen": "127.0.0.1:65536"})",
       "docpipe.json: metrics_listen: expected HOST:PORT with a port 0..65535, got "
       "\"127.0.0.1:65536\""},
      {R"({"metrics_listen": ":9464"})",
       "docpipe.json: metrics_listen: expected HOST:PORT with a port 0..65535, got \":9464\""},
      {R"({"metrics_listen": "::1:9464"})",
       "docpipe.json: metrics_listen: expected HOST:PORT with a port 0..65535, got \"::1:9464\""},
      {R"({"allowed_input_roots": []})",
       "docpipe.json: allowed_input_roots: expected a non-empty array of strings"},
      {R"({"allowed_output_roots": ["/a", ""]})",
       "docpipe.json: allowed_output_roots[1]: expected a non-empty path"},
      {R"({"allowed_output_roots": "/srv"})",
       "docpipe.json: allowed_output_roots: expected array of strings, got \"/srv\""},
      {R"({"commands": []})", "docpipe.json: commands: expected object, got array"},
      {R"({"commands": {"pandoc": {"argv": []}}})",
       "docpipe.json: commands.pandoc.argv: expected a non-empty array of strings"},
      {R"({"commands": {"pandoc": {}}})",
       "docpipe.json: commands.pandoc.argv: required key is missing"},
      {R"({"commands": {"pandoc": {"argv": ["bin/pandoc"]}}})",
       "docpipe.json: commands.pandoc.argv[0]: expected an absolute path or a bare program name, "
       "got \"bin/pandoc\""},
      {R"({"commands": {"pandoc": {"argv": ["pandoc", 1]}}})",
       "docpipe.json: commands.pandoc.argv[1]: expected string, got 1"},
      {R"({"commands": {"pandoc": {"argv": ["pandoc"], "timeout_ms": 0}}})",
       "docpipe.json: commands.pandoc.timeout_ms: expected integer >= 1, got 0"},
      {R"({"commands": {"pandoc": {"argv": ["pandoc"], "timeout": 5}}})",
       "docpipe.json: commands.pandoc.timeout: unknown key"},
      {R"({"commands": {"p": {"argv": ["p"], "breaker": 5}}})",
       "docpipe.json: commands.p.breaker: expected object, got 5"},
      {R"({"commands": {"p": {"argv": ["p"], "breaker": {"failures": -1}}}})",
       "docpipe.json: commands.p.breaker.failures: expected integer 0..1000, got -1"},
      {R"({"commands": {"p": {"argv": ["p"], "breaker": {"open_ms": 10}}}})",
       "docpipe.json: commands.p.breaker.open_ms: expected integer 100..86400000, got 10"},
      {R"({"commands": {"p": {"argv": ["p"], "breaker": {"open_ms": 5000, "max_open_ms": 1000}}}})",
       "docpipe.json: commands.p.breaker.max_open_ms: must be at least open_ms (5000), got 1000"},
      {R"({"commands": {"p": {"argv": ["p"], "breaker": {"failure": 3}}}})",
       "docpipe.json: commands.p.breaker.failure: unknown key"},
      {R"({"commands": {"my tool": {"argv": ["x"]}}})",
       "docpipe.json: commands.my tool: invalid command name (expected A-Z a-z 0-9 . _ -)"},
      {R"({"workers": 2, "workers": 3})", "docpipe.json: workers: duplicate key"},
      {R"([])", "docpipe.json: expected object, got array"},
  };
  for (const auto& [text, expected] : cases) {
    INFO(text);
    CHECK(error_of(text) == expected);
  }
}

TEST_CASE("daemon config: malformed JSON names the line and column") {
  CHECK(error_of("{\n  \"workers\": 2\n  \"io_threads\": 1\n}") ==
        "docpipe.json: malformed JSON at line 3, column 14: syntax error while parsing object - "
        "unexpected string literal; expected '}'");
}

TEST_CASE("daemon config: all problems are reported together, one per line") {
  CHECK(error_of(R"({"workers": "two", "log_level": "loud", "extra": 1})") ==
        "docpipe.json: workers: expected integer >= 1, got \"two\"\n"
        "docpipe.json: log_level: expected one of \"debug\", \"info\", \"warn\", \"error\", got "
        "\"loud\"\n"
        "docpipe.json: extra: unknown key");
}

TEST_CASE("daemon config: a control socket path too long for sun_path is refused") {
  std::string spool = "/" + std::string(120, 's');
  CHECK(error_of("{\"spool_dir\": \"" + spool + "\"}") ==
        "docpipe.json: control_socket: path too long for a Unix socket (134 bytes, at most "
        "107): " +
            spool + "/control.sock");
}

TEST_CASE("daemon config: validate_config checks values set by command-line flags") {
  DaemonConfig c = docpipe::default_config("/srv");
  c.workers = 0;
  c.io_threads = 2000;
  c.metrics_listen = "nohost";
  CHECK(validation_error_of(c) ==
        "workers: expected integer >= 1, got 0\n"
        "io_threads: too many threads: 2000 (at most 1024)\n"
        "metrics_listen: expected HOST:PORT with a port 0..65535, got \"nohost\"");
  c = docpipe::default_config("/srv");
  c.spool_dir = "relative";
  c.control_socket = "relative/control.sock";
  CHECK(validation_error_of(c) ==
        "spool_dir: expected an absolute path, got \"relative\"\n"
        "control_socket: expected an absolute path, got \"relative/control.sock\"");
}

TEST_CASE("daemon config: load_config reads a file and resolves paths against its folder") {
  char tmpl[] = "/tmp/docpipe-config-XXXXXX";
  std::string root = ::mkdtemp(tmpl);
  fs::create_directories(root + "/etc");
  std::ofstream(root + "/etc/d.json") << R"({"spool_dir": "../spool", "workers": 1})";
  DaemonConfig c = docpipe::load_config(root + "/etc/d.json");
  CHECK(c.spool_dir == root + "/spool");
  CHECK(c.control_socket == root + "/spool/control.sock");
  CHECK(c.workers == 1);

  std::ofstream(root + "/etc/bad.json") << R"({"workers": "two"})";
  std::string error;
  try {
    docpipe::load_config(root + "/etc/bad.json");
  } catch (const ConfigError& e) {
    error = e.what();
  }
  CHECK(error == root + "/etc/bad.json: workers: expected integer >= 1, got \"two\"");

  error.clear();
  try {
    docpipe::load_config(root + "/etc/missing.json");
  } catch (const ConfigError& e) {
    error = e.what();
  }
  CHECK(error ==
        "cannot read config: open " + root + "/etc/missing.json: No such file or directory");
  fs::remove_all(root);
}

TEST_CASE("daemon config: the shipped config/docpipe.json loads as the defaults") {
  const std::string source = DOCPIPE_SOURCE_DIR;
  DaemonConfig shipped = docpipe::load_config(source + "/config/docpipe.json");
  CHECK(shipped.spool_dir == fs::path(source + "/var/spool").lexically_normal().string());
  CHECK(shipped.metrics_listen == "127.0.0.1:9464");
  CHECK(shipped.workers == cores());
  check_same(shipped, docpipe::default_config(source));
}
