// redact: replaces e-mail addresses, card numbers, IPv4 addresses and custom RE2 patterns,
// streaming. The matching rules are in redact_matcher.h.

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/transforms/param_reader.h"
#include "core/transforms/redact_matcher.h"

namespace docpipe {
namespace {

constexpr int64_t kMaxReplacementBytes = 1024;

class RedactTransform : public DocumentTransform {
 public:
  explicit RedactTransform(std::shared_ptr<const RedactMatcher> matcher)
      : scanner_(std::move(matcher)) {}

  Status update(std::string_view in, std::string& out) override {
    scanner_.update(in, out);
    return ok();
  }
  Status finish(std::string& out) override {
    scanner_.finish(out);
    return ok();
  }

 private:
  RedactScanner scanner_;
};

class RedactStep : public TransformStep {
 public:
  explicit RedactStep(std::shared_ptr<const RedactMatcher> matcher)
      : matcher_(std::move(matcher)) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext&) const override {
    return std::make_unique<RedactTransform>(matcher_);
  }

 private:
  std::shared_ptr<const RedactMatcher> matcher_;
};

const ParamSchema& schema() {
  static const ParamSchema s =
      ParamSchema()
          .string_array("patterns", {"email", "card"}, {"email", "card", "ipv4"},
                        "built-in patterns: email (local@domain.tld), card (13-19 digits, "
                        "optionally grouped by spaces or dashes, Luhn-checked), ipv4 (dotted quad, "
                        "octets 0..255)")
          .string_array(
              "custom", {}, {},
              "extra RE2 regular expressions; every match is redacted (leftmost-longest); "
              "at most 32 patterns of 1024 bytes, each compiling within 1 MiB of RE2 "
              "memory and all together within 150000 RE2 instructions")
          .string("replacement", "[REDACTED]",
                  "text written in place of each match (at most 1024 bytes)")
          .integer("max_match_bytes", 64, 1 << 20, 1024,
                   "longest match redacted; also how much is held back between chunks");
  return s;
}

std::shared_ptr<const TransformStep> configure(const nlohmann::json& params, const TransformEnv&,
                                               FieldErrors& errors) {
  ParamReader reader(schema(), params, errors);
  RedactConfig config;
  for (const std::string& name : reader.string_array("patterns")) {
    config.email = config.email || name == "email";
    config.card = config.card || name == "card";
    config.ipv4 = config.ipv4 || name == "ipv4";
  }
  config.custom = reader.string_array("custom");
  config.replacement = reader.string("replacement");
  if (config.replacement.size() > static_cast<size_t>(kMaxReplacementBytes)) {
    reader.error("replacement", "expected a string of at most " +
                                    std::to_string(kMaxReplacementBytes) + " bytes, got " +
                                    std::to_string(config.replacement.size()) + " bytes");
  }
  config.max_match_bytes = static_cast<size_t>(reader.integer("max_match_bytes"));
  if (!config.email && !config.card && !config.ipv4 && config.custom.empty()) {
    // After another error the lists may just be defaults standing in for bad values.
    if (reader.ok())
      reader.error("patterns", "no pattern to redact: patterns and custom are both empty");
    return nullptr;
  }
  // Compile even when other parameters are wrong, so that every bad pattern is reported at once.
  std::shared_ptr<const RedactMatcher> matcher = RedactMatcher::create(std::move(config), errors);
  if (!reader.ok() || matcher == nullptr) return nullptr;
  return std::make_shared<RedactStep>(std::move(matcher));
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "redact",
    .description =
        "replaces e-mail addresses, card numbers, IPv4 addresses and custom patterns (RE2)",
    .streaming = true,
    .params = schema().specs(),
    .configure = configure});

}  // namespace
}  // namespace docpipe
