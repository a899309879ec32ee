// template: wrapping documents in an inline template or a template file.

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/core/transform_test_util.h"

using docpipe::DocumentContext;
using docpipe::FieldErrors;
using docpipe::TransformEnv;
using docpipe::TransformStep;
using docpipe::test::config_errors;
using docpipe::test::errors_text;
using docpipe::test::make_step;
using docpipe::test::run_ok;
using json = nlohmann::json;

namespace {

// A temp folder holding a template file, removed at the end.
struct TemplateFiles {
  std::string dir;
  TemplateFiles() {
    char pattern[] = "/tmp/docpipe-template-test-XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    dir = pattern;
  }
  ~TemplateFiles() { std::filesystem::remove_all(dir); }
  std::string write(const std::string& name, const std::string& text) const {
    std::string path = dir + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
};

std::shared_ptr<const TransformStep> template_step(const json& params, const TransformEnv& env,
                                                   FieldErrors& errors) {
  return docpipe::test::transform_info("template").configure(params, env, errors);
}

std::string render(const TransformStep& step, std::string_view content, DocumentContext doc,
                   size_t chunk) {
  auto t = step.begin(doc);
  std::string out;
  if (chunk == 0) chunk = std::max<size_t>(content.size(), 1);
  for (size_t at = 0; at < content.size(); at += chunk)
    REQUIRE(t->update(content.substr(at, chunk), out).has_value());
  REQUIRE(t->finish(out).has_value());
  return out;
}

}  // namespace

TEST_CASE("template: wraps the content with the file name and relative path filled in") {
  auto step = make_step("template",
                        json{{"template", "<h1>{{name}}</h1>\n{{content}}\n<p>{{ path }}</p>"}});
  const std::string expected = "<h1>doc.txt</h1>\nbody <b>&\n<p>dir/doc.txt</p>";
  for (size_t chunk : {1, 2, 0}) CHECK(run_ok(*step, "body <b>&", chunk) == expected);
  CHECK(run_ok(*step, "") == "<h1>doc.txt</h1>\n\n<p>dir/doc.txt</p>");
}

TEST_CASE("template: escape_html escapes the content, the name and the path") {
  auto step = make_step(
      "template",
      json{{"template", "<title>{{name}}</title>{{content}}|{{path}}"}, {"escape_html", true}});
  DocumentContext doc{"a&b/<x>\"'.md", "<x>\"'.md"};
  const std::string expected =
      "<title>&lt;x&gt;&quot;&#39;.md</title>1 &lt; 2 &amp;&amp; &quot;q&quot; &#39;s&#39; "
      "\xC3\xA9|a&amp;b/&lt;x&gt;&quot;&#39;.md";
  for (size_t chunk : {1, 3, 0})
    CHECK(render(*step, "1 < 2 && \"q\" 's' \xC3\xA9", doc, chunk) == expected);
}

TEST_CASE("template: other double-brace text is kept as written") {
  auto step = make_step("template", json{{"template", "{{#each}} {{ a b }} {{content}} {{x"}});
  CHECK(run_ok(*step, "C") == "{{#each}} {{ a b }} C {{x");
}

TEST_CASE("template: the template must hold {{content}} exactly once and no unknown placeholder") {
  CHECK(errors_text(config_errors("template", json{{"template", "<p>{{name}}</p>"}})) ==
        "template: expected exactly one {{content}} placeholder, found none\n");
  CHECK(errors_text(config_errors("template", json{{"template", "{{content}}{{ content }}"}})) ==
        "template: expected exactly one {{content}} placeholder, found 2\n");
  CHECK(errors_text(config_errors("template", json{{"template", "{{title}} {{content}}"}})) ==
        "template: unknown placeholder {{title}} (known: {{content}}, {{name}}, {{path}})\n");
}

TEST_CASE("template: exactly one of template and template_file is required") {
  CHECK(errors_text(config_errors("template", json::object())) ==
        "template: required parameter is missing (give template or template_file)\n");
  CHECK(errors_text(config_errors(
            "template", json{{"template", "{{content}}"}, {"template_file", "/t.html"}})) ==
        "template_file: give either template or template_file, not both\n");
  CHECK(errors_text(config_errors("template", json{{"template", 5}, {"escape_html", "yes"}})) ==
        "template: expected string, got 5\nescape_html: expected boolean, got \"yes\"\n");
}

TEST_CASE("template: template_file is read once, from under the allowed input roots") {
  TemplateFiles files;
  const std::string path = files.write("page.html", "<main>{{content}}</main>\n");
  TransformEnv env;
  env.allowed_input_roots = {files.dir};
  FieldErrors errors;
  auto step = template_step(json{{"template_file", path}}, env, errors);
  CHECK(errors_text(errors) == "");
  REQUIRE(step != nullptr);
  files.write("page.html", "changed {{content}}");  // read at validation, not per document
  CHECK(render(*step, "x", {"x.md", "x.md"}, 0) == "<main>x</main>\n");
}

TEST_CASE("template: template_file outside the roots, relative, missing or too large is refused") {
  TemplateFiles files;
  const std::string inside = files.dir + "/inside";
  std::filesystem::create_directory(inside);
  const std::string outside = files.write("outside.html", "{{content}}");
  const std::string big = files.write("inside/big.html", std::string(1 << 20, 'x') + "{{content}}");
  const std::string link = inside + "/link.html";
  REQUIRE(::symlink(outside.c_str(), link.c_str()) == 0);
  TransformEnv env;
  env.allowed_input_roots = {inside};
  auto errors_for = [&](const std::string& file) {
    FieldErrors errors;
    CHECK(template_step(json{{"template_file", file}}, env, errors) == nullptr);
    return errors_text(errors);
  };
  CHECK(errors_for(outside) ==
        "template_file: " + outside + " is outside the allowed input roots (" + inside + ")\n");
  CHECK(errors_for(link) == "template_file: " + link + " (which is " + outside +
                                ") is outside the allowed input roots (" + inside + ")\n");
  CHECK(errors_for("inside/big.html") ==
        "template_file: expected an absolute path, got \"inside/big.html\"\n");
  CHECK(errors_for(inside + "/missing.html") ==
        "template_file: cannot open " + inside + "/missing.html: No such file or directory\n");
  CHECK(errors_for(big) == "template_file: " + big + " is larger than 1 MiB (1048587 bytes)\n");
  CHECK(errors_for(inside) == "template_file: " + inside + " is not a regular file\n");
  // A FIFO is refused at once, not waited on for a writer.
  const std::string fifo = inside + "/fifo.html";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK(errors_for(fifo) == "template_file: " + fifo + " is not a regular file\n");
  // With no roots at all (the default environment) nothing can be read.
  CHECK(errors_text(config_errors("template", json{{"template_file", outside}})) ==
        "template_file: " + outside + " is outside the allowed input roots (none)\n");
}
