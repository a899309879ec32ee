// The daemon config's optional "retention" section (config/daemon_config.h RetentionConfig):
// absent, the spool keeps everything; present, it is read strictly.

#include <doctest/doctest.h>

#include <string>

#include "config/daemon_config.h"
#include "tests/config/config_test_util.h"

namespace docpipe {
namespace {

DaemonConfig parse(const std::string& text) { return test::parse_config_text(text); }
std::string error_of(const std::string& text) { return test::config_error_of(text); }

TEST_CASE("config retention: absent, nothing is pruned and the spool is measured every minute") {
  RetentionConfig r = parse("{}").retention;
  for (const RetentionRule* rule : {&r.done, &r.failed, &r.rejected}) {
    CHECK(rule->max_age_days == 0);
    CHECK(rule->max_jobs == 0);
  }
  CHECK(r.interval_ms == 60000);
}

TEST_CASE("config retention: each folder's rule and the interval are read") {
  RetentionConfig r = parse(R"({"retention": {
      "done": {"max_age_days": 30, "max_jobs": 10000},
      "failed": {"max_age_days": 90},
      "rejected": {"max_jobs": 500},
      "interval_ms": 3600000}})")
                          .retention;
  CHECK(r.done.max_age_days == 30);
  CHECK(r.done.max_jobs == 10000);
  CHECK(r.failed.max_age_days == 90);
  CHECK(r.failed.max_jobs == 0);
  CHECK(r.rejected.max_age_days == 0);
  CHECK(r.rejected.max_jobs == 500);
  CHECK(r.interval_ms == 3600000);
}

TEST_CASE("config retention: bad values and unknown keys are refused by path") {
  CHECK(error_of(R"({"retention": {"done": {"max_age_days": 0}}})")
            .find("retention.done.max_age_days") != std::string::npos);
  CHECK(error_of(R"({"retention": {"failed": {"max_jobs": -1}}})")
            .find("retention.failed.max_jobs") != std::string::npos);
  CHECK(error_of(R"({"retention": {"rejected": {"max_age": 7}}})")
            .find("retention.rejected.max_age") != std::string::npos);
  CHECK(error_of(R"({"retention": {"active": {"max_age_days": 7}}})").find("retention.active") !=
        std::string::npos);
  CHECK(error_of(R"({"retention": {"interval_ms": 10}})").find("retention.interval_ms") !=
        std::string::npos);
  CHECK(error_of(R"({"retention": [30]})").find("retention") != std::string::npos);
  CHECK(error_of(R"({"retention": {"done": 30}})").find("retention.done") != std::string::npos);
}

}  // namespace
}  // namespace docpipe
