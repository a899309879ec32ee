// Real documents through the real daemon: html.text, html.markdown, pdf.text, text.chunk,
// office.text and auto.text, with
// output.extension naming the outputs (x.html -> x.txt, x.pdf -> x.txt), pages in several
// character sets, hostile documents that fail alone, and a job whose outputs would collide
// refused at submission.

#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"
#include "tests/support/office_writer.h"
#include "tests/support/pdf_writer.h"

namespace e2e {

TEST_CASE("e2e documents: pages become text and Markdown named by output.extension") {
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
  // A declared character set docpipe does not know.
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

  // odd.html declares a character set docpipe does not know: passed over, as browsers do.
  CHECK(text.report["counts"]["succeeded"] == 5);
  CHECK(text.report["counts"]["failed"] == 0);
  CHECK(md.folder == "done");

  CHECK(list_files(out) == std::vector<std::string>{"md/site/index.md", "text/README.txt",
                                                    "text/odd.txt", "text/site/index.txt",
                                                    "text/site/legacy.txt", "text/site/wide.txt"});
  CHECK(read_file(out + "/text/odd.txt") == "?\n");
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

TEST_CASE(
    "e2e documents: a job whose outputs would collide is refused before anything is written") {
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

TEST_CASE("e2e documents: a folder of PDFs becomes text, a damaged one fails alone") {
  TempDir tmp;
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  write_file(in + "/2026/q1.pdf",
             docpipe::test::make_pdf({{"First quarter", "Revenue 10"}, {"Appendix"}}));
  write_file(in + "/2026/q2.pdf", docpipe::test::make_pdf({{"Second quarter"}}));
  write_file(in + "/looped.pdf", docpipe::test::recursive_pdf());
  write_file(in + "/fake.pdf", "not a pdf at all\n");
  DaemonProcess daemon(spool, {"--workers", "2", "--durability", "none"});
  daemon.start();
  nlohmann::json job = make_job("pdfs", in, out, {{{"op", "pdf.text"}, {"on_damage", "fail"}}});
  job["output"]["extension"] = ".txt";
  job["limits"] = {{"max_failed_documents", 5}};
  drop_job(spool, "pdfs.json", job);
  JobOutcome outcome = daemon.wait_for_job("pdfs");
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.report["counts"]["succeeded"] == 2);
  CHECK(outcome.report["counts"]["failed"] == 2);
  std::map<std::string, std::string> errors;
  for (const nlohmann::json& f : outcome.report["failed_documents"]) {
    errors[f["input"].get<std::string>()] = f["error"].get<std::string>();
  }
  CHECK(errors[in + "/looped.pdf"].find("pdf.text: damaged PDF: Loop in Pages tree") !=
        std::string::npos);
  CHECK(errors[in + "/fake.pdf"].find("pdf.text: not a PDF that poppler can read") !=
        std::string::npos);
  CHECK(list_files(out) == std::vector<std::string>{"2026/q1.txt", "2026/q2.txt"});
  CHECK(read_file(out + "/2026/q1.txt") == "First quarter\nRevenue 10\n\fAppendix\n");
  CHECK(read_file(out + "/2026/q2.txt") == "Second quarter\n");
  daemon.expect_running();
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e documents: a PDF archive becomes search chunks (the README's example)") {
  TempDir tmp;
  const std::string in = tmp / "archive", out = tmp / "chunks", spool = tmp / "spool";
  std::vector<std::vector<std::string>> pages;
  for (int p = 1; p <= 3; ++p) {
    std::vector<std::string> lines;
    for (int l = 0; l < 30; ++l) {
      lines.push_back("Page " + std::to_string(p) + " line " + std::to_string(l) +
                      " of the contract says something.");
    }
    pages.push_back(lines);
  }
  write_file(in + "/2025/contract.pdf", docpipe::test::make_pdf(pages));
  DaemonProcess daemon(spool, {"--workers", "2", "--durability", "none"});
  daemon.start();
  nlohmann::json job =
      make_job("chunks", in, out,
               {{{"op", "pdf.text"}}, {{"op", "text.chunk"}, {"size", 400}, {"overlap", 50}}});
  job["output"]["extension"] = ".jsonl";
  drop_job(spool, "chunks.json", job);
  JobOutcome outcome = daemon.wait_for_job("chunks");
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.folder == "done");
  const std::string jsonl = read_file(out + "/2025/contract.jsonl");
  std::vector<nlohmann::json> chunks;
  for (size_t at = 0, nl; (nl = jsonl.find('\n', at)) != std::string::npos; at = nl + 1) {
    chunks.push_back(nlohmann::json::parse(jsonl.substr(at, nl - at)));
  }
  REQUIRE(chunks.size() >= 9);  // 3 pages of ~1,300 characters in chunks of at most 400
  std::set<int> pages_seen;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const nlohmann::json& c = chunks[i];
    CHECK(c["source"] == "2025/contract.pdf");
    CHECK(c["chunk"] == static_cast<int>(i));
    const std::string text = c["text"];
    CHECK(text.size() <= 400);
    CHECK(text.find("Page " + std::to_string(c["page"].get<int>()) + " line") != std::string::npos);
    pages_seen.insert(c["page"].get<int>());
  }
  CHECK(pages_seen == std::set<int>{1, 2, 3});
  CHECK(chunks.back()["text"].get<std::string>().ends_with(
      "line 29 of the contract says something."));
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e documents: Office files become text, a zip bomb and a laugh fail alone") {
  TempDir tmp;
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  write_file(in + "/letter.docx",
             docpipe::test::docx(docpipe::test::w_para("Dear reader,") +
                                 docpipe::test::w_para("the figures follow.")));
  write_file(in + "/figures.xlsx",
             docpipe::test::xlsx({{"Q1",
                                   "<row r=\"1\"><c r=\"A1\" t=\"s\"><v>0</v></c>"
                                   "<c r=\"B1\"><v>42</v></c></row>"}},
                                 {"North"}));
  write_file(in + "/talk.odp",
             docpipe::test::odf("presentation",
                                "<office:presentation><draw:page><draw:frame><draw:text-box>"
                                "<text:p>Slide one</text:p></draw:text-box></draw:frame>"
                                "</draw:page></office:presentation>"));
  write_file(in + "/bomb.docx",
             docpipe::test::zip_bytes({{"word/document.xml", std::string(32u << 20, 'a')}}));
  write_file(
      in + "/laugh.docx",
      docpipe::test::zip_bytes(
          {{"word/document.xml",
            "<!DOCTYPE d [<!ENTITY a \"aaaa\">]><w:document xmlns:w=\"x\">&a;</w:document>"}}));
  DaemonProcess daemon(spool, {"--workers", "2", "--durability", "none"});
  daemon.start();
  nlohmann::json job = make_job("office", in, out, {{{"op", "office.text"}}});
  job["output"]["extension"] = ".txt";
  job["limits"] = {{"max_failed_documents", 5}};
  drop_job(spool, "office.json", job);
  JobOutcome outcome = daemon.wait_for_job("office");
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.report["counts"]["succeeded"] == 3);
  CHECK(outcome.report["counts"]["failed"] == 2);
  std::map<std::string, std::string> errors;
  for (const nlohmann::json& f : outcome.report["failed_documents"]) {
    errors[f["input"].get<std::string>()] = f["error"].get<std::string>();
  }
  CHECK(errors[in + "/bomb.docx"].find("unpacks to more than max_ratio") != std::string::npos);
  CHECK(errors[in + "/laugh.docx"].find("XML with a document type declaration is refused") !=
        std::string::npos);
  CHECK(list_files(out) == std::vector<std::string>{"figures.txt", "letter.txt", "talk.txt"});
  CHECK(read_file(out + "/letter.txt") == "Dear reader,\nthe figures follow.\n");
  CHECK(read_file(out + "/figures.txt") == "Q1\nNorth\t42\n");
  CHECK(read_file(out + "/talk.txt") == "Slide one\n");
  daemon.expect_running();
  CHECK(daemon.terminate() == 0);
}

TEST_CASE("e2e documents: auto.text sends each file of a mixed folder to its extractor") {
  TempDir tmp;
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  write_file(in + "/a.pdf", docpipe::test::make_pdf({{"from the pdf"}}));
  write_file(in + "/b.docx", docpipe::test::docx(docpipe::test::w_para("from the docx")));
  write_file(in + "/c.html", "<html><body><h1>from the page</h1><style>p{}</style></body></html>");
  write_file(in + "/d.txt", "from the text file\n");
  // Named .txt, but a PDF: the content decides.
  write_file(in + "/e.txt", docpipe::test::make_pdf({{"a pdf in disguise"}}));
  write_file(in + "/f.png",
             std::string("\x89PNG\r\n\x1A\n\0\0\0\rIHDR", 16) + std::string(64, '\0'));
  DaemonProcess daemon(spool, {"--workers", "2", "--durability", "none"});
  daemon.start();
  nlohmann::json job = make_job("mixed", in, out, {{{"op", "auto.text"}}});
  job["output"]["suffix"] = ".txt";
  job["limits"] = {{"max_failed_documents", 5}};
  drop_job(spool, "mixed.json", job);
  JobOutcome outcome = daemon.wait_for_job("mixed");
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.report["counts"]["succeeded"] == 5);
  REQUIRE(outcome.report["failed_documents"].size() == 1);
  CHECK(outcome.report["failed_documents"][0]["error"].get<std::string>().find(
            "auto.text: no extractor for image/png") != std::string::npos);
  CHECK(read_file(out + "/a.pdf.txt") == "from the pdf\n");
  CHECK(read_file(out + "/b.docx.txt") == "from the docx\n");
  CHECK(read_file(out + "/c.html.txt") == "from the page\n");
  CHECK(read_file(out + "/d.txt.txt") == "from the text file\n");
  CHECK(read_file(out + "/e.txt.txt") == "a pdf in disguise\n");
  CHECK(daemon.terminate() == 0);
}

}  // namespace e2e
