// How work flows between nodes: a slow node never holds more document messages than its
// max_ack_pending (the fast nodes take the rest), and a job admitted while NATS is unreachable
// runs on its node alone, while a job admitted once NATS is up is shared again.

#include <doctest/doctest.h>

#include <algorithm>

#include "tests/cluster/cluster_support.h"

using namespace cluster_test;
using docpipe::test::NatsServer;

TEST_CASE("cluster: a slow node holds at most max_ack_pending documents and fast nodes do most") {
  const int count = documents(20000, 0.02, 200);  // 400 documents
  auto nats = NatsServer::start();
  e2e::TempDir tmp(e2e::scratch_base());
  const std::string in = tmp / "in", out = tmp / "out";
  write_corpus(in, count);
  // One allow-listed command, "conv", that the slow node runs 0.2 s per document.
  auto config = [&](json argv, json cluster) {
    return json{{"max_in_flight_documents", 16},
                {"workers", 2},
                {"commands", {{"conv", {{"argv", argv}}}}},
                {"cluster", cluster_section({nats->url()}, cluster)}};
  };
  Node slow(tmp.path(), "slow",
            config({"/bin/sh", "-c", "sleep 0.2; cat"}, {{"max_ack_pending", 4}}));
  Node f1(tmp.path(), "f1", config({"/bin/cat"}, json::object()));
  Node f2(tmp.path(), "f2", config({"/bin/cat"}, json::object()));
  slow.start();
  f1.start();
  f2.start();
  CHECK(slow.metric("docpipe_cluster_max_ack_pending") == 4);

  e2e::drop_job(slow.spool(), "conv.json",
                e2e::make_job("conv", in, out, {{{"op", "exec"}, {"command", "conv"}}}));
  // Sample the slow node's holdings (metrics and status) until the job is over.
  double most_held_metric = 0, most_held_status = 0;
  int samples = 0;
  const bool finished = e2e::poll_until(milliseconds(60000), [&] {
    most_held_metric = std::max(most_held_metric, slow.metric("docpipe_cluster_messages_held"));
    most_held_status =
        std::max(most_held_status, slow.cluster_status(tmp.path())["held"].get<double>());
    ++samples;
    return slow.finished("conv");
  });
  REQUIRE_MESSAGE(finished, "job conv did not finish:\n" << slow.log());
  MESSAGE(samples << " samples; most held: metric " << most_held_metric << ", status "
                  << most_held_status);
  CHECK(most_held_metric <= 4);
  CHECK(most_held_status <= 4);
  CHECK(most_held_metric >= 1);  // the samples did see it working
  check_job_done(slow, "conv", count);
  OutputCheck outputs = check_outputs(out, count);
  CHECK_MESSAGE(outputs.missing + outputs.wrong + outputs.extra == 0, outputs.first_problem);

  const double slow_acks = slow.metric("docpipe_cluster_acks_total", {{"result", "ack"}});
  const double fast_acks = f1.metric("docpipe_cluster_acks_total", {{"result", "ack"}}) +
                           f2.metric("docpipe_cluster_acks_total", {{"result", "ack"}});
  MESSAGE("acks: slow " << slow_acks << ", fast " << fast_acks);
  CHECK(slow_acks + fast_acks >= count);
  CHECK(fast_acks >= 5 * slow_acks);
}

TEST_CASE(
    "cluster: a job admitted while NATS is unreachable runs alone and later ones are shared") {
  const int port = docpipe::test::nats_detail::free_port();  // nothing listens there yet
  const std::string url = "nats://127.0.0.1:" + std::to_string(port);
  e2e::TempDir tmp(e2e::scratch_base());
  const std::string in = tmp / "in";
  write_corpus(in, 40);
  const json config{{"max_in_flight_documents", 8}, {"cluster", cluster_section({url})}};
  const std::string binary = DOCPIPE_TEST_BINARY;
  Node n1(tmp.path(), "n1", config, binary), n2(tmp.path(), "n2", config, binary);
  n1.start(false);
  REQUIRE_FALSE(n1.log_has("cluster: node ready"));
  CHECK(n1.metric("docpipe_cluster_connected") == 0);

  // 40 x 150 ms on 2 workers: running for seconds, so that status sees it running even when a
  // status call is slow (sanitizer builds on a loaded machine); once finished it has no
  // "distributed".
  e2e::drop_job(n1.spool(), "alone.json",
                e2e::make_job("alone", in, tmp / "out1", {{{"op", "test.sleep"}, {"ms", 150}}}));
  json job;
  CHECK_MESSAGE(e2e::poll_until(milliseconds(15000),
                                [&] {
                                  try {
                                    job = n1.status(tmp.path(), "alone")["job"];
                                  } catch (const std::exception&) {
                                    return false;
                                  }
                                  return job.contains("distributed") || n1.finished("alone");
                                }),
                job.dump());
  CHECK(job["distributed"] == false);
  CHECK(job["coordinator"] == "n1");
  Node* done = wait_finished({&n1}, "alone", milliseconds(30000));
  REQUIRE(done == &n1);
  check_job_done(n1, "alone", 40);
  CHECK(check_outputs(tmp / "out1", 40).missing == 0);
  CHECK(n1.log_has("the job runs on this node alone"));

  // NATS comes up on that port: n1 connects by itself; a new job is distributed.
  auto nats = NatsServer::create("n1", port, docpipe::test::nats_detail::free_port(), {});
  nats->spawn();
  nats->wait_ready();
  REQUIRE_MESSAGE(
      !n1.process().wait_for_log_lines({"cluster: node ready"}, milliseconds(20000)).empty(),
      n1.log());
  n2.start();
  e2e::drop_job(n1.spool(), "shared.json",
                e2e::make_job("shared", in, tmp / "out2", {{{"op", "test.sleep"}, {"ms", 25}}}));
  CHECK_MESSAGE(e2e::poll_until(milliseconds(15000),
                                [&] {
                                  try {
                                    job = n1.status(tmp.path(), "shared")["job"];
                                  } catch (const std::exception&) {
                                    return false;
                                  }
                                  return job.contains("distributed") || n1.finished("shared");
                                }),
                job.dump());
  CHECK(job["distributed"] == true);
  done = wait_finished({&n1, &n2}, "shared", milliseconds(30000));
  REQUIRE(done == &n1);
  check_job_done(n1, "shared", 40);
  CHECK(check_outputs(tmp / "out2", 40).missing == 0);
  CHECK(n2.metric("docpipe_cluster_acks_total", {{"result", "ack"}}) > 0);
}
