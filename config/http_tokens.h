#pragma once
// Bearer tokens for the HTTP status endpoint's /jobs/ID (docs/design.md "HTTP status endpoint").
// The file named by the config's `http_tokens_file` holds one token per line, as its SHA-256:
//
//   # USER  SHA256-HEX-OF-THE-TOKEN
//   alice   9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//
// A request that presents a token acts as that user, with the same rights as `docpipe status`
// run by them. Only digests are kept, so the file discloses no token; but anyone who can write
// it can act as any user, so it must be owned by root or the daemon's own user and writable by
// nobody else. Loaded with the config (start-up and reload).

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/chain_fingerprint.h"  // sha256_hex: what the file holds for a token

namespace docpipe {

class HttpTokens {
 public:
  struct Entry {
    std::string user;
    uid_t uid = 0;
    std::array<uint8_t, 32> digest{};
  };

  // Tokens longer than this are refused without hashing (a request header is bounded anyway).
  static constexpr size_t kMaxTokenChars = 512;
  static constexpr size_t kMaxFileBytes = 1 << 20;

  HttpTokens() = default;
  explicit HttpTokens(std::vector<Entry> entries) : entries_(std::move(entries)) {}

  // The user a presented token stands for. Compares the token's digest with every entry in
  // constant time, so timing tells nothing of which entry came close.
  std::optional<Entry> find(std::string_view token) const;
  size_t size() const { return entries_.size(); }

 private:
  std::vector<Entry> entries_;
};

// Parses the file's text; `path` names it in errors. Each problem is one message naming its
// line ("/etc/docpipe/http-tokens: line 3: no such user \"bob\""). Resolves users with
// getpwnam_r.
std::optional<HttpTokens> parse_http_tokens(std::string_view text, const std::string& path,
                                            std::vector<std::string>& errors);

// Reads and parses `path`, refusing a file that is not a regular file, larger than
// kMaxFileBytes, writable by group or others, or owned by anyone but root or `daemon_euid`.
std::optional<HttpTokens> load_http_tokens(const std::string& path, uid_t daemon_euid,
                                           std::vector<std::string>& errors);

}  // namespace docpipe
