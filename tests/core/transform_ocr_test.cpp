// ocr (core/transforms/ocr.cc) and pdf.text's ocr "auto" on pages the tests typeset and render
// themselves (tests/support/scan_writer.h), so the text is known; OCR output is compared word by
// word with a tolerance. Each document is read in a real sandboxed worker, as in the daemon:
// tesseract's models must have been loaded before the sandbox closed, or the worker dies.

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/transforms/ocr_engine.h"
#include "core/transforms/worker_pool.h"
#include "tests/core/transform_test_util.h"
#include "tests/support/hostile_documents.h"
#include "tests/support/scan_writer.h"

using docpipe::test::config_errors;
using docpipe::test::errors_text;
using docpipe::test::make_step;
using docpipe::test::run_chunked;
using docpipe::test::scan_lines;
using docpipe::test::word_recall;
using json = nlohmann::json;

namespace {

const std::vector<std::string> kInvoice = {"INVOICE NUMBER 4711", "Delivery of forty boxes",
                                           "Payment due within thirty days"};
const std::vector<std::string> kLetter = {"Dear customer", "Your parcel left our warehouse today",
                                          "Kind regards"};

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const std::string& l : lines) s += l + "\n";
  return s;
}

docpipe::Result<std::string> ocr(const std::string& image, const json& params = json::object()) {
  return run_chunked(*make_step("ocr", params), image, 65536);
}

std::string ocr_ok(const std::string& image, const json& params = json::object()) {
  docpipe::Result<std::string> out = ocr(image, params);
  REQUIRE_MESSAGE(out.has_value(), (out ? "" : out.error().message));
  return *out;
}

std::string ocr_error(const std::string& image, const json& params = json::object()) {
  docpipe::Result<std::string> out = ocr(image, params);
  REQUIRE_FALSE(out.has_value());
  return out.error().message;
}

}  // namespace

TEST_CASE("ocr: a scanned page as PNG reads as its text") {
  const std::string text = ocr_ok(docpipe::test::encode_png(scan_lines(kInvoice)));
  INFO(text);
  CHECK(word_recall(joined(kInvoice), text) >= 0.9);
  CHECK(text.find("4711") != std::string::npos);
  CHECK(text.back() == '\n');
}

TEST_CASE("ocr: a JPEG scan reads as its text") {
  const std::string text = ocr_ok(docpipe::test::encode_jpeg(scan_lines(kLetter, 300), 75));
  INFO(text);
  CHECK(word_recall(joined(kLetter), text) >= 0.9);
}

TEST_CASE("ocr: a multi-page TIFF reads page by page with the separator and the page range") {
  const std::string tiff = docpipe::test::encode_tiff(
      {scan_lines(kInvoice), scan_lines(kLetter), scan_lines({"Third"})});
  const std::string all = ocr_ok(tiff);
  INFO(all);
  const size_t ff = all.find('\f');
  REQUIRE(ff != std::string::npos);
  const size_t ff2 = all.find('\f', ff + 1);
  REQUIRE(ff2 != std::string::npos);
  CHECK(word_recall(joined(kInvoice), all.substr(0, ff)) >= 0.9);
  CHECK(word_recall(joined(kLetter), all.substr(ff + 1, ff2 - ff - 1)) >= 0.9);
  CHECK(all.find("Third", ff2) != std::string::npos);

  const std::string second = ocr_ok(tiff, {{"first_page", 2}, {"last_page", 2}});
  CHECK(second.find('\f') == std::string::npos);
  CHECK(word_recall(joined(kLetter), second) >= 0.9);
  CHECK(second.find("INVOICE") == std::string::npos);

  const std::string marked = ocr_ok(tiff, {{"first_page", 2}, {"page_separator", "\n=====\n"}});
  CHECK(marked.find("=====") != std::string::npos);
  CHECK(marked.find('\f') == std::string::npos);

  CHECK(ocr_error(tiff, {{"first_page", 4}}) ==
        "ocr: first_page 4 is past the last page of this image (3)");
}

TEST_CASE("ocr: psm 6 reads the page as one block of text") {
  const std::string text =
      ocr_ok(docpipe::test::encode_png(scan_lines({"Single line of text"})), {{"psm", 6}});
  CHECK(word_recall("Single line of text", text) >= 0.75);
}

TEST_CASE("ocr: a 50000 x 50000 PNG header is refused before a pixel is decoded") {
  // The worker's own limit is 512 MiB; the image would need 2.5 GB. The test process is capped
  // too, in case the refusal were ever to happen here instead.
  docpipe::test::AddressSpaceCap cap(rlim_t{4} << 30);
  const std::string bomb = docpipe::test::png_header_only(50000, 50000, std::string(64, '\0'));
  const auto start = std::chrono::steady_clock::now();
  docpipe::Result<std::string> out = ocr(bomb);
  REQUIRE_FALSE(out.has_value());
  CHECK(out.error().code == docpipe::ErrorCode::kTooLarge);
  CHECK(out.error().message ==
        "ocr: the image is 50000 x 50000 pixels, more than max_pixels (40000000); raise "
        "max_pixels (and worker_memory_bytes) to read it");
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  // Under the limit by parameter, the missing pixels fail as damage, not as a crash.
  const std::string small = docpipe::test::png_header_only(400, 300, std::string(64, '\0'));
  CHECK(ocr_error(small) == "ocr: the image: the PNG data cannot be decoded");
}

TEST_CASE("ocr: a TIFF of 50,000 pages is walked once, its bomb on the last page refused first") {
  // Reading page N by its index walks the directory chain from the start: over every page that
  // is quadratic (1.25e9 directory reads here). All sizes are checked before any page is read.
  const std::string tiff = docpipe::test::many_page_tiff(50000, 50000, 50000);
  const auto start = std::chrono::steady_clock::now();
  CHECK(ocr_error(tiff) ==
        "ocr: page 50000 is 50000 x 50000 pixels, more than max_pixels (40000000); raise "
        "max_pixels (and worker_memory_bytes) to read it");
  CHECK(ocr_error(tiff, {{"first_page", 49999}}) ==
        "ocr: page 50000 is 50000 x 50000 pixels, more than max_pixels (40000000); raise "
        "max_pixels (and worker_memory_bytes) to read it");
  // The range decides what is read: the one tiny page before it is decoded by its offset.
  CHECK(ocr(tiff, {{"first_page", 49999}, {"last_page", 49999}, {"psm", 10}}).has_value());
  CHECK(ocr_error(tiff, {{"first_page", 50001}}) ==
        "ocr: first_page 50001 is past the last page of this image (50000)");
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(20));
}

TEST_CASE("ocr: what is not an image it reads, or is damaged, fails naming why") {
  CHECK(ocr_error("just some text, not an image at all") ==
        "ocr: not a PNG, JPEG or TIFF image (the first bytes are none of theirs)");
  CHECK(ocr_error("%PDF-1.4\n%....") ==
        "ocr: not a PNG, JPEG or TIFF image (the first bytes are none of theirs)");
  std::string png = docpipe::test::encode_png(scan_lines(kInvoice));
  png.resize(png.size() / 2);
  const std::string truncated = ocr_error(png);
  CHECK(truncated.starts_with("ocr: the image"));
  const std::string tiff = docpipe::test::encode_tiff({scan_lines(kInvoice)});
  CHECK(ocr_error(tiff.substr(0, 20)) == "ocr: the TIFF's page directory cannot be read");
  // A larger page than max_pixels allows, from a real scan.
  const std::string big =
      ocr_error(docpipe::test::encode_png(scan_lines(kInvoice, 100)), {{"max_pixels", 1000}});
  CHECK(big ==
        "ocr: the image is 850 x 1100 pixels, more than max_pixels (1000); raise "
        "max_pixels (and worker_memory_bytes) to read it");
}

TEST_CASE("ocr: bad parameters are refused when the job is checked") {
  CHECK(errors_text(config_errors("ocr", {{"lang", "../../etc/passwd"}})) ==
        "lang: \"../../etc/passwd\" is not a language name (letters, digits and '_', e.g. "
        "\"eng\")\n");
  CHECK(errors_text(config_errors("ocr", {{"lang", "xyz"}})) ==
        "lang: \"xyz\" is not installed: no " + docpipe::tessdata_dir() +
            "/xyz.traineddata (on Debian: apt install tesseract-ocr-xyz)\n");
  CHECK(errors_text(config_errors("ocr", {{"lang", "eng+"}})) ==
        "lang: has an empty language name in \"eng+\"\n");
  CHECK(errors_text(config_errors("ocr", {{"lang", "a+b+c+d+e+f+g+h+i"}})) ==
        "lang: names more than 8 languages\n");
  CHECK(errors_text(config_errors("ocr", {{"psm", 0}})).starts_with("psm: "));
  CHECK(errors_text(config_errors("ocr", {{"psm", 12}})) ==
        "psm: 12 needs orientation detection, which ocr does not offer; use 3 to 11 or 13\n");
  CHECK(errors_text(config_errors("ocr", {{"dpi", 50}})) ==
        "dpi: is below 70; give 0 for the image's own resolution\n");
  CHECK(errors_text(config_errors("ocr", {{"first_page", 3}, {"last_page", 2}})) ==
        "last_page: is before first_page (3); 0 reads to the end\n");
}

TEST_CASE("ocr: documents of the ocr group wait for a slot, and a cancelled wait ends") {
  const std::string png = docpipe::test::encode_png(scan_lines({"Concurrency check"}));
  auto step = make_step("ocr", json::object());
  (void)docpipe::test::run_ok(*step, png);  // a worker with its models is ready
  docpipe::set_worker_concurrency("ocr", 1);
  std::atomic<int> most{0};
  std::atomic<bool> done{false};
  std::thread watch([&] {
    while (!done) {
      most = std::max(most.load(), docpipe::worker_concurrency_in_use("ocr"));
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  std::vector<std::thread> readers;
  std::atomic<int> read{0};
  for (int i = 0; i < 3; ++i) {
    readers.emplace_back([&] {
      if (word_recall("Concurrency check", docpipe::test::run_ok(*step, png)) >= 0.5) ++read;
    });
  }
  for (std::thread& t : readers) t.join();
  done = true;
  watch.join();
  CHECK(read == 3);
  CHECK(most == 1);
  CHECK(docpipe::worker_concurrency_in_use("ocr") == 0);

  // One document holds the only slot; another, cancelled while it waits, gives up with the
  // cancellation's error and never takes a worker.
  auto holder = step->begin(docpipe::DocumentContext{"a.png", "a.png"});
  std::string out;
  REQUIRE(holder->update(png, out).has_value());
  CHECK(docpipe::worker_concurrency_in_use("ocr") == 1);
  std::atomic<bool> cancel{false};
  docpipe::DocumentContext doc{"b.png", "b.png"};
  doc.check_interrupted = [&]() -> docpipe::Status {
    if (cancel) return docpipe::make_error(docpipe::ErrorCode::kCancelled, "cancelled by test");
    return docpipe::ok();
  };
  auto waiter = step->begin(doc);
  std::thread cancel_soon([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    cancel = true;
  });
  docpipe::Status st = waiter->update(png, out);
  cancel_soon.join();
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().message == "cancelled by test");
  holder.reset();  // dropped mid-document: its slot comes back
  CHECK(docpipe::worker_concurrency_in_use("ocr") == 0);
  docpipe::set_worker_concurrency("ocr", 0);
}

TEST_CASE("pdf.text: ocr auto reads scanned pages and keeps the text layer of the others") {
  const std::string pdf =
      docpipe::test::make_scanned_pdf({scan_lines(kInvoice, 200)}, {{"Typed second page"}});
  // Without OCR the scanned page has no text at all.
  const std::string plain = docpipe::test::run_ok(*make_step("pdf.text", json::object()), pdf);
  CHECK(plain.find("INVOICE") == std::string::npos);
  CHECK(plain.find("Typed second page") != std::string::npos);

  const std::string read =
      docpipe::test::run_ok(*make_step("pdf.text", {{"ocr", "auto"}}), pdf, 4096);
  INFO(read);
  const size_t ff = read.find('\f');
  REQUIRE(ff != std::string::npos);
  CHECK(word_recall(joined(kInvoice), read.substr(0, ff)) >= 0.9);
  CHECK(read.substr(ff + 1) == "Typed second page\n");
}

TEST_CASE("pdf.text: ocr parameters are checked with the job") {
  CHECK(errors_text(config_errors("pdf.text", {{"ocr", "always"}})).starts_with("ocr: "));
  CHECK(errors_text(config_errors("pdf.text", {{"ocr", "auto"}, {"ocr_lang", "xyz"}})) ==
        "ocr_lang: \"xyz\" is not installed: no " + docpipe::tessdata_dir() +
            "/xyz.traineddata (on Debian: apt install tesseract-ocr-xyz)\n");
  CHECK(errors_text(config_errors("pdf.text", {{"ocr_dpi", 20}})).starts_with("ocr_dpi: "));
  // Without ocr "auto" the models are not needed, so they are not asked for.
  CHECK(make_step("pdf.text", {{"ocr_lang", "xyz"}}) != nullptr);
}
