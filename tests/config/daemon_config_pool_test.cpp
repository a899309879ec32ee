// The `commands` entries' "mode" and "pool" settings (docs/design.md "exec pools (issue 13)").

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include "config/daemon_config.h"
#include "tests/config/config_test_util.h"

using docpipe::CommandMode;
using docpipe::ConfigError;
using docpipe::DaemonConfig;

namespace {

DaemonConfig parse_pool(const std::string& text) {
  return docpipe::test::parse_config_text(text, "docpipe.json");
}
std::string pool_error_of(const std::string& text) {
  return docpipe::test::config_error_of(text, "docpipe.json");
}

}  // namespace

TEST_CASE("daemon config: commands run a process per document unless they say mode pool") {
  DaemonConfig c = parse_pool(R"({"commands": {
      "tr": {"argv": ["tr", "a-z", "A-Z"]},
      "tr2": {"argv": ["tr", "a-z", "A-Z"], "mode": "process"},
      "office": {"argv": ["/usr/bin/python3", "/opt/convert.py"], "mode": "pool"},
      "model": {"argv": ["model"], "mode": "pool", "timeout_ms": 9000,
                "pool": {"size": 3, "max_documents": 7, "ready_timeout_ms": 20000,
                         "health_interval_ms": 100, "health_timeout_ms": 1000,
                         "queue_timeout_ms": 5000, "stop_grace_ms": 0}}}})");
  CHECK(c.commands.at("tr").mode == CommandMode::kProcess);
  CHECK(c.commands.at("tr2").mode == CommandMode::kProcess);
  const docpipe::CommandSpec& office = c.commands.at("office");
  CHECK(office.mode == CommandMode::kPool);
  CHECK(office.pool == docpipe::CommandPoolSettings{});  // the defaults
  CHECK(office.pool.size == 0);                          // cores, at most 8, when the pool starts
  CHECK(office.pool.max_documents == 100);
  CHECK(office.pool.ready_timeout_ms == 10000);
  CHECK(office.pool.health_interval_ms == 30000);
  CHECK(office.pool.health_timeout_ms == 5000);
  CHECK(office.pool.queue_timeout_ms == 60000);
  CHECK(office.pool.stop_grace_ms == 2000);
  const docpipe::CommandSpec& model = c.commands.at("model");
  CHECK(model.timeout_ms == 9000);
  CHECK(model.pool.size == 3);
  CHECK(model.pool.max_documents == 7);
  CHECK(model.pool.ready_timeout_ms == 20000);
  CHECK(model.pool.health_interval_ms == 100);
  CHECK(model.pool.health_timeout_ms == 1000);
  CHECK(model.pool.queue_timeout_ms == 5000);
  CHECK(model.pool.stop_grace_ms == 0);
}

TEST_CASE("daemon config: every pool setting is checked, with its path and range") {
  const std::string head = R"({"commands": {"m": {"argv": ["m"], )";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("mode": "pooled"})",
       "commands.m.mode: expected one of \"process\", \"pool\", got \"pooled\""},
      {R"("mode": 1})", "commands.m.mode: expected one of \"process\", \"pool\", got 1"},
      {R"("pool": {"size": 2}})", "commands.m.pool: only for a command with \"mode\": \"pool\""},
      {R"("mode": "process", "pool": {}})",
       "commands.m.pool: only for a command with \"mode\": \"pool\""},
      {R"("mode": "pool", "pool": []})", "commands.m.pool: expected object, got array"},
      {R"("mode": "pool", "pool": {"size": 0}})",
       "commands.m.pool.size: expected integer 1..64, got 0"},
      {R"("mode": "pool", "pool": {"size": 65}})",
       "commands.m.pool.size: expected integer 1..64, got 65"},
      {R"("mode": "pool", "pool": {"size": "4"}})",
       "commands.m.pool.size: expected integer 1..64, got \"4\""},
      {R"("mode": "pool", "pool": {"max_documents": 0}})",
       "commands.m.pool.max_documents: expected integer 1..1000000000, got 0"},
      {R"("mode": "pool", "pool": {"ready_timeout_ms": 0}})",
       "commands.m.pool.ready_timeout_ms: expected integer 1..600000, got 0"},
      {R"("mode": "pool", "pool": {"health_interval_ms": 99}})",
       "commands.m.pool.health_interval_ms: expected integer 100..86400000, got 99"},
      {R"("mode": "pool", "pool": {"health_timeout_ms": 600001}})",
       "commands.m.pool.health_timeout_ms: expected integer 1..600000, got 600001"},
      {R"("mode": "pool", "pool": {"queue_timeout_ms": -1}})",
       "commands.m.pool.queue_timeout_ms: expected integer 1..86400000, got -1"},
      {R"("mode": "pool", "pool": {"stop_grace_ms": 1.5}})",
       "commands.m.pool.stop_grace_ms: expected integer 0..600000, got 1.5"},
      {R"("mode": "pool", "pool": {"workers": 2}})", "commands.m.pool.workers: unknown key"},
  };
  for (const auto& [tail, expected] : cases) {
    INFO(tail);
    CHECK(pool_error_of(head + tail + "}}") == "docpipe.json: " + expected);
  }
  // Every problem at once, and a rejected command is not kept.
  CHECK(pool_error_of(head + R"("mode": "pool", "pool": {"size": 0, "stop_grace_ms": -1}}}})") ==
        "docpipe.json: commands.m.pool.size: expected integer 1..64, got 0\n"
        "docpipe.json: commands.m.pool.stop_grace_ms: expected integer 0..600000, got -1");
}
