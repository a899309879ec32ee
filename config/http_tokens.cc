#include "config/http_tokens.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "config/user_db.h"

namespace docpipe {

namespace {

std::array<uint8_t, 32> digest_of(std::string_view text) {
  std::array<uint8_t, 32> d{};
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), d.data());
  return d;
}

std::optional<std::array<uint8_t, 32>> parse_hex_digest(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  std::array<uint8_t, 32> d{};
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < 32; ++i) {
    int hi = nibble(hex[2 * i]);
    int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    d[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return d;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// Splits a line into whitespace-separated words.
std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space(line[i])) ++i;
    size_t start = i;
    while (i < line.size() && !is_space(line[i])) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

}  // namespace

std::optional<HttpTokens::Entry> HttpTokens::find(std::string_view token) const {
  if (token.empty() || token.size() > kMaxTokenChars) return std::nullopt;
  const std::array<uint8_t, 32> presented = digest_of(token);
  std::optional<Entry> match;
  for (const Entry& e : entries_) {
    // Every entry is compared in full; the file refuses duplicate digests, so at most one matches.
    if (CRYPTO_memcmp(e.digest.data(), presented.data(), presented.size()) == 0) match = e;
  }
  return match;
}

std::optional<HttpTokens> parse_http_tokens(std::string_view text, const std::string& path,
                                            std::vector<std::string>& errors) {
  std::vector<HttpTokens::Entry> entries;
  const size_t errors_before = errors.size();
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    const std::string where = path + ": line " + std::to_string(line_no) + ": ";
    std::vector<std::string_view> w = words(line);
    if (w.empty() || w[0].front() == '#') continue;
    if (w.size() != 2) {
      errors.push_back(where + "expected \"USER SHA256-HEX\", got " + std::to_string(w.size()) +
                       " words");
      continue;
    }
    std::string user(w[0]);
    auto digest = parse_hex_digest(w[1]);
    if (!digest) {
      errors.push_back(where + "the digest must be 64 hex digits (sha256sum of the token)");
      continue;
    }
    auto uid = resolve_user(user);
    if (!uid) {
      errors.push_back(where + "no such user \"" + user + "\"");
      continue;
    }
    bool duplicate = false;
    for (const HttpTokens::Entry& e : entries) duplicate = duplicate || e.digest == *digest;
    if (duplicate) {
      errors.push_back(where + "the same token digest appears twice");
      continue;
    }
    entries.push_back({std::move(user), *uid, *digest});
  }
  if (errors.size() != errors_before) return std::nullopt;
  return HttpTokens(std::move(entries));
}

std::optional<HttpTokens> load_http_tokens(const std::string& path, uid_t daemon_euid,
                                           std::vector<std::string>& errors) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    errors.push_back(path + ": cannot open: " + std::strerror(errno));
    return std::nullopt;
  }
  struct stat st {};
  std::string problem;
  if (::fstat(fd, &st) != 0) {
    problem = std::string("cannot stat: ") + std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    problem = "not a regular file";
  } else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    problem =
        "writable by group or others (anyone who can write it can act as any user; chmod "
        "go-w)";
  } else if (st.st_uid != 0 && st.st_uid != daemon_euid) {
    problem = "owned by uid " + std::to_string(st.st_uid) +
              ", not by root or the daemon's user (anyone who can write it can act as any user)";
  } else if (static_cast<uint64_t>(st.st_size) > HttpTokens::kMaxFileBytes) {
    problem = "larger than " + std::to_string(HttpTokens::kMaxFileBytes) + " bytes";
  }
  std::string text;
  if (problem.empty()) {
    text.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < text.size()) {
      ssize_t n = ::read(fd, text.data() + got, text.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        problem = std::string("cannot read: ") + std::strerror(errno);
        break;
      }
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    text.resize(got);
  }
  ::close(fd);
  if (!problem.empty()) {
    errors.push_back(path + ": " + problem);
    return std::nullopt;
  }
  return parse_http_tokens(text, path, errors);
}

}  // namespace docpipe
