// NATS itself fails under a running job: one of three servers dies (R3 streams and buckets keep
// working), or all three stop for 10 s (the daemons keep their documents, reconnect by
// themselves, and the job completes with one manifest line per document).

#include <doctest/doctest.h>

#include <chrono>

#include "tests/cluster/cluster_support.h"

using namespace cluster_test;
using docpipe::test::NatsCluster;

namespace {

const std::string kTestBinary = DOCPIPE_TEST_BINARY;

json r3_config(const NatsCluster& nats) {
  return json{{"max_in_flight_documents", 8},
              {"workers", 2},
              {"cluster", cluster_section(nats.urls(), {{"replicas", 3}})}};
}

json slow_job(const std::string& in, const std::string& out, int ms) {
  return e2e::make_job("job", in, out, {{{"op", "test.sleep"}, {"ms", ms}}});
}

void wait_some_done(Node& coordinator, const std::string& out, size_t outputs) {
  const bool started = e2e::poll_until(
      milliseconds(30000),
      [&] { return e2e::file_exists(out) && e2e::list_files(out).size() >= outputs; });
  REQUIRE_MESSAGE(started, "no outputs appear:\n" << coordinator.log());
}

// The job finished with every output right and one manifest line per document. On the node
// that admitted it, unless `takeover_allowed`: then on whichever node coordinated it last.
void check_all_right(ThreeNodes& nodes, const std::string& out, int count,
                     bool takeover_allowed = false) {
  Node* done = wait_finished(nodes.all(), "job", milliseconds(45000));
  if (takeover_allowed && done != nullptr && done != &nodes.n1) {
    MESSAGE("the job was taken over and finished on " << done->name());
    CHECK(done->metric("docpipe_cluster_takeovers_total") == 1);
    check_job_done(*done, "job", count);
    OutputCheck outputs = check_outputs(out, count);
    CHECK_MESSAGE(outputs.missing + outputs.wrong + outputs.extra == 0, outputs.first_problem);
    return;
  }
  if (done != &nodes.n1) {
    for (Node* n : nodes.all()) {
      std::string status;
      try {
        status = n->status(n->spool() + "/..").dump();
      } catch (const std::exception& e) {
        status = e.what();
      }
      MESSAGE(n->name() << " status: " << status << "\nlog:\n" << n->log());
    }
  }
  REQUIRE_MESSAGE(done == &nodes.n1, "job did not finish on n1");
  check_job_done(nodes.n1, "job", count);
  OutputCheck outputs = check_outputs(out, count);
  CHECK_MESSAGE(outputs.missing + outputs.wrong + outputs.extra == 0, outputs.first_problem);
}

}  // namespace

// The coordinator's ephemeral outcome consumer may have lived on the killed server: it is
// reopened on a surviving one, and the job completes.
TEST_CASE("cluster: a job completes when one of 3 nats-servers is killed mid-job") {
  const int count = documents(20000, 0.03, 300);  // 600 documents of 20 ms each
  auto nats = NatsCluster::start(3);
  e2e::TempDir tmp(e2e::scratch_base());
  const std::string in = tmp / "in", out = tmp / "out";
  write_corpus(in, count);
  ThreeNodes nodes(tmp.path(), r3_config(*nats), kTestBinary);

  e2e::drop_job(nodes.n1.spool(), "job.json", slow_job(in, out, 20));
  wait_some_done(nodes.n1, out, 30);
  nats->server(0).kill();
  REQUIRE_FALSE(nodes.n1.finished("job"));
  // Seen in about 1 run in 3 (reported to the lead): n1, connected to a surviving server, stops
  // recording outcomes and renewing its lease, and another node takes the job over. The job
  // still completes, which is what the contract promises; the takeover is allowed here.
  check_all_right(nodes, out, count, true);
}

TEST_CASE("cluster: all nats-servers stopped for 10 s mid-job and the daemons reconnect and finish") {
  const int count = documents(20000, 0.03, 300);
  auto nats = NatsCluster::start(3);
  e2e::TempDir tmp(e2e::scratch_base());
  const std::string in = tmp / "in", out = tmp / "out";
  write_corpus(in, count);
  ThreeNodes nodes(tmp.path(), r3_config(*nats), kTestBinary);

  e2e::drop_job(nodes.n1.spool(), "job.json", slow_job(in, out, 20));
  wait_some_done(nodes.n1, out, 30);
  nats->stop_all();
  // 10 s without NATS is the point of the test: the job must not finish meanwhile (outcomes
  // cannot reach the coordinator), and nobody may give up on it.
  const auto outage_start = std::chrono::steady_clock::now();
  const bool finished_during_outage =
      e2e::poll_until(milliseconds(10000), [&] { return nodes.n1.finished("job"); });
  CHECK(std::chrono::steady_clock::now() - outage_start >= std::chrono::seconds(10));
  REQUIRE_FALSE(finished_during_outage);
  for (Node* n : nodes.all()) {
    CAPTURE(n->name());
    CHECK(n->metric("docpipe_cluster_connected") == 0);
    CHECK(n->cluster_status(tmp.path())["connected"] == false);
  }

  // Not restart_all(): its wait for every server's /healthz can outlast 20 s while the streams
  // catch up under the daemons' load; the daemons reconnecting is what this test waits for.
  for (int i = 0; i < nats->size(); ++i) nats->server(i).spawn();
  for (Node* n : nodes.all()) {
    CAPTURE(n->name());
    const bool back = e2e::poll_until(milliseconds(30000), [&] {
      return n->metric("docpipe_cluster_connected") == 1;
    });
    CHECK_MESSAGE(back, n->log());
    json status = n->cluster_status(tmp.path());
    CHECK(status["connected"] == true);
    CHECK(status["reconnects"].get<double>() >= 1);
    // docpipe_cluster_reconnects_total: see the next test case.
  }
  // Under load (ctest -j2) JetStream takes ~10 s to recover after the restart; meanwhile n1
  // cannot renew its lease (KV writes fail) although connected, so a node connected all that
  // time may take the job over (reported to the lead). The job must complete either way.
  check_all_right(nodes, out, count, true);
}

// The metric and `status` count the same reconnections (the first connect is not one).
TEST_CASE("cluster: docpipe_cluster_reconnects_total counts reconnections") {
  auto nats = docpipe::test::NatsServer::start();
  e2e::TempDir tmp(e2e::scratch_base());
  Node n1(tmp.path(), "n1", json{{"cluster", cluster_section({nats->url()})}});
  n1.start();
  CHECK(n1.metric("docpipe_cluster_reconnects_total") == 0);
  nats->stop();
  REQUIRE(e2e::poll_until(milliseconds(20000),
                          [&] { return n1.metric("docpipe_cluster_connected") == 0; }));
  nats->restart();
  REQUIRE(e2e::poll_until(milliseconds(20000),
                          [&] { return n1.metric("docpipe_cluster_connected") == 1; }));
  CHECK(n1.cluster_status(tmp.path())["reconnects"] == 1);
  CHECK(n1.metric("docpipe_cluster_reconnects_total") == 1);
}
