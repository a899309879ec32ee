// Real documents through the real daemon: html.text, html.markdown, pdf.text, text.chunk,
// office.text, ocr and auto.text, with
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
#include "tests/support/scan_writer.h"

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
             docpipe::test::make_pdf({{"First quarter", "Revenue 10"}, {"Appendix"}},
                                     "/Title (Quarter one) /Author (Ann Analyst)"));
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
  // Each PDF's pages, title and author are in its manifest line.
  std::map<std::string, nlohmann::json> metadata;
  for (const nlohmann::json& record : read_json_lines(outcome.manifest_path)) {
    metadata[record["input"].get<std::string>()] = record.value("metadata", nlohmann::json());
  }
  CHECK(metadata[in + "/2026/q1.pdf"] ==
        nlohmann::json{{"pages", 2}, {"title", "Quarter one"}, {"author", "Ann Analyst"}});
  CHECK(metadata[in + "/2026/q2.pdf"] == nlohmann::json{{"pages", 1}});
  CHECK(metadata[in + "/fake.pdf"].is_null());
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
  write_file(in + "/g.png",
             docpipe::test::encode_png(docpipe::test::scan_lines({"from the scanned page"})));
  DaemonProcess daemon(spool, {"--workers", "2", "--durability", "none"});
  daemon.start();
  nlohmann::json job = make_job("mixed", in, out, {{{"op", "auto.text"}}});
  job["output"]["suffix"] = ".txt";
  job["limits"] = {{"max_failed_documents", 5}};
  drop_job(spool, "mixed.json", job);
  JobOutcome outcome = daemon.wait_for_job("mixed");
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.report["counts"]["succeeded"] == 6);
  REQUIRE(outcome.report["failed_documents"].size() == 1);
  // A PNG signature over zeros: ocr takes it and says what is wrong with it.
  CHECK(outcome.report["failed_documents"][0]["error"].get<std::string>().find(
            "ocr: the image: the PNG header cannot be read") != std::string::npos);
  CHECK(docpipe::test::word_recall("from the scanned page", read_file(out + "/g.png.txt")) >= 0.75);
  CHECK(read_file(out + "/a.pdf.txt") == "from the pdf\n");
  CHECK(read_file(out + "/b.docx.txt") == "from the docx\n");
  CHECK(read_file(out + "/c.html.txt") == "from the page\n");
  CHECK(read_file(out + "/d.txt.txt") == "from the text file\n");
  CHECK(read_file(out + "/e.txt.txt") == "a pdf in disguise\n");
  CHECK(daemon.terminate() == 0);
}

}  // namespace e2e

namespace e2e {

TEST_CASE("e2e documents: scans become text by ocr, a PNG bomb and a fake fail alone") {
  TempDir tmp;
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  const std::vector<std::string> memo = {"Internal memo", "The meeting moves to Friday"};
  const std::vector<std::string> notice = {"Public notice", "Roads close at noon"};
  const std::string known_memo = "Internal memo\nThe meeting moves to Friday\n";
  const std::string known_notice = "Public notice\nRoads close at noon\n";
  write_file(in + "/memo.png", docpipe::test::encode_png(docpipe::test::scan_lines(memo)));
  write_file(in + "/notice.jpg", docpipe::test::encode_jpeg(docpipe::test::scan_lines(notice)));
  write_file(in + "/both.tiff", docpipe::test::encode_tiff({docpipe::test::scan_lines(memo),
                                                            docpipe::test::scan_lines(notice)}));
  write_file(in + "/bomb.png", docpipe::test::png_header_only(50000, 50000, std::string(64, '\0')));
  write_file(in + "/fake.png", "this is text, not a picture\n");
  write_file(in + "/scanned.pdf",
             docpipe::test::make_scanned_pdf({docpipe::test::scan_lines(memo)}, {{"Typed page"}}));
  DaemonProcess daemon(spool, {"--workers", "2", "--durability", "none"});
  daemon.start();
  nlohmann::json job = make_job("scans", in, out + "/ocr", {{{"op", "ocr"}}});
  job["input"]["include"] = {"*.png", "*.jpg", "*.tiff"};
  job["output"]["extension"] = ".txt";
  job["limits"] = {{"max_failed_documents", 5}};
  nlohmann::json pdf_job =
      make_job("pdf", in, out + "/pdf", {{{"op", "pdf.text"}, {"ocr", "auto"}}});
  pdf_job["input"]["include"] = {"*.pdf"};
  pdf_job["output"]["extension"] = ".txt";
  drop_job(spool, "scans.json", job);
  drop_job(spool, "pdf.json", pdf_job);
  JobOutcome outcome = daemon.wait_for_job("scans");
  JobOutcome pdf = daemon.wait_for_job("pdf");
  INFO("reports: " << outcome.report.dump(2) << "\n" << pdf.report.dump(2));
  CHECK(outcome.report["counts"]["succeeded"] == 3);
  CHECK(outcome.report["counts"]["failed"] == 2);
  std::map<std::string, std::string> errors;
  for (const nlohmann::json& f : outcome.report["failed_documents"]) {
    errors[f["input"].get<std::string>()] = f["error"].get<std::string>();
  }
  CHECK(errors[in + "/bomb.png"].find("ocr: the image is 50000 x 50000 pixels, more than "
                                      "max_pixels (40000000)") != std::string::npos);
  CHECK(errors[in + "/fake.png"].find("ocr: not a PNG, JPEG or TIFF image") != std::string::npos);
  CHECK(list_files(out) == std::vector<std::string>{"ocr/both.txt", "ocr/memo.txt",
                                                    "ocr/notice.txt", "pdf/scanned.txt"});
  CHECK(docpipe::test::word_recall(known_memo, read_file(out + "/ocr/memo.txt")) >= 0.9);
  CHECK(docpipe::test::word_recall(known_notice, read_file(out + "/ocr/notice.txt")) >= 0.9);
  const std::string both = read_file(out + "/ocr/both.txt");
  const size_t ff = both.find('\f');
  REQUIRE(ff != std::string::npos);
  CHECK(docpipe::test::word_recall(known_memo, both.substr(0, ff)) >= 0.9);
  CHECK(docpipe::test::word_recall(known_notice, both.substr(ff + 1)) >= 0.9);
  const std::string scanned = read_file(out + "/pdf/scanned.txt");
  CHECK(docpipe::test::word_recall(known_memo, scanned.substr(0, scanned.find('\f'))) >= 0.9);
  CHECK(scanned.ends_with("\fTyped page\n"));
  // The daemon's status says how many documents may be in OCR at once.
  const nlohmann::json status = daemon_status(spool, tmp.path())["daemon"];
  CHECK(status["ocr_concurrency"] == 2);
  CHECK(status["ocr_in_use"] == 0);
  daemon.expect_running();
  CHECK(daemon.terminate() == 0);
}

}  // namespace e2e
