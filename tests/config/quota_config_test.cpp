// The daemon config's "quotas" section (config/quota_config.h): read strictly, names resolved to
// ids at load, and which cap applies to a submitter (user > groups > default, per key; root
// never limited). Names used: the users and groups every Debian system has (nobody 65534,
// daemon 1, bin 2; groups nogroup 65534, adm 4, sys 3).

#include <doctest/doctest.h>

#include <string>

#include "config/daemon_config.h"
#include "tests/config/config_test_util.h"

namespace docpipe {
namespace {

QuotaConfig parse(const std::string& text) { return test::parse_config_text(text).quotas; }
std::string error_of(const std::string& text) { return test::config_error_of(text); }

Credentials user(uid_t uid, gid_t gid = 60000, std::vector<gid_t> groups = {}) {
  return Credentials{uid, gid, std::move(groups)};
}

TEST_CASE("config quotas: absent - nobody is limited and status shows no quota") {
  QuotaConfig q = parse("{}");
  CHECK_FALSE(q.enabled);
  ResolvedQuota r = resolve_quota(q, user(1000));
  CHECK_FALSE(r.limited());
}

TEST_CASE("config quotas: names and numeric ids resolve when the config loads") {
  QuotaConfig q = parse(R"({"quotas": {
      "default": {"max_queued_jobs": 5, "max_priority": 0},
      "users": {"nobody": {"max_queued_jobs": 2}, "4321": {"max_priority": 50}},
      "groups": {"adm": {"max_queued_jobs": 10}, "7777": {"max_priority": null}}}})");
  CHECK(q.enabled);
  REQUIRE(q.default_entry.has_value());
  CHECK(q.default_entry->max_queued_jobs.value == 5);
  CHECK(q.default_entry->path == "quotas.default");
  REQUIRE(q.users.count(65534) == 1);
  CHECK(q.users.at(65534).path == "quotas.users.nobody");
  CHECK(q.users.at(65534).max_queued_jobs.value == 2);
  CHECK_FALSE(q.users.at(65534).max_priority.given);
  REQUIRE(q.users.count(4321) == 1);
  CHECK(q.users.at(4321).max_priority.value == 50);
  REQUIRE(q.groups.count(4) == 1);
  CHECK(q.groups.at(4).path == "quotas.groups.adm");
  REQUIRE(q.groups.count(7777) == 1);
  CHECK(q.groups.at(7777).max_priority.given);
  CHECK_FALSE(q.groups.at(7777).max_priority.value.has_value());
}

TEST_CASE("config quotas: a user entry beats a group entry beats default - per key") {
  QuotaConfig q = parse(R"({"quotas": {
      "default": {"max_queued_jobs": 5, "max_priority": 0},
      "users": {"nobody": {"max_queued_jobs": 2}},
      "groups": {"adm": {"max_queued_jobs": 10, "max_priority": 20}}}})");
  // The user's entry gives max_queued_jobs; max_priority comes from its group.
  ResolvedQuota r = resolve_quota(q, user(65534, 65534, {4}));
  CHECK(r.max_queued_jobs == 2);
  CHECK(r.max_queued_jobs_source == "quotas.users.nobody.max_queued_jobs");
  CHECK(r.max_priority == 20);
  CHECK(r.max_priority_source == "quotas.groups.adm.max_priority");
  // Without the group: the default's priority.
  r = resolve_quota(q, user(65534, 65534));
  CHECK(r.max_queued_jobs == 2);
  CHECK(r.max_priority == 0);
  CHECK(r.max_priority_source == "quotas.default.max_priority");
  // A member of adm by its primary group, with no user entry.
  r = resolve_quota(q, user(1000, 4));
  CHECK(r.max_queued_jobs == 10);
  CHECK(r.max_queued_jobs_source == "quotas.groups.adm.max_queued_jobs");
  // Anyone else: the default.
  r = resolve_quota(q, user(1000));
  CHECK(r.max_queued_jobs == 5);
  CHECK(r.max_queued_jobs_source == "quotas.default.max_queued_jobs");
}

TEST_CASE("config quotas: root is never limited - not even by a group it is in") {
  QuotaConfig q = parse(R"({"quotas": {"default": {"max_queued_jobs": 1, "max_priority": -5},
                                       "groups": {"0": {"max_queued_jobs": 1}}}})");
  CHECK_FALSE(resolve_quota(q, std::nullopt).limited());  // JobSpec::submitter of root's jobs
  CHECK_FALSE(resolve_quota(q, user(0, 0)).limited());
  CHECK(resolve_quota(q, user(1, 1)).limited());
  CHECK(error_of(R"({"quotas": {"users": {"root": {"max_queued_jobs": 1}}}})") ==
        "config.json: quotas.users.root: root (uid 0) is never limited; remove this entry");
  CHECK(error_of(R"({"quotas": {"users": {"0": {}}}})").find("quotas.users.0: root (uid 0)") !=
        std::string::npos);
}

TEST_CASE("config quotas: null lifts a cap and the most generous group wins") {
  QuotaConfig q = parse(R"({"quotas": {
      "default": {"max_queued_jobs": 3, "max_priority": 0},
      "users": {"daemon": {"max_queued_jobs": null}},
      "groups": {"adm": {"max_queued_jobs": 4, "max_priority": 10},
                 "sys": {"max_queued_jobs": 8, "max_priority": null},
                 "nogroup": {"max_queued_jobs": 6}}}})");
  ResolvedQuota r = resolve_quota(q, user(1, 1));
  CHECK_FALSE(r.max_queued_jobs.has_value());  // null in the user's entry: no cap
  CHECK(r.max_priority == 0);
  // In adm, sys and nogroup: 8 jobs (sys), any priority (sys's null beats adm's 10).
  r = resolve_quota(q, user(1000, 65534, {4, 3}));
  CHECK(r.max_queued_jobs == 8);
  CHECK(r.max_queued_jobs_source == "quotas.groups.sys.max_queued_jobs");
  CHECK_FALSE(r.max_priority.has_value());
  // The order of the groups does not matter.
  r = resolve_quota(q, user(1000, 3, {65534, 4}));
  CHECK(r.max_queued_jobs == 8);
  CHECK_FALSE(r.max_priority.has_value());
  // adm and nogroup: the larger of 4 and 6; priority from adm only.
  r = resolve_quota(q, user(1000, 4, {65534}));
  CHECK(r.max_queued_jobs == 6);
  CHECK(r.max_priority == 10);
  // An empty entry gives nothing: the default decides.
  q = parse(R"({"quotas": {"default": {"max_queued_jobs": 3}, "users": {"bin": {}}}})");
  CHECK(resolve_quota(q, user(2, 2)).max_queued_jobs == 3);
}

TEST_CASE("config quotas: unknown names and keys - wrong types and ranges are refused by path") {
  CHECK(error_of(R"({"quotas": {"users": {"no-such-user-xyz": {"max_queued_jobs": 1}}}})") ==
        "config.json: quotas.users.no-such-user-xyz: no such user \"no-such-user-xyz\" (a name "
        "in the user database or a numeric id)");
  CHECK(error_of(R"({"quotas": {"groups": {"no-such-group-xyz": {}}}})")
            .find("quotas.groups.no-such-group-xyz: no such group") != std::string::npos);
  CHECK(error_of(R"({"quotas": {"default": {"max_jobs": 1}}})").find("quotas.default.max_jobs") !=
        std::string::npos);
  CHECK(error_of(R"({"quotas": {"defaults": {}}})").find("quotas.defaults") != std::string::npos);
  CHECK(error_of(R"({"quotas": {"users": {"nobody": {"max_queued_jobs": -1}}}})")
            .find("quotas.users.nobody.max_queued_jobs: expected integer 0..") !=
        std::string::npos);
  CHECK(error_of(R"({"quotas": {"users": {"nobody": {"max_priority": 101}}}})")
            .find("quotas.users.nobody.max_priority: expected integer -100..100") !=
        std::string::npos);
  CHECK(error_of(R"({"quotas": {"default": {"max_priority": "5"}}})")
            .find("quotas.default.max_priority") != std::string::npos);
  CHECK(error_of(R"({"quotas": {"users": ["nobody"]}})").find("quotas.users") != std::string::npos);
  CHECK(error_of(R"({"quotas": {"groups": {"adm": 3}}})").find("quotas.groups.adm") !=
        std::string::npos);
  CHECK(error_of(R"({"quotas": 5})").find("quotas") != std::string::npos);
  // Two names for one id: which would win?
  CHECK(error_of(R"({"quotas": {"users": {"nobody": {}, "65534": {}}}})")
            .find("quotas.users.nobody: the same user (id 65534) as quotas.users.65534") !=
        std::string::npos);
  // Every problem at once.
  std::string all =
      error_of(R"({"quotas": {"users": {"no-such-user-xyz": {}}, "groups": {"adm": {"max": 1}}}})");
  CHECK(all.find("quotas.users.no-such-user-xyz") != std::string::npos);
  CHECK(all.find("quotas.groups.adm.max") != std::string::npos);
}

TEST_CASE("config quotas: the refusals name the cap and where it comes from") {
  QuotaConfig q = parse(R"({"quotas": {"users": {"nobody": {"max_priority": 5}},
                                       "default": {"max_queued_jobs": 2}}})");
  ResolvedQuota r = resolve_quota(q, user(65534, 65534));
  CHECK(priority_over_cap_message(9, 65534, r) ==
        "9 is above the cap 5 for uid 65534 (quotas.users.nobody.max_priority)");
  CHECK(queued_jobs_over_cap_message(65534, 2, r) ==
        "over quota: uid 65534 has 2 jobs queued or running on this node, the most that "
        "quotas.default.max_queued_jobs (2) allows; submit again once one of them has finished");
}

}  // namespace
}  // namespace docpipe
