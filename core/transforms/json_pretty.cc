// json.pretty: re-indents a JSON document (key order kept, duplicate keys: the last value wins),
// ending it with a newline. Whole-document: see json_format.h.

#include <nlohmann/json.hpp>

#include "core/transforms/json_format.h"
#include "core/transforms/param_reader.h"
#include "core/transforms/whole_document.h"

namespace docpipe {
namespace {

const ParamSchema& schema() {
  static const ParamSchema s = add_max_input_bytes(ParamSchema().integer(
      "indent", 0, 8, 2, "spaces per nesting level; 0 puts each value on its own line unindented"));
  return s;
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "json.pretty",
    .description =
        "re-indents a JSON document, keeping key order (for a duplicate key the last value wins); "
        "numbers keep their text as written, and the output ends with a newline; "
        "output over 16 times the input plus 1 MiB (deep nesting at a wide indent) is refused",
    .streaming = false,
    .params = schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      ParamReader reader(schema(), params, errors);
      JsonFormat format;
      format.op = "json.pretty";
      format.indent = static_cast<int>(reader.integer("indent"));
      format.final_newline = true;
      format.max_input_bytes = static_cast<uint64_t>(reader.integer("max_input_bytes"));
      if (!reader.ok()) return nullptr;
      return make_json_format_step(format);
    }});

}  // namespace
}  // namespace docpipe
