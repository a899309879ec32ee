#pragma once
// What the exec pool tests share (tests/core/exec_pool_test.cpp, exec_pool_breaker_test.cpp):
// converter commands, steps on them, and the pools' counters.

#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/transforms/command_pools.h"
#include "tests/core/transform_test_util.h"

namespace exec_pool_test {

using docpipe::CommandMode;
using docpipe::CommandPools;
using docpipe::CommandPoolStats;
using docpipe::CommandSpec;
using docpipe::FieldErrors;
using docpipe::RecycleReason;
using docpipe::Result;
using docpipe::TransformEnv;
using docpipe::TransformStep;
using docpipe::test::errors_text;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The system's interpreter, not a python3 found on PATH first (a pyenv shim is a script that
// adds its own variables to the environment and costs a start of its own).
inline const std::string kPython = "/usr/bin/python3";
inline const std::string kUpper = DOCPIPE_SOURCE_DIR "/deploy/examples/pool_upper.py";
inline const std::string kFaulty = DOCPIPE_SOURCE_DIR "/tests/support/pool_faulty.py";

inline CommandSpec pool_spec(std::vector<std::string> argv, int size = 1) {
  CommandSpec spec;
  spec.argv = std::move(argv);
  spec.timeout_ms = 20000;
  spec.mode = CommandMode::kPool;
  spec.pool.size = size;
  return spec;
}

inline CommandSpec upper_spec(int size = 1) { return pool_spec({kPython, kUpper}, size); }

inline CommandSpec faulty_spec(const std::string& mode, const std::string& arg = "") {
  std::vector<std::string> argv = {kPython, kFaulty, mode};
  if (!arg.empty()) argv.push_back(arg);
  return pool_spec(argv);
}

// Each test has its own command name (pools are process-wide and keyed by name).
inline std::shared_ptr<const TransformStep> pool_step(const std::string& name,
                                                      const CommandSpec& spec) {
  TransformEnv env;
  env.commands[name] = spec;
  FieldErrors errors;
  auto step = docpipe::test::transform_info("exec").configure(json{{"command", name}}, env, errors);
  REQUIRE_MESSAGE(errors.empty(), errors_text(errors));
  REQUIRE(step != nullptr);
  return step;
}

inline CommandPoolStats stats_of(const std::string& name) {
  for (CommandPoolStats& s : CommandPools::instance().stats())
    if (s.command == name) return s;
  return CommandPoolStats{};
}

inline uint64_t recycled(const std::string& name, RecycleReason r) {
  return stats_of(name).recycles[int(r)];
}

inline int live_processes(const std::string& name) {
  const auto& p = stats_of(name).processes;
  return p.starting + p.idle + p.busy + p.checking;
}

inline Result<std::string> run(const TransformStep& step, std::string_view input,
                               size_t chunk = 0) {
  return docpipe::test::run_chunked(step, input, chunk);
}

// Pids of the live processes of the pool `name` runs as `spec`.
inline std::vector<pid_t> pool_pids(const std::string& name, const CommandSpec& spec) {
  return CommandPools::instance().get(name, spec)->pids();
}

// Polls `done` until it holds or `timeout` passes.
template <typename F>
bool eventually(F done, milliseconds timeout = milliseconds(10000)) {
  const auto deadline = Clock::now() + timeout;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::yield();
    ::usleep(5000);  // a poll interval for a condition, not a wait for an event
  }
  return true;
}

}  // namespace exec_pool_test
