// html.text and html.markdown through the real daemon, with output.extension naming the outputs
// (x.html -> x.txt), pages in several character sets, a hostile page that fails alone, and a job
// whose outputs would collide refused at submission.

#include <doctest/doctest.h>

#include <string>

#include "tests/e2e/harness.h"

namespace e2e {

TEST_CASE("e2e html: pages become text and Markdown named by output.extension") {
  TempDir tmp;
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  write_file(in + "/site/index.html",
             "<!doctype html><html><head><title>Home</title><script>track()</script></head>"
             "<body><h1>Welcome</h1><p>Read the <a href=\"/guide\">guide</a>.</p>"
             "<table><tr><th>Plan</th><th>Price</th></tr><tr><td>Basic</td><td>5</td></tr>"
             "</table></body></html>");
  // windows-1252, declared by a meta tag: "Café – ©".
  write_file(in + "/site/legacy.htm",
             "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; "
             "charset=windows-1252\"></head><body><p>Caf\xE9 \x96 \xA9</p></body></html>");
  // UTF-16LE with a byte order mark: "<p>hi</p>".
  write_file(in + "/site/wide.html", std::string("\xFF\xFE<\0p\0>\0h\0i\0<\0/\0p\0>\0", 20));
  // A page with no extension keeps its name plus the extension.
  write_file(in + "/README", "<p>plain</p>");
  // A declared character set docpipe does not know: that document fails, the others do not.
  write_file(in + "/odd.html", "<meta charset=x-klingon><p>?</p>");

  DaemonProcess daemon(spool, {"--workers", "2", "--durability", "none"});
  daemon.start();
  nlohmann::json text_job = make_job("text", in, out + "/text", {{{"op", "html.text"}}});
  text_job["output"]["extension"] = ".txt";
  nlohmann::json md_job = make_job("md", in, out + "/md", {{{"op", "html.markdown"}}});
  md_job["input"]["include"] = {"site/index.html"};
  md_job["output"]["extension"] = ".md";
  drop_job(spool, "text.json", text_job);
  drop_job(spool, "md.json", md_job);
  JobOutcome text = daemon.wait_for_job("text");
  JobOutcome md = daemon.wait_for_job("md");
  INFO("reports: " << text.report.dump(2) << "\n" << md.report.dump(2));

  CHECK(text.report["counts"]["succeeded"] == 4);
  CHECK(text.report["counts"]["failed"] == 1);
  REQUIRE(text.report["failed_documents"].size() == 1);
  CHECK(text.report["failed_documents"][0]["error"].get<std::string>().find(
            "html.text: the document declares character set \"x-klingon\" (meta)") !=
        std::string::npos);
  CHECK(md.folder == "done");

  CHECK(list_files(out) == std::vector<std::string>{"md/site/index.md", "text/README.txt",
                                                    "text/site/index.txt", "text/site/legacy.txt",
                                                    "text/site/wide.txt"});
  CHECK(read_file(out + "/text/site/index.txt") ==
        "Welcome\n\nRead the guide.\n\nPlan\tPrice\nBasic\t5\n");
  CHECK(read_file(out + "/text/site/legacy.txt") == "Caf\xC3\xA9 \xE2\x80\x93 \xC2\xA9\n");
  CHECK(read_file(out + "/text/site/wide.txt") == "hi\n");
  CHECK(read_file(out + "/text/README.txt") == "plain\n");
  CHECK(read_file(out + "/md/site/index.md") ==
        "# Welcome\n\nRead the [guide](/guide).\n\n| Plan | Price |\n| --- | --- |\n"
        "| Basic | 5 |\n");

  // The manifest names each output as written.
  const std::string manifest = read_file(spool + "/done/md.manifest.jsonl");
  CHECK(manifest.find("\"output\":\"" + out + "/md/site/index.md\"") != std::string::npos);
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e html: a job whose outputs would collide is refused before anything is written") {
  TempDir tmp;
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  write_file(in + "/report.html", "<p>one</p>");
  write_file(in + "/report.htm", "<p>two</p>");
  write_file(in + "/other.html", "<p>three</p>");
  DaemonProcess daemon(spool, {"--workers", "2", "--durability", "none"});
  daemon.start();
  nlohmann::json job = make_job("clash", in, out, {{{"op", "html.text"}}});
  job["output"]["extension"] = ".txt";
  drop_job(spool, "clash.json", job);
  nlohmann::json error = daemon.wait_for_rejection("clash.json");
  INFO(error.dump(2));
  const std::string text = error.dump();
  CHECK(text.find("output.extension") != std::string::npos);
  CHECK(text.find("would both be written to report.txt") != std::string::npos);
  CHECK(!file_exists(out + "/other.txt"));
  CHECK(daemon.terminate() == 0);
}

}  // namespace e2e
