// The daemon config's "allowed_webhook_hosts" and "notify" (config/daemon_config.h NotifyConfig):
// defaults, every key, and refusals by path.

#include <doctest/doctest.h>

#include <string>

#include "config/daemon_config.h"
#include "tests/config/config_test_util.h"

namespace docpipe {
namespace {

DaemonConfig parse(const std::string& text) { return test::parse_config_text(text); }
std::string error_of(const std::string& text) { return test::config_error_of(text); }

TEST_CASE("config notify: absent, no webhook host is allowed and delivery has its defaults") {
  DaemonConfig c = parse("{}");
  CHECK(c.allowed_webhook_hosts.empty());
  CHECK(c.notify.max_attempts == 10);
  CHECK(c.notify.retry_base_ms == 1000);
  CHECK(c.notify.retry_max_ms == 300000);
  CHECK(c.notify.timeout_ms == 10000);
  CHECK(c.notify.breaker == BreakerConfig{});
}

TEST_CASE("config notify: hosts and every notify key are read") {
  DaemonConfig c = parse(R"({"allowed_webhook_hosts": ["hooks.example.org", "127.0.0.1:8080"],
      "notify": {"max_attempts": 3, "retry_base_ms": 200, "retry_max_ms": 5000,
                 "timeout_ms": 2000, "breaker": {"failures": 2, "open_ms": 1000}}})");
  CHECK(c.allowed_webhook_hosts == std::vector<std::string>{"hooks.example.org", "127.0.0.1:8080"});
  CHECK(c.notify.max_attempts == 3);
  CHECK(c.notify.retry_base_ms == 200);
  CHECK(c.notify.retry_max_ms == 5000);
  CHECK(c.notify.timeout_ms == 2000);
  CHECK(c.notify.breaker.failures == 2);
  CHECK(c.notify.breaker.open_ms == 1000);
}

TEST_CASE("config notify: bad hosts, values and unknown keys are refused by path") {
  CHECK(error_of(R"({"allowed_webhook_hosts": ["https://hooks.example.org/"]})")
            .find("allowed_webhook_hosts[0]: expected a host name or host:port, not a URL") !=
        std::string::npos);
  CHECK(error_of(R"({"allowed_webhook_hosts": ["ok.example", "h:0"]})")
            .find("allowed_webhook_hosts[1]") != std::string::npos);
  CHECK(error_of(R"({"allowed_webhook_hosts": "h.example"})").find("allowed_webhook_hosts") !=
        std::string::npos);
  CHECK(error_of(R"({"notify": {"max_attempts": 0}})").find("notify.max_attempts") !=
        std::string::npos);
  CHECK(error_of(R"({"notify": {"retry_base_ms": 5000, "retry_max_ms": 1000}})")
            .find("notify.retry_max_ms: must be at least retry_base_ms (5000)") !=
        std::string::npos);
  CHECK(error_of(R"({"notify": {"timeout_ms": 1}})").find("notify.timeout_ms") !=
        std::string::npos);
  CHECK(error_of(R"({"notify": {"breaker": {"failures": -1}}})").find("notify.breaker.failures") !=
        std::string::npos);
  CHECK(error_of(R"({"notify": {"webhook": "x"}})").find("notify.webhook") != std::string::npos);
}

}  // namespace
}  // namespace docpipe
