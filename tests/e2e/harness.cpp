#include "tests/e2e/harness.h"

// The file half of the e2e harness; the process half (commands, DaemonProcess) is in
// daemon_process.cpp.

#include <doctest/doctest.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace e2e {

namespace fs = std::filesystem;

namespace {

std::runtime_error sys_error(const std::string& what, int err) {
  return std::runtime_error(what + ": " + std::strerror(err));
}

}  // namespace

std::string scratch_base() { return ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"; }

std::vector<std::string> dot_files_under(const std::string& root) {
  std::vector<std::string> found;
  if (!file_exists(root)) return found;
  for (const std::string& rel : list_files(root)) {
    const size_t slash = rel.rfind('/');
    if (rel[slash == std::string::npos ? 0 : slash + 1] == '.') found.push_back(rel);
  }
  return found;
}

void write_config(const std::string& path, const std::string& text) {
  write_file(path + ".new", text);
  if (::rename((path + ".new").c_str(), path.c_str()) != 0) {
    throw sys_error("rename " + path + ".new", errno);
  }
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string docpipe_binary() { return DOCPIPE_BINARY; }

void skip_test(const std::string& reason) {
  const char* required = std::getenv("DOCPIPE_REQUIRE_ALL_TESTS");
  if (required != nullptr && std::string_view(required) != "" &&
      std::string_view(required) != "0") {
    FAIL("cannot run, and DOCPIPE_REQUIRE_ALL_TESTS is set: " << reason);
  }
  MESSAGE("SKIPPED: " << reason);
}

bool poll_until(milliseconds timeout, const std::function<bool()>& predicate) {
  Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    if (predicate()) return true;
    if (Clock::now() >= deadline) return predicate();
    std::this_thread::sleep_for(milliseconds(5));
  }
}

// ---- TempDir and files ----

TempDir::TempDir(const std::string& base) {
  std::string pattern = base + "/docpipe-e2e.XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) throw sys_error("mkdtemp " + pattern, errno);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const std::string& path, std::string_view content) {
  fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(content.data(), static_cast<std::streamsize>(content.size()));
  f.close();
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(path, ec));
}

void make_dirs(const std::string& path) { fs::create_directories(path); }

std::vector<std::string> list_files(const std::string& root) {
  std::vector<std::string> out;
  // A running daemon creates and renames temp files meanwhile: no step may stat or resolve a
  // name again (fs::relative canonicalises, and threw for a temp file renamed away).
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    std::error_code ec;
    if (!entry.is_directory(ec)) out.push_back(entry.path().lexically_relative(root).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

nlohmann::json read_json(const std::string& path) {
  std::string text = read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": not JSON: " + e.what());
  }
}

std::vector<nlohmann::json> read_json_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_file(path));
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    try {
      out.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(path + ":" + std::to_string(n) + ": not JSON: " + e.what());
    }
  }
  return out;
}

std::string gunzip(std::string_view compressed) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw std::runtime_error("inflateInit2 failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  zs.avail_in = static_cast<uInt>(compressed.size());
  std::string out;
  char buf[65536];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      std::string msg = zs.msg != nullptr ? zs.msg : "truncated input";
      inflateEnd(&zs);
      throw std::runtime_error("gunzip: " + msg);
    }
    out.append(buf, sizeof buf - zs.avail_out);
  }
  bool trailing = zs.avail_in != 0;
  inflateEnd(&zs);
  if (trailing) throw std::runtime_error("gunzip: trailing data after the gzip stream");
  return out;
}

std::string gzip(std::string_view data) {
  z_stream zs{};
  if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("deflateInit2 failed");
  }
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buf[65536];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = deflate(&zs, Z_FINISH);
    out.append(buf, sizeof buf - zs.avail_out);
  }
  deflateEnd(&zs);
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("EVP_Digest failed");
  }
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

nlohmann::json make_job(const std::string& id, const std::string& input_dir,
                        const std::string& output_dir, nlohmann::json transforms) {
  return nlohmann::json{{"id", id},
                        {"input", {{"dir", input_dir}}},
                        {"output", {{"dir", output_dir}}},
                        {"transforms", std::move(transforms)}};
}

std::string describe_difference(std::string_view expected, std::string_view actual) {
  if (expected == actual) return "";
  size_t at = 0;
  while (at < expected.size() && at < actual.size() && expected[at] == actual[at]) ++at;
  size_t from = at < 40 ? 0 : at - 40;
  auto excerpt = [&](std::string_view s) {
    return "\"" + std::string(s.substr(std::min(from, s.size()), 100)) + "\"";
  };
  return "sizes " + std::to_string(expected.size()) + " (expected) and " +
         std::to_string(actual.size()) + " (actual), first difference at byte " +
         std::to_string(at) + ":\n  expected " + excerpt(expected) + "\n  actual   " +
         excerpt(actual);
}

void drop_job(const std::string& spool, const std::string& name, const nlohmann::json& job) {
  std::string tmp = spool + "/incoming/." + name + ".tmp";
  std::string dest = spool + "/incoming/" + name;
  write_file(tmp, job.dump(2) + "\n");
  if (::rename(tmp.c_str(), dest.c_str()) != 0) throw sys_error("rename " + tmp, errno);
}

nlohmann::json daemon_status(const std::string& spool, const std::string& scratch) {
  CommandResult r = run_command({docpipe_binary(), "status", "--spool", spool, "--json"}, scratch);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  return nlohmann::json::parse(r.out);
}

}  // namespace e2e
