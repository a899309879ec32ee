// Several daemons share one job (issue 11): three nodes on one nats-server finish a large job
// submitted to one of them, every node doing part of it, and `docpipe status` shows the cluster.

#include <doctest/doctest.h>

#include "tests/cluster/cluster_support.h"

using namespace cluster_test;
using docpipe::test::NatsServer;

TEST_CASE("cluster: 3 daemons share a large job submitted to one of them") {
  const int count = documents(20000);
  auto nats = NatsServer::start();
  e2e::TempDir tmp(e2e::scratch_base());
  const std::string in = tmp / "in", out = tmp / "out";
  write_corpus(in, count);
  json config{{"max_in_flight_documents", 64}, {"cluster", cluster_section({nats->url()})}};
  Node n1(tmp.path(), "n1", config), n2(tmp.path(), "n2", config), n3(tmp.path(), "n3", config);
  n1.start();
  n2.start();
  n3.start();

  e2e::drop_job(n1.spool(), "big.json", e2e::make_job("big", in, out));
  Node* done = wait_finished({&n1, &n2, &n3}, "big", milliseconds(120000));
  REQUIRE_MESSAGE(done != nullptr, "job big did not finish; n1 log:\n" << n1.log());
  CHECK(done == &n1);  // the node that admitted it coordinates it to the end
  check_job_done(n1, "big", count);

  OutputCheck outputs = check_outputs(out, count);
  CHECK_MESSAGE(outputs.missing == 0, outputs.first_problem);
  CHECK_MESSAGE(outputs.wrong == 0, outputs.first_problem);
  CHECK(outputs.extra == 0);
  CHECK(outputs.temps.empty());

  // Every node processed part of the job (acked document messages).
  for (Node* n : {&n1, &n2, &n3}) {
    CAPTURE(n->name());
    CHECK(n->metric("docpipe_cluster_acks_total", {{"result", "ack"}}) > 0);
    CHECK(n->metric("docpipe_cluster_connected") == 1);
  }
  const double acks = n1.metric("docpipe_cluster_acks_total", {{"result", "ack"}}) +
                      n2.metric("docpipe_cluster_acks_total", {{"result", "ack"}}) +
                      n3.metric("docpipe_cluster_acks_total", {{"result", "ack"}});
  CHECK(acks >= count);
  MESSAGE("acks n1/n2/n3: " << n1.metric("docpipe_cluster_acks_total", {{"result", "ack"}})
                            << "/" << n2.metric("docpipe_cluster_acks_total", {{"result", "ack"}})
                            << "/" << n3.metric("docpipe_cluster_acks_total", {{"result", "ack"}}));
}

TEST_CASE("cluster: status lists the cluster with its nodes and a running job's coordinator") {
  auto nats = NatsServer::start();
  e2e::TempDir tmp(e2e::scratch_base());
  const std::string in = tmp / "in", out = tmp / "out";
  write_corpus(in, 40);
  json config{{"max_in_flight_documents", 4}, {"cluster", cluster_section({nats->url()})}};
  const std::string binary = DOCPIPE_TEST_BINARY;
  Node n1(tmp.path(), "n1", config, binary), n2(tmp.path(), "n2", config, binary),
      n3(tmp.path(), "n3", config, binary);
  n1.start();
  n2.start();
  n3.start();

  // Every node sees the three heartbeats.
  json status;
  auto names_of = [](const json& s) {
    std::set<std::string> names;
    for (const json& n : s["nodes"]) names.insert(n.value("node", ""));
    return names;
  };
  const std::set<std::string> all{"n1", "n2", "n3"};
  CHECK_MESSAGE(e2e::poll_until(milliseconds(15000),
                                [&] { return names_of(status = n2.cluster_status(tmp.path())) == all; }),
                status.dump(2));
  const json& cluster = status;
  CHECK(cluster["node"] == "n2");
  CHECK(cluster["stream"] == "DOCPIPE");
  CHECK(cluster["connected"] == true);
  CHECK(cluster["connected_url"] == nats->url());
  CHECK(cluster["held"] == 0);
  CHECK(cluster["max_ack_pending"] == 4);  // 0: max_in_flight_documents
  for (const json& n : cluster["nodes"]) {
    CHECK(n.contains("held"));
    CHECK(n.contains("jobs_coordinated"));
    CHECK(n["seen_seconds_ago"].get<double>() < 10);
  }

  // A running job (slow documents) names its coordinator, on the node that admitted it.
  e2e::drop_job(n3.spool(), "slow.json",
                e2e::make_job("slow", in, out, {{{"op", "test.sleep"}, {"ms", 300}}}));
  json job;
  CHECK_MESSAGE(e2e::poll_until(milliseconds(15000),
                                [&] {
                                  try {
                                    job = n3.status(tmp.path(), "slow");
                                  } catch (const std::exception&) {
                                    return false;  // not admitted yet
                                  }
                                  return job.dump().find("\"coordinator\"") != std::string::npos;
                                }),
                job.dump(2));
  CHECK(job.dump().find("\"coordinator\":\"n3\"") != std::string::npos);
  CHECK(n3.cluster_status(tmp.path())["jobs_coordinated"] == 1);
  Node* done = wait_finished({&n1, &n2, &n3}, "slow", milliseconds(60000));
  REQUIRE(done == &n3);
  check_job_done(n3, "slow", 40);
}
