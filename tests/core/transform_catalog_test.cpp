// The second set of transforms as `docpipe transforms` lists them: streaming flags and the
// exact parameters, with a description and a JSON default (or required) for each.

#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "tests/core/transform_test_util.h"

using docpipe::ParamSpec;
using docpipe::TransformInfo;
using docpipe::TransformRegistry;
using json = nlohmann::json;

namespace {

// "name:type=default" for each parameter, in declaration order.
std::vector<std::string> catalog_params(const std::string& op) {
  std::vector<std::string> out;
  for (const ParamSpec& p : docpipe::test::transform_info(op).params)
    out.push_back(p.name + ":" + p.type + "=" + p.default_value);
  return out;
}

}  // namespace

TEST_CASE("transform catalog: the new transforms are registered with their parameters") {
  const std::map<std::string, bool> streaming = {{"zstd", true},           {"unzstd", true},
                                                 {"text.normalize", true}, {"markdown.html", false},
                                                 {"json.pretty", false},   {"json.minify", false},
                                                 {"template", true},       {"exec", true}};
  for (const auto& [op, streams] : streaming) {
    CAPTURE(op);
    CHECK(docpipe::test::transform_info(op).streaming == streams);
  }
  CHECK(catalog_params("zstd") == std::vector<std::string>{"level:integer=3"});
  CHECK(catalog_params("unzstd") ==
        std::vector<std::string>{"max_output_bytes:integer=4294967296", "max_ratio:integer=1000"});
  CHECK(catalog_params("text.normalize") ==
        std::vector<std::string>{"invalid:string=\"fail\"",
                                 "trim_trailing_whitespace:boolean=false",
                                 "final_newline:boolean=false"});
  CHECK(catalog_params("markdown.html") ==
        std::vector<std::string>{"unsafe_html:boolean=false", "smart:boolean=false",
                                 "hardbreaks:boolean=false", "max_input_bytes:integer=67108864",
                                 "worker_memory_bytes:integer=536870912"});
  CHECK(catalog_params("json.pretty") ==
        std::vector<std::string>{"indent:integer=2", "max_input_bytes:integer=67108864"});
  CHECK(catalog_params("json.minify") ==
        std::vector<std::string>{"max_input_bytes:integer=67108864"});
  CHECK(catalog_params("template") == std::vector<std::string>{"template:string=null",
                                                               "template_file:string=null",
                                                               "escape_html:boolean=false"});
  CHECK(catalog_params("exec") == std::vector<std::string>{"command:string="});
}

TEST_CASE(
    "transform catalog: every parameter of every transform has a description and a JSON "
    "default or none (required)") {
  for (const TransformInfo* info : TransformRegistry::instance().all()) {
    CAPTURE(info->op);
    CHECK_FALSE(info->description.empty());
    for (const ParamSpec& p : info->params) {
      CAPTURE(p.name);
      CHECK_FALSE(p.description.empty());
      CHECK_FALSE(p.type.empty());
      if (!p.default_value.empty()) CHECK(json::accept(p.default_value));
    }
  }
}
