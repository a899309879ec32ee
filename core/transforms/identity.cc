// identity: copies the document unchanged (what an empty transform list does, as an explicit step).

#include <nlohmann/json.hpp>

#include "core/transforms/param_reader.h"

namespace docpipe {
namespace {

class IdentityTransform : public DocumentTransform {
 public:
  Status update(std::string_view in, std::string& out) override {
    out.append(in);
    return ok();
  }
  Status finish(std::string&) override { return ok(); }
};

class IdentityStep : public TransformStep {
 public:
  std::unique_ptr<DocumentTransform> begin(const DocumentContext&) const override {
    return std::make_unique<IdentityTransform>();
  }
  bool passes_through() const override { return true; }
};

const ParamSchema& schema() {
  static const ParamSchema s;
  return s;
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "identity",
    .description = "copies the document unchanged",
    .streaming = true,
    .params = schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      ParamReader reader(schema(), params, errors);
      if (!reader.ok()) return nullptr;
      return std::make_shared<IdentityStep>();
    }});

}  // namespace
}  // namespace docpipe
