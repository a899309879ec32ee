// json.minify: writes a JSON document on one line without insignificant whitespace (key order
// kept, duplicate keys: the last value wins) and without a trailing newline. Whole-document: see
// json_format.h.

#include <nlohmann/json.hpp>

#include "core/transforms/json_format.h"
#include "core/transforms/param_reader.h"
#include "core/transforms/whole_document.h"

namespace docpipe {
namespace {

const ParamSchema& schema() {
  static const ParamSchema s = add_max_input_bytes(ParamSchema());
  return s;
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "json.minify",
    .description =
        "writes a JSON document on one line without insignificant whitespace or a final newline, "
        "keeping key order (for a duplicate key the last value wins) and every number's text as "
        "written",
    .streaming = false,
    .params = schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      ParamReader reader(schema(), params, errors);
      JsonFormat format;
      format.op = "json.minify";
      format.max_input_bytes = static_cast<uint64_t>(reader.integer("max_input_bytes"));
      if (!reader.ok()) return nullptr;
      return make_json_format_step(format);
    }});

}  // namespace
}  // namespace docpipe
