// The daemon config keys of the control socket's rights and limits: admin_group,
// max_control_connections, control_idle_timeout_ms.

#include <doctest/doctest.h>

#include <string>

#include "config/daemon_config.h"
#include "tests/config/config_test_util.h"

namespace docpipe {
namespace {

DaemonConfig parse(const std::string& text) { return test::parse_config_text(text, "c.json"); }
std::string error_of(const std::string& text) { return test::config_error_of(text, "c.json"); }

TEST_CASE("daemon config rights: defaults: no admin group, 64 connections, 60 s idle") {
  DaemonConfig c = parse("{}");
  CHECK(c.admin_group.empty());
  CHECK_FALSE(c.admin_gid.has_value());
  CHECK(c.max_control_connections == 64);
  CHECK(c.control_idle_timeout_ms == 60000);
}

TEST_CASE("daemon config rights: admin_group is a group name or a numeric gid") {
  CHECK(parse(R"({"admin_group": "root"})").admin_gid == gid_t{0});
  CHECK(parse(R"({"admin_group": "4242"})").admin_gid == gid_t{4242});
  CHECK(parse(R"({"admin_group": 4243})").admin_gid == gid_t{4243});
  CHECK_FALSE(parse(R"({"admin_group": ""})").admin_gid.has_value());
  CHECK(error_of(R"({"admin_group": "no-such-group-here"})") ==
        "c.json: admin_group: no such group \"no-such-group-here\"");
  CHECK(error_of(R"({"admin_group": true})").find("admin_group: expected string") !=
        std::string::npos);
}

TEST_CASE("daemon config rights: connection limits are positive integers") {
  DaemonConfig c = parse(R"({"max_control_connections": 3, "control_idle_timeout_ms": 250})");
  CHECK(c.max_control_connections == 3);
  CHECK(c.control_idle_timeout_ms == 250);
  CHECK(error_of(R"({"max_control_connections": 0})").find("max_control_connections") !=
        std::string::npos);
  CHECK(error_of(R"({"max_control_connections": 100000})").find("max_control_connections") !=
        std::string::npos);
  CHECK(error_of(R"({"control_idle_timeout_ms": "1s"})").find("control_idle_timeout_ms") !=
        std::string::npos);
}

}  // namespace
}  // namespace docpipe
