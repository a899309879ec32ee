// The second set of transforms through the real daemon: exec with an allow-listed command (and
// one that hangs), a job naming a command that is not allowed, a gzip bomb, and markdown.html,
// template and json.pretty outputs checked byte for byte.

#include <doctest/doctest.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>

#include "tests/e2e/harness.h"
#include "tests/support/processes.h"

namespace e2e {
namespace {

using docpipe::test::process_running;
using docpipe::test::zombies_of;

// A daemon whose config allow-lists `upper` (tr a-z A-Z) and `hang` (a sleep that outlives its
// 500 ms timeout; the odd duration makes it easy to find in /proc).
struct ExecDaemon {
  TempDir tmp;
  std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  std::string config = tmp / "docpipe.json";
  DaemonProcess daemon;

  ExecDaemon()
      : daemon(write_config(tmp / "spool", tmp / "docpipe.json"),
               {"--config", tmp / "docpipe.json", "--workers", "2", "--durability", "none"}) {
    daemon.start();
  }

  static std::string write_config(const std::string& spool, const std::string& path) {
    nlohmann::json config = {{"commands",
                              {{"upper", {{"argv", {"tr", "a-z", "A-Z"}}, {"timeout_ms", 10000}}},
                               {"hang", {{"argv", {"sleep", "600.123"}}, {"timeout_ms", 500}}}}}};
    write_file(path, config.dump(2) + "\n");
    return spool;
  }
};

// Nothing written below `dir` (which the daemon may not even have created).
bool no_outputs(const std::string& dir) { return !file_exists(dir) || list_files(dir).empty(); }

std::string first_error(const JobOutcome& outcome) {
  nlohmann::json failed = outcome.report["failed_documents"];
  REQUIRE(failed.size() >= 1);
  return failed[0]["error"].get<std::string>();
}

}  // namespace

TEST_CASE("e2e transforms: exec pipes documents through an allow-listed tr") {
  ExecDaemon d;
  std::map<std::string, std::string> expected;
  for (int i = 0; i < 20; ++i) {
    const std::string name = "doc-" + std::to_string(i) + ".txt";
    std::string text = "document " + std::to_string(i) + ": hello, docpipe\n";
    for (int k = 0; k < i * 500; ++k) text += "more text, line " + std::to_string(k) + "\n";
    write_file(d.in + "/" + name, text);
    std::string upper = text;
    for (char& c : upper)
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    expected[name] = upper;
  }
  drop_job(d.spool, "upper.json",
           make_job("upper", d.in, d.out, {{{"op", "exec"}, {"command", "upper"}}}));
  JobOutcome outcome = d.daemon.wait_for_job("upper");
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["counts"]["succeeded"] == 20);
  for (const auto& [name, text] : expected) {
    INFO(name);
    CHECK(describe_difference(text, read_file(d.out + "/" + name)) == "");
  }
  CHECK(zombies_of(d.daemon.pid()) == 0);
  CHECK(d.daemon.terminate() == 0);
}

TEST_CASE(
    "e2e transforms: a hanging exec command is killed at its timeout and leaves nothing "
    "behind") {
  ExecDaemon d;
  write_file(d.in + "/stuck.txt", "this document never comes back\n");
  drop_job(d.spool, "hang.json",
           make_job("hang", d.in, d.out, {{{"op", "exec"}, {"command", "hang"}}}));
  JobOutcome outcome = d.daemon.wait_for_job("hang", std::chrono::milliseconds(60000));
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.folder == "failed");
  CHECK(outcome.report["counts"]["failed"] == 1);
  CHECK(first_error(outcome) ==
        d.in + "/stuck.txt: exec: command \"hang\" timed out after 500 ms and was killed");
  CHECK(no_outputs(d.out));
  // The daemon reaps the command before it reports the document, so this holds at once.
  CHECK_FALSE(process_running("sleep 600.123"));
  CHECK(zombies_of(d.daemon.pid()) == 0);
  CHECK(d.daemon.terminate() == 0);
}

TEST_CASE("e2e transforms: a job naming a command that is not allow-listed is rejected") {
  ExecDaemon d;
  write_file(d.in + "/a.txt", "a\n");
  drop_job(d.spool, "rm.json", make_job("rm", d.in, d.out, {{{"op", "exec"}, {"command", "rm"}}}));
  nlohmann::json error = d.daemon.wait_for_rejection("rm.json");
  INFO("error file: " << error.dump(2));
  bool named = false;
  for (nlohmann::json e : error["errors"]) {
    named = named || (e["path"] == "transforms[0].command" &&
                      e["reason"] == "\"rm\" is not an allowed command (allowed: hang, upper)");
  }
  CHECK(named);
  CHECK(no_outputs(d.out));
  CHECK(d.daemon.terminate() == 0);
}

TEST_CASE("e2e transforms: a gzip bomb through gunzip fails with the ratio limit") {
  TempDir tmp;
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  const std::string bomb = gzip(std::string(200u << 20, '\0'));
  REQUIRE(bomb.size() < 300u << 10);
  write_file(in + "/bomb.gz", bomb);
  DaemonProcess daemon(spool, {"--durability", "none"});
  daemon.start();
  nlohmann::json job = make_job("bomb", in, out, {{{"op", "gunzip"}}});
  job["output"]["suffix"] = ".bin";
  drop_job(spool, "bomb.json", job);
  JobOutcome outcome = daemon.wait_for_job("bomb");
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.folder == "failed");
  const std::string error = first_error(outcome);
  CHECK(error.rfind(in + "/bomb.gz: gunzip: output exceeds max_ratio (1000 times the input): ",
                    0) == 0);
  CHECK(error.find("raise max_ratio if such data is expected") != std::string::npos);
  CHECK(no_outputs(out));
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e transforms: markdown.html with a template and json.pretty write exact outputs") {
  TempDir tmp;
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  write_file(in + "/notes/a.md",
             "# Notes\n\n- [x] ship ~~v1~~ v2\n\n| k | v |\n|---|---|\n| x | <i>1</i> |\n");
  write_file(in + "/b.md", "Visit www.example.com & <script>alert(1)</script>\n");
  write_file(in + "/data/c.json", "{\"b\":[1,2.50,{\"x\":null}],\"a\":\"\\u00e9\",\"b\":true}");
  write_file(in + "/d.json", "[]");

  DaemonProcess daemon(spool, {"--workers", "2", "--durability", "none"});
  daemon.start();
  nlohmann::json md = make_job(
      "md", in, out + "/html",
      {{{"op", "markdown.html"}},
       {{"op", "template"},
        {"template", "<!doctype html>\n<title>{{name}}</title>\n<main>\n{{content}}</main>\n"}}});
  md["input"]["include"] = {"**/*.md"};
  md["output"]["suffix"] = ".html";
  nlohmann::json js = make_job("js", in, out + "/json", {{{"op", "json.pretty"}, {"indent", 2}}});
  js["input"]["include"] = {"**/*.json"};
  drop_job(spool, "md.json", md);
  drop_job(spool, "js.json", js);
  JobOutcome md_outcome = daemon.wait_for_job("md");
  JobOutcome js_outcome = daemon.wait_for_job("js");
  INFO("reports: " << md_outcome.report.dump(2) << "\n" << js_outcome.report.dump(2));
  CHECK(md_outcome.folder == "done");
  CHECK(js_outcome.folder == "done");

  CHECK(list_files(out) == std::vector<std::string>{"html/b.md.html", "html/notes/a.md.html",
                                                    "json/d.json", "json/data/c.json"});
  CHECK(read_file(out + "/html/notes/a.md.html") ==
        "<!doctype html>\n<title>a.md</title>\n<main>\n"
        "<h1>Notes</h1>\n"
        "<ul>\n"
        "<li><input type=\"checkbox\" checked=\"\" disabled=\"\" /> ship <del>v1</del> v2</li>\n"
        "</ul>\n"
        "<table>\n<thead>\n<tr>\n<th>k</th>\n<th>v</th>\n</tr>\n</thead>\n"
        "<tbody>\n<tr>\n<td>x</td>\n<td>&lt;i&gt;1&lt;/i&gt;</td>\n</tr>\n</tbody>\n</table>\n"
        "</main>\n");
  CHECK(read_file(out + "/html/b.md.html") ==
        "<!doctype html>\n<title>b.md</title>\n<main>\n"
        "<p>Visit <a href=\"http://www.example.com\">www.example.com</a> &amp; "
        "&lt;script&gt;alert(1)&lt;/script&gt;</p>\n"
        "</main>\n");
  CHECK(read_file(out + "/json/data/c.json") == "{\n  \"b\": true,\n  \"a\": \"\xC3\xA9\"\n}\n");
  CHECK(read_file(out + "/json/d.json") == "[]\n");
  CHECK(daemon.terminate() == 0);
}

TEST_CASE(
    "e2e transforms: docpipe transforms --json lists every new transform with typed "
    "parameters") {
  TempDir tmp;
  CommandResult r = run_command({docpipe_binary(), "transforms", "--json"}, tmp.path());
  REQUIRE(r.exit_code == 0);
  std::map<std::string, nlohmann::json> by_op;
  for (const nlohmann::json& t : nlohmann::json::parse(r.out)) by_op[t["op"]] = t;
  const std::map<std::string, bool> streaming = {
      {"zstd", true},           {"unzstd", true},       {"text.normalize", true},
      {"markdown.html", false}, {"json.pretty", false}, {"json.minify", false},
      {"template", true},       {"exec", true},         {"html.text", false},
      {"html.markdown", false}, {"pdf.text", false},    {"ocr", false},
      {"office.text", false},   {"text.chunk", true},   {"auto.text", false}};
  for (const auto& [op, streams] : streaming) {
    INFO(op);
    REQUIRE(by_op.count(op) == 1);
    nlohmann::json t = by_op[op];
    CHECK(t["streaming"] == streams);
    CHECK(t["params"].size() >= 1);
    for (nlohmann::json p : t["params"]) {
      INFO(p.dump());
      CHECK(p["type"].is_string());
      CHECK(p["description"].is_string());
      CHECK((p.contains("default") || p["required"] == true));
    }
  }
  CHECK(by_op["zstd"]["params"][0] ==
        nlohmann::json{{"name", "level"},
                       {"type", "integer"},
                       {"default", 3},
                       {"description",
                        "compression level, 1 fastest to 19 smallest; levels above 15 need tens "
                        "of MiB per document being compressed (1..19)"}});
  CHECK(by_op["exec"]["params"][0]["required"] == true);
  REQUIRE(by_op.count("auto.text") == 1);
  CHECK(by_op["auto.text"]["streaming"] == false);
  CHECK(by_op["auto.text"]["params"][0] ==
        nlohmann::json{{"name", "ocr"},
                       {"type", "string"},
                       {"default", "auto"},
                       {"description",
                        "\"auto\" (the default) reads images and the scanned pages of PDFs with "
                        "tesseract; \"off\" fails images and leaves scanned pages empty (one of "
                        "\"off\", \"auto\")"}});
  std::set<std::string> ocr_params;
  for (const nlohmann::json& p : by_op["ocr"]["params"]) ocr_params.insert(p["name"]);
  CHECK(ocr_params == std::set<std::string>{"lang", "psm", "dpi", "max_pixels", "page_separator",
                                            "first_page", "last_page", "max_input_bytes",
                                            "worker_memory_bytes"});
  CHECK(by_op["template"]["params"][0]["default"] == nullptr);
  CHECK(by_op["text.normalize"]["params"][1]["default"] == false);
}

}  // namespace e2e
