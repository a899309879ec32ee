// http_tokens_file (config/http_tokens.h): the file's format and its errors by line, the
// permissions it must have (anyone who can write it can act as any user), constant-time look-up
// by token, and the config key that loads it.

#include "config/http_tokens.h"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "tests/config/config_test_util.h"

namespace docpipe {
namespace {

// A scratch folder removed at the end.
struct Scratch {
  std::string dir;
  Scratch() {
    char tmpl[] = "/tmp/docpipe-tokens-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
  }
  ~Scratch() { std::system(("rm -rf '" + dir + "'").c_str()); }
  std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    std::string path = dir + "/" + name;
    std::ofstream(path) << text;
    REQUIRE(::chmod(path.c_str(), mode) == 0);
    return path;
  }
};

std::string joined(const std::vector<std::string>& errors) {
  std::string out;
  for (const auto& e : errors) out += e + "\n";
  return out;
}

TEST_CASE("http tokens: the SHA-256 of a token finds its user; anything else finds nothing") {
  std::vector<std::string> errors;
  auto tokens = parse_http_tokens(
      "# comment\n\nroot " + sha256_hex("s3cret") + "\n  nobody\t" + sha256_hex("other") + "  \n",
      "tokens", errors);
  REQUIRE_MESSAGE(tokens, joined(errors));
  CHECK(tokens->size() == 2);
  auto root = tokens->find("s3cret");
  REQUIRE(root);
  CHECK(root->user == "root");
  CHECK(root->uid == 0);
  auto nobody = tokens->find("other");
  REQUIRE(nobody);
  CHECK(nobody->uid == 65534);
  CHECK_FALSE(tokens->find("s3cre"));
  CHECK_FALSE(tokens->find("s3cret "));
  CHECK_FALSE(tokens->find(""));
  CHECK_FALSE(tokens->find(sha256_hex("s3cret")));  // the digest itself is no token
  CHECK_FALSE(tokens->find(std::string(HttpTokens::kMaxTokenChars + 1, 'a')));
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("http tokens: each bad line is an error naming its line") {
  std::vector<std::string> errors;
  auto tokens = parse_http_tokens("root " + sha256_hex("a") +
                                      "\nroot\n"
                                      "root abc\n"
                                      "no-such-user-docpipe " +
                                      sha256_hex("b") + "\nnobody " + sha256_hex("a") + "\nroot " +
                                      sha256_hex("c") + " extra\n",
                                  "/etc/docpipe/http-tokens", errors);
  CHECK_FALSE(tokens);
  REQUIRE(errors.size() == 5);
  CHECK(errors[0] == "/etc/docpipe/http-tokens: line 2: expected \"USER SHA256-HEX\", got 1 words");
  CHECK(errors[1].find("line 3: the digest must be 64 hex digits") != std::string::npos);
  CHECK(errors[2].find("line 4: no such user \"no-such-user-docpipe\"") != std::string::npos);
  CHECK(errors[3].find("line 5: the same token digest appears twice") != std::string::npos);
  CHECK(errors[4].find("line 6: expected") != std::string::npos);
}

TEST_CASE("http tokens: the file must be private to root or the daemon's user") {
  Scratch s;
  const std::string good = "root " + sha256_hex("t") + "\n";
  std::vector<std::string> errors;
  SUBCASE("0600 and 0644 are fine") {
    CHECK(load_http_tokens(s.write("a", good, 0600), ::geteuid(), errors));
    CHECK(load_http_tokens(s.write("b", good, 0644), ::geteuid(), errors));
    CHECK(errors.empty());
  }
  SUBCASE("writable by group or others is refused") {
    std::string path = s.write("c", good, 0620);
    CHECK_FALSE(load_http_tokens(path, ::geteuid(), errors));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] == path +
                           ": writable by group or others (anyone who can write it can act as "
                           "any user; chmod go-w)");
  }
  SUBCASE("owned by someone else is refused") {
    if (::geteuid() != 0) return;  // chown needs root
    std::string path = s.write("d", good, 0600);
    REQUIRE(::chown(path.c_str(), 65534, 65534) == 0);
    CHECK_FALSE(load_http_tokens(path, 0, errors));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("owned by uid 65534, not by root or the daemon's user") !=
          std::string::npos);
    // ... unless that user is the daemon's own.
    errors.clear();
    CHECK(load_http_tokens(path, 65534, errors));
  }
  SUBCASE("a folder or a missing file is refused") {
    CHECK_FALSE(load_http_tokens(s.dir, ::geteuid(), errors));
    CHECK_FALSE(load_http_tokens(s.dir + "/missing", ::geteuid(), errors));
    REQUIRE(errors.size() == 2);
    CHECK(errors[0] == s.dir + ": not a regular file");
    CHECK(errors[1] == s.dir + "/missing: cannot open: No such file or directory");
  }
}

TEST_CASE("http tokens: the config names the file; only the daemon reads it") {
  Scratch s;
  s.write("tokens", "root " + sha256_hex("t") + "\n");
  DaemonConfig c =
      test::parse_config_text(R"({"http_tokens_file": "tokens"})", "config.json", s.dir);
  CHECK(c.http_tokens_file == s.dir + "/tokens");
  CHECK_FALSE(c.http_tokens);  // parsing reads nothing: a CLI user need not be able to read it
  load_config_http_tokens(c);
  REQUIRE(c.http_tokens);
  CHECK(c.http_tokens->find("t"));

  // A file the CLI's user cannot read (here: none at all) does not stop the config from loading.
  DaemonConfig missing = test::parse_config_text(R"({"http_tokens_file": "/nonexistent/tokens"})");
  CHECK(missing.http_tokens_file == "/nonexistent/tokens");
  CHECK_THROWS_WITH_AS(load_config_http_tokens(missing),
                       "http_tokens_file: /nonexistent/tokens: cannot open: No such file or "
                       "directory",
                       ConfigError);

  DaemonConfig none = test::parse_config_text("{}");
  load_config_http_tokens(none);
  CHECK_FALSE(none.http_tokens);
  DaemonConfig empty = test::parse_config_text(R"({"http_tokens_file": ""})");
  load_config_http_tokens(empty);
  CHECK_FALSE(empty.http_tokens);

  s.write("bad", "root xyz\n");
  DaemonConfig bad =
      test::parse_config_text(R"({"http_tokens_file": "bad"})", "config.json", s.dir);
  std::string err;
  try {
    load_config_http_tokens(bad);
  } catch (const ConfigError& e) {
    err = e.what();
  }
  CHECK(err.find("http_tokens_file: " + s.dir + "/bad: line 1: the digest must be 64 hex") !=
        std::string::npos);
}

}  // namespace
}  // namespace docpipe
