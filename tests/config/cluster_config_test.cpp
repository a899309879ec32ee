// The daemon config's optional "cluster" section (config/daemon_config.h ClusterConfig): absent it
// leaves one node; present it is read strictly, every problem naming the file, the key and why.

#include <doctest/doctest.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/daemon_config.h"
#include "tests/config/config_test_util.h"

namespace docpipe {
namespace {

namespace fs = std::filesystem;

DaemonConfig parse(const std::string& text) { return test::parse_config_text(text); }
std::string error_of(const std::string& text) { return test::config_error_of(text); }

// A config whose cluster section has one server and then `more` keys (",\"k\": v..." or "").
std::string with_cluster(const std::string& more) {
  return R"({"cluster": {"nats": ["nats://127.0.0.1:4222"])" + more + "}}";
}

std::string host_name() {
  char host[256] = {};
  REQUIRE(::gethostname(host, sizeof host - 1) == 0);
  return host;
}

TEST_CASE("config cluster: an absent section leaves one node without NATS") {
  ClusterConfig c = parse("{}").cluster;
  CHECK_FALSE(c.enabled);
  CHECK(c.nats.empty());
  CHECK(c.node.empty());
  CHECK(c.stream == "DOCPIPE");
  CHECK_FALSE(default_config("/srv").cluster.enabled);
}

TEST_CASE("config cluster: a full section sets every field") {
  ClusterConfig c = parse(R"({"cluster": {
      "nats": ["nats://10.0.0.1:4222", "tls://nats-2.example.com:7422", "nats://[::1]:4333"],
      "stream": "DOC_pipe-2", "node": "n1.rack-2_a", "replicas": 3, "max_ack_pending": 64,
      "ack_wait_ms": 20000, "max_deliver": 5, "lease_ms": 9000, "publish_window": 500,
      "reconnect_wait_ms": 250, "reconnect_max_wait_ms": 5000,
      "credentials": "/etc/nats/docpipe.creds",
      "tls": {"ca": "/etc/nats/ca.pem", "cert": "/etc/nats/c.pem", "key": "/etc/nats/c.key",
              "hostname": "nats.internal"}}})")
                        .cluster;
  CHECK(c.enabled);
  CHECK(c.nats == std::vector<std::string>{"nats://10.0.0.1:4222", "tls://nats-2.example.com:7422",
                                           "nats://[::1]:4333"});
  CHECK(c.stream == "DOC_pipe-2");
  CHECK(c.node == "n1.rack-2_a");
  CHECK(c.replicas == 3);
  CHECK(c.max_ack_pending == 64);
  CHECK(c.ack_wait_ms == 20000);
  CHECK(c.max_deliver == 5);
  CHECK(c.lease_ms == 9000);
  CHECK(c.publish_window == 500);
  CHECK(c.reconnect_wait_ms == 250);
  CHECK(c.reconnect_max_wait_ms == 5000);
  CHECK(c.credentials == "/etc/nats/docpipe.creds");
  CHECK(c.tls_ca == "/etc/nats/ca.pem");
  CHECK(c.tls_cert == "/etc/nats/c.pem");
  CHECK(c.tls_key == "/etc/nats/c.key");
  CHECK(c.tls_hostname == "nats.internal");

  ClusterConfig up = parse(with_cluster(R"(, "user": "docpipe", "password": "s3cret")")).cluster;
  CHECK(up.user == "docpipe");
  CHECK(up.password == "s3cret");
  CHECK(parse(with_cluster(R"(, "token": "t0k")")).cluster.token == "t0k");
  CHECK(parse(with_cluster(R"(, "nkey_seed": "/etc/nats/seed")")).cluster.nkey_seed ==
        "/etc/nats/seed");
}

TEST_CASE("config cluster: keys left out take the documented defaults") {
  ClusterConfig c = parse(with_cluster("")).cluster;
  CHECK(c.enabled);
  CHECK(c.nats == std::vector<std::string>{"nats://127.0.0.1:4222"});
  CHECK(c.stream == "DOCPIPE");
  CHECK(c.node == cluster_node_from_host_name(host_name()));
  CHECK(c.replicas == 1);
  CHECK(c.max_ack_pending == 0);
  CHECK(c.ack_wait_ms == 30000);
  CHECK(c.max_deliver == 10);
  CHECK(c.lease_ms == 15000);
  CHECK(c.publish_window == 0);
  CHECK(c.reconnect_wait_ms == 1000);
  CHECK(c.reconnect_max_wait_ms == 10000);
  CHECK(c.credentials.empty());
  CHECK(c.nkey_seed.empty());
  CHECK(c.user.empty());
  CHECK(c.password.empty());
  CHECK(c.token.empty());
  CHECK(c.tls_ca.empty());
  CHECK(c.tls_cert.empty());
  CHECK(c.tls_key.empty());
  CHECK(c.tls_hostname.empty());
}

TEST_CASE(
    "config cluster: a URL without a port gets 4222 and the bounds of each range are accepted") {
  ClusterConfig c = parse(R"({"cluster": {"nats": ["nats://a", "tls://[fe80::1]", "nats://b:1",
      "nats://c:65535"], "replicas": 5, "max_ack_pending": 100000, "ack_wait_ms": 1000,
      "max_deliver": 1000, "lease_ms": 3600000, "publish_window": 1000000,
      "reconnect_wait_ms": 60000, "reconnect_max_wait_ms": 600000}})")
                        .cluster;
  CHECK(c.nats == std::vector<std::string>{"nats://a:4222", "tls://[fe80::1]:4222", "nats://b:1",
                                           "nats://c:65535"});
  CHECK(c.replicas == 5);
  CHECK(c.max_ack_pending == 100000);
  CHECK(c.reconnect_max_wait_ms == 600000);
  CHECK(parse(with_cluster(R"(, "stream": "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345")")).cluster.stream ==
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345");
  CHECK(parse(with_cluster(R"(, "node": ")" + std::string(64, 'n') + "\"")).cluster.node ==
        std::string(64, 'n'));
}

TEST_CASE("config cluster: a reconnect_wait_ms above the default cap raises the cap with it") {
  ClusterConfig c = parse(with_cluster(R"(, "reconnect_wait_ms": 20000)")).cluster;
  CHECK(c.reconnect_wait_ms == 20000);
  CHECK(c.reconnect_max_wait_ms == 20000);
}

TEST_CASE("config cluster: each bad key is an error naming the file and the key and why") {
  struct Case {
    std::string text;
    std::string error;
  };
  const std::string url_expected =
      "expected a URL nats://HOST:PORT or tls://HOST:PORT (port 1..65535, 4222 if left out), got ";
  const Case cases[] = {
      {R"({"cluster": null})", "config.json: cluster: expected object, got null"},
      {R"({"cluster": {}})", "config.json: cluster.nats: required key is missing"},
      {R"({"cluster": {"nats": []}})",
       "config.json: cluster.nats: expected a non-empty array of strings"},
      {R"({"cluster": {"nats": "nats://a:1"}})",
       "config.json: cluster.nats: expected array of strings, got \"nats://a:1\""},
      {R"({"cluster": {"nats": ["nats://a:1", 7]}})",
       "config.json: cluster.nats[1]: expected string, got 7"},
      {R"({"cluster": {"nats": ["nats://a:1", "x"]}})",
       "config.json: cluster.nats[1]: " + url_expected + "\"x\""},
      {R"({"cluster": {"nats": ["http://a:1"]}})",
       "config.json: cluster.nats[0]: " + url_expected + "\"http://a:1\""},
      {R"({"cluster": {"nats": ["nats://a:0"]}})",
       "config.json: cluster.nats[0]: " + url_expected + "\"nats://a:0\""},
      {R"({"cluster": {"nats": ["nats://a:65536"]}})",
       "config.json: cluster.nats[0]: " + url_expected + "\"nats://a:65536\""},
      {R"({"cluster": {"nats": ["nats://a:"]}})",
       "config.json: cluster.nats[0]: " + url_expected + "\"nats://a:\""},
      {R"({"cluster": {"nats": ["nats://:4222"]}})",
       "config.json: cluster.nats[0]: " + url_expected + "\"nats://:4222\""},
      {R"({"cluster": {"nats": ["nats://a:4222/x"]}})",
       "config.json: cluster.nats[0]: " + url_expected + "\"nats://a:4222/x\""},
      {R"({"cluster": {"nats": ["nats://[::1"]}})",
       "config.json: cluster.nats[0]: " + url_expected + "\"nats://[::1\""},
      {R"({"cluster": {"nats": ["nats://bob:hunter2@a:4222"]}})",
       "config.json: cluster.nats[0]: expected no user, password or token in the URL (status and "
       "logs show server URLs; use cluster.user and cluster.password, or cluster.token)"},
      {with_cluster(R"(, "stream": "")"),
       "config.json: cluster.stream: expected 1..32 characters A-Z a-z 0-9 _ -, got \"\""},
      {with_cluster(R"(, "stream": "DOC.PIPE")"),
       "config.json: cluster.stream: expected 1..32 characters A-Z a-z 0-9 _ -, got \"DOC.PIPE\""},
      {with_cluster(R"(, "stream": ")" + std::string(33, 'S') + "\""),
       "config.json: cluster.stream: expected 1..32 characters A-Z a-z 0-9 _ -, got \"" +
           std::string(33, 'S') + "\""},
      {with_cluster(R"(, "stream": 1)"), "config.json: cluster.stream: expected string, got 1"},
      {with_cluster(R"(, "node": "n 1")"),
       "config.json: cluster.node: expected 1..64 characters A-Z a-z 0-9 _ . -, got \"n 1\""},
      {with_cluster(R"(, "node": ")" + std::string(65, 'n') + "\""),
       "config.json: cluster.node: expected 1..64 characters A-Z a-z 0-9 _ . -, got \"" +
           std::string(59, 'n') + "...\""},
      {with_cluster(R"(, "replicas": 0)"),
       "config.json: cluster.replicas: expected integer 1..5, got 0"},
      {with_cluster(R"(, "replicas": 6)"),
       "config.json: cluster.replicas: expected integer 1..5, got 6"},
      {with_cluster(R"(, "max_ack_pending": -1)"),
       "config.json: cluster.max_ack_pending: expected integer 0..100000, got -1"},
      {with_cluster(R"(, "max_ack_pending": 100001)"),
       "config.json: cluster.max_ack_pending: expected integer 0..100000, got 100001"},
      {with_cluster(R"(, "ack_wait_ms": 999)"),
       "config.json: cluster.ack_wait_ms: expected integer 1000..3600000, got 999"},
      {with_cluster(R"(, "ack_wait_ms": 3600001)"),
       "config.json: cluster.ack_wait_ms: expected integer 1000..3600000, got 3600001"},
      {with_cluster(R"(, "max_deliver": 1)"),
       "config.json: cluster.max_deliver: expected integer 2..1000, got 1"},
      {with_cluster(R"(, "max_deliver": 1001)"),
       "config.json: cluster.max_deliver: expected integer 2..1000, got 1001"},
      {with_cluster(R"(, "lease_ms": 2999)"),
       "config.json: cluster.lease_ms: expected integer 3000..3600000, got 2999"},
      {with_cluster(R"(, "lease_ms": 3600001)"),
       "config.json: cluster.lease_ms: expected integer 3000..3600000, got 3600001"},
      {with_cluster(R"(, "publish_window": 1000001)"),
       "config.json: cluster.publish_window: expected integer 0..1000000, got 1000001"},
      {with_cluster(R"(, "reconnect_wait_ms": 99)"),
       "config.json: cluster.reconnect_wait_ms: expected integer 100..60000, got 99"},
      {with_cluster(R"(, "reconnect_wait_ms": 60001)"),
       "config.json: cluster.reconnect_wait_ms: expected integer 100..60000, got 60001"},
      {with_cluster(R"(, "reconnect_wait_ms": 2000, "reconnect_max_wait_ms": 1999)"),
       "config.json: cluster.reconnect_max_wait_ms: expected at least cluster.reconnect_wait_ms "
       "(2000), got 1999"},
      {with_cluster(R"(, "reconnect_max_wait_ms": 600001)"),
       "config.json: cluster.reconnect_max_wait_ms: expected integer 1..600000, got 600001"},
      {with_cluster(R"(, "credentials": "")"),
       "config.json: cluster.credentials: expected a non-empty string"},
      {with_cluster(R"(, "nkey_seed": 3)"),
       "config.json: cluster.nkey_seed: expected string, got 3"},
      {with_cluster(R"(, "user": "u")"), "config.json: cluster.user: requires cluster.password"},
      {with_cluster(R"(, "password": "p")"),
       "config.json: cluster.password: requires cluster.user"},
      {with_cluster(R"(, "user": "")"), "config.json: cluster.user: expected a non-empty string"},
      {with_cluster(R"(, "tls": "on")"), "config.json: cluster.tls: expected object, got \"on\""},
      {with_cluster(R"(, "tls": {})"),
       "config.json: cluster.tls: expected at least one of \"ca\", \"cert\", \"key\", "
       "\"hostname\" (tls:// URLs alone turn TLS on)"},
      {with_cluster(R"(, "tls": {"cert": "c.pem"})"),
       "config.json: cluster.tls.cert: requires cluster.tls.key (mutual TLS needs both)"},
      {with_cluster(R"(, "tls": {"key": "c.key"})"),
       "config.json: cluster.tls.key: requires cluster.tls.cert (mutual TLS needs both)"},
      {with_cluster(R"(, "tls": {"ca": ""})"),
       "config.json: cluster.tls.ca: expected a non-empty string"},
      {with_cluster(R"(, "tls": {"hostname": ""})"),
       "config.json: cluster.tls.hostname: expected a non-empty string"},
      {with_cluster(R"(, "tls": {"ca": "a.pem", "crt": "c.pem"})"),
       "config.json: cluster.tls.crt: unknown key"},
      {with_cluster(R"(, "replica": 3)"), "config.json: cluster.replica: unknown key"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    CHECK(error_of(c.text) == c.error);
  }
}

TEST_CASE("config cluster: clashing ways to authenticate are named by key") {
  const std::string why =
      " (give one way to authenticate: user and password, token, credentials or nkey_seed)";
  CHECK(error_of(with_cluster(R"(, "user": "u", "password": "p", "token": "t")")) ==
        "config.json: cluster.token: cannot be used with cluster.user" + why);
  CHECK(error_of(with_cluster(R"(, "token": "t", "credentials": "x.creds")")) ==
        "config.json: cluster.credentials: cannot be used with cluster.token" + why);
  CHECK(error_of(with_cluster(R"(, "user": "u", "password": "p", "credentials": "x.creds")")) ==
        "config.json: cluster.credentials: cannot be used with cluster.user" + why);
  CHECK(error_of(with_cluster(R"(, "credentials": "x.creds", "nkey_seed": "seed")")) ==
        "config.json: cluster.nkey_seed: cannot be used with cluster.credentials" + why);
  // A password alone is already missing its user; the clash names the password it found.
  CHECK(error_of(with_cluster(R"(, "password": "p", "token": "t")")) ==
        "config.json: cluster.password: requires cluster.user\n"
        "config.json: cluster.token: cannot be used with cluster.password" +
            why);
}

TEST_CASE("config cluster: a secret of the wrong type is not echoed in the error") {
  std::string e = error_of(with_cluster(R"(, "user": "u", "password": 271828)"));
  CHECK(e == "config.json: cluster.password: expected string, got number");
  CHECK(error_of(with_cluster(R"(, "token": 314159)")) ==
        "config.json: cluster.token: expected string, got number");
}

TEST_CASE("config cluster: relative paths resolve against the config file's folder") {
  char tmpl[] = "/tmp/docpipe-cluster-config-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  const std::string root = tmpl;
  const std::string file = root + "/etc/docpipe.json";
  fs::create_directories(root + "/etc");
  {
    std::ofstream out(file);
    out << R"({"cluster": {"nats": ["nats://127.0.0.1"], "credentials": "nats/n.creds",
        "tls": {"ca": "../pki/ca.pem", "cert": "c.pem", "key": "/abs/c.key"}}})";
  }
  ClusterConfig c = load_config(file).cluster;
  fs::remove_all(root);
  CHECK(c.credentials == root + "/etc/nats/n.creds");
  CHECK(c.tls_ca == root + "/pki/ca.pem");
  CHECK(c.tls_cert == root + "/etc/c.pem");
  CHECK(c.tls_key == "/abs/c.key");
  CHECK(parse(with_cluster(R"(, "nkey_seed": "seed")")).cluster.nkey_seed == "/etc/docpipe/seed");
}

TEST_CASE("config cluster: the node defaults to the host name with other characters made '-'") {
  const std::string host = host_name();
  std::string expected = host.substr(0, 64);
  for (char& ch : expected) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '.' && ch != '-') {
      ch = '-';
    }
  }
  CHECK(parse(with_cluster("")).cluster.node == expected);
  CHECK(cluster_node_from_host_name("web-1.example.com") == "web-1.example.com");
  CHECK(cluster_node_from_host_name("my host!") == "my-host-");
  CHECK(cluster_node_from_host_name("h\xc3\xa9") == "h--");
  CHECK(cluster_node_from_host_name(std::string(80, 'h')) == std::string(64, 'h'));
  CHECK(cluster_node_from_host_name("") == "node");
}

}  // namespace
}  // namespace docpipe
