// One very large document (2 GiB by default) through zstd then unzstd in one job: the daemon
// streams it in bounded memory (peak RSS under 128 MiB with the default memory budget) and the
// output is the input, compared by SHA-256. The document is generated on the fly from a seeded
// generator into the test's temp folder, hashed as it is written; nothing is stored in the repo.
//
// DOCPIPE_LARGE_TEST_BYTES sets the size (a decimal byte count), for slow builds: scripts/test
// sets it smaller under sanitizers, whose RSS is not the daemon's own anyway (the RSS check is
// skipped there).

#include <doctest/doctest.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"

namespace e2e {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizedBuild = true;
#else
constexpr bool kSanitizedBuild = false;
#endif

constexpr uint64_t kDefaultLargeBytes = uint64_t{2} << 30;
constexpr uint64_t kMaxPeakRss = uint64_t{128} << 20;

uint64_t large_document_bytes() {
  const char* v = std::getenv("DOCPIPE_LARGE_TEST_BYTES");
  if (v == nullptr || *v == '\0') return kDefaultLargeBytes;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (*end != '\0' || n == 0) {
    throw std::runtime_error(
        std::string("DOCPIPE_LARGE_TEST_BYTES: expected a byte count, got \"") + v + "\"");
  }
  return n;
}

// Lines of words drawn from a 512-word vocabulary by xorshift64*: text that compresses about
// 3:1, like prose, and costs a few nanoseconds per word to make.
class WordStream {
 public:
  explicit WordStream(uint64_t seed) : state_(seed | 1) {
    const char* syllables[] = {"ka", "lo", "mi",  "ne", "ru", "sa", "to", "vi",
                               "do", "pe", "qua", "ri", "ze", "bo", "fu", "gan"};
    for (int i = 0; i < 512; ++i) {
      std::string w = std::string(syllables[i % 16]) + syllables[(i / 16) % 16];
      if (i >= 256) w += syllables[(i * 7) % 16];
      words_.push_back(w);
    }
  }

  // Appends about `n` bytes (whole words) to `out`.
  void fill(std::string& out, size_t n) {
    const size_t target = out.size() + n;
    while (out.size() < target) {
      uint64_t r = next();
      for (int k = 0; k < 3; ++k, r >>= 21) {
        out += words_[r & 511];
        out += ((r >> 9) & 15) == 0 ? '\n' : ' ';
      }
    }
  }

 private:
  uint64_t next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1DULL;
  }

  uint64_t state_;
  std::vector<std::string> words_;
};

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    REQUIRE(EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) == 1);
  }
  void update(std::string_view data) {
    REQUIRE(EVP_DigestUpdate(ctx_.get(), data.data(), data.size()) == 1);
  }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    REQUIRE(EVP_DigestFinal_ex(ctx_.get(), digest, &len) == 1);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
      out += digits[digest[i] >> 4];
      out += digits[digest[i] & 15];
    }
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

void write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("write " + path + ": " + std::strerror(errno));
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Writes `bytes` of generated text to `path`; returns its SHA-256.
std::string write_generated(const std::string& path, uint64_t bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
  WordStream words(20261126);
  Sha256 sha;
  std::string block;
  uint64_t written = 0;
  while (written < bytes) {
    block.clear();
    words.fill(block, 1 << 20);
    if (block.size() > bytes - written) block.resize(bytes - written);
    sha.update(block);
    write_all(fd, block, path);
    written += block.size();
  }
  ::close(fd);
  return sha.hex();
}

// SHA-256 and size of a file, read in 1 MiB pieces.
std::pair<std::string, uint64_t> hash_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
  Sha256 sha;
  std::string buf(1 << 20, '\0');
  uint64_t size = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error("read " + path + ": " + std::strerror(errno));
    if (n == 0) break;
    sha.update(std::string_view(buf.data(), static_cast<size_t>(n)));
    size += static_cast<uint64_t>(n);
  }
  ::close(fd);
  return {sha.hex(), size};
}

}  // namespace

TEST_CASE(
    "e2e large document: 2 GiB through zstd and unzstd in bounded memory, output equals "
    "input") {
  const uint64_t bytes = large_document_bytes();
  TempDir tmp;
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  make_dirs(in);
  const auto start = Clock::now();
  const std::string input_hash = write_generated(in + "/large.txt", bytes);

  // Default memory budget; fsync of 2 GiB would only add disk time.
  DaemonProcess daemon(spool, {"--durability", "none"});
  daemon.start();
  nlohmann::json job =
      make_job("large", in, out, {{{"op", "zstd"}, {"level", 1}}, {{"op", "unzstd"}}});
  // One document takes minutes on a loaded 2-core machine or a sanitized build; the default
  // 30 s document_timeout_ms is for ordinary documents.
  job["limits"]["document_timeout_ms"] = 15 * 60 * 1000;
  drop_job(spool, "large.json", job);
  JobOutcome outcome = daemon.wait_for_job("large", std::chrono::minutes(15));
  const uint64_t peak_rss = daemon.peak_rss_bytes();
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["bytes"]["in"] == bytes);
  CHECK(outcome.report["bytes"]["out"] == bytes);

  const auto [output_hash, output_size] = hash_file(out + "/large.txt");
  CHECK(output_size == bytes);
  CHECK(output_hash == input_hash);
  MESSAGE("large document: "
          << bytes << " bytes, daemon peak RSS " << peak_rss / 1024 << " KiB, whole test "
          << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count()
          << " ms");
  if (!kSanitizedBuild) CHECK(peak_rss < kMaxPeakRss);
  CHECK(daemon.terminate() == 0);
}

}  // namespace e2e

namespace e2e {

// A document that expands a thousandfold twice: 512 MiB of zeros, gzipped twice into a few KiB.
// One 64 KiB piece of it used to come out of the second gunzip as one 512 MiB string; now every
// transform call hands back about 1 MiB at most, and the daemon writes it away as it comes.
TEST_CASE("e2e large document: doubly gzipped zeros expand 100,000-fold in bounded memory") {
  constexpr uint64_t kBytes = uint64_t{512} << 20;
  TempDir tmp;
  const std::string in = tmp / "in", out = tmp / "out", spool = tmp / "spool";
  {
    const std::string once = gzip(std::string(kBytes, '\0'));
    write_file(in + "/zeros.gz.gz", gzip(once));
  }
  DaemonProcess daemon(spool, {"--durability", "none"});
  daemon.start();
  nlohmann::json job = make_job(
      "zeros", in, out,
      {{{"op", "gunzip"}, {"max_ratio", 100000}}, {{"op", "gunzip"}, {"max_ratio", 100000}}});
  job["output"]["suffix"] = ".out";
  job["limits"]["document_timeout_ms"] = 15 * 60 * 1000;
  drop_job(spool, "zeros.json", job);
  JobOutcome outcome = daemon.wait_for_job("zeros", std::chrono::minutes(15));
  const uint64_t peak_rss = daemon.peak_rss_bytes();
  INFO("report: " << outcome.report.dump(2));
  CHECK(outcome.folder == "done");
  CHECK(outcome.report["bytes"]["out"] == kBytes);

  const int fd = ::open((out + "/zeros.gz.gz.out").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  std::string buf(1 << 20, '\0');
  uint64_t size = 0, nonzero = 0;
  for (ssize_t n; (n = ::read(fd, buf.data(), buf.size())) > 0;) {
    size += static_cast<uint64_t>(n);
    for (ssize_t i = 0; i < n; ++i) nonzero += buf[static_cast<size_t>(i)] != '\0';
  }
  ::close(fd);
  CHECK(size == kBytes);
  CHECK(nonzero == 0);
  MESSAGE("doubly gzipped zeros: daemon peak RSS " << peak_rss / 1024 << " KiB");
  if (!kSanitizedBuild) CHECK(peak_rss < kMaxPeakRss);
  CHECK(daemon.terminate() == 0);
}

}  // namespace e2e
