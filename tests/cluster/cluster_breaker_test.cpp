// A node whose command's circuit breaker is open holds the documents that need the command,
// with in-progress acks, instead of handing them back: waiting does not use up JetStream's
// max_deliver (docs/design.md "Circuit breaker per command", cluster mode).

#include <doctest/doctest.h>

#include <cstdio>

#include "tests/cluster/cluster_support.h"

using namespace cluster_test;
using docpipe::test::NatsServer;

TEST_CASE("cluster: documents waiting on an open breaker are held past ack_wait_ms, not failed") {
  const int count = 12;
  auto nats = NatsServer::start();
  e2e::TempDir tmp(e2e::scratch_base());
  const std::string in = tmp / "in", out = tmp / "out", flag = tmp / "down";
  write_corpus(in, count);
  const std::string script = tmp / "conv.sh";
  e2e::write_file(script, "if [ -e '" + flag + "' ]; then exit 1; fi\nexec cat\n");
  e2e::write_file(flag, "");
  // Open for three times ack_wait_ms, twice: documents handed back or left unacknowledged that
  // long would be delivered again and again, and max_deliver 4 would fail them.
  json config{{"workers", 2},
              {"commands",
               {{"conv",
                 {{"argv", {"/bin/sh", script}},
                  {"breaker", {{"failures", 2}, {"open_ms", 6000}, {"max_open_ms", 6000}}}}}}},
              {"cluster", cluster_section({nats->url()}, {{"max_deliver", 4}})}};
  Node n1(tmp.path(), "n1", config);
  n1.start();
  json job = e2e::make_job("conv", in, out, {{{"op", "exec"}, {"command", "conv"}}});
  job["limits"] = {{"max_attempts", 10}};
  e2e::drop_job(n1.spool(), "conv.json", job);

  REQUIRE(n1.process().wait_for_metric("docpipe_command_breaker_state", {{"command", "conv"}}, 1) ==
          1);
  CHECK(n1.metric("docpipe_cluster_messages_held") >= 1);
  // The first probe, 6 s later, fails too (the flag is still there): the documents have waited
  // three times ack_wait_ms by then, and wait as long again.
  REQUIRE(n1.process().wait_for_metric("docpipe_command_breaker_transitions_total",
                                       {{"command", "conv"}, {"to", "half-open"}}, 1,
                                       milliseconds(30000)) == 1);
  CHECK(n1.metric("docpipe_cluster_messages_held") >= 1);
  CHECK(n1.status(tmp.path(), "conv")["job"]["failed"] == 0);
  std::remove(flag.c_str());
  Node* done = wait_finished({&n1}, "conv", milliseconds(60000));
  REQUIRE_MESSAGE(done != nullptr, "job conv did not finish:\n" << n1.log());
  check_job_done(n1, "conv", count);
  OutputCheck outputs = check_outputs(out, count);
  CHECK_MESSAGE(outputs.missing + outputs.wrong + outputs.extra == 0, outputs.first_problem);
  // Only the runs that really failed were handed back (a nak each): a handful, not every
  // document once per ack_wait_ms while it waited.
  CHECK(n1.metric("docpipe_cluster_acks_total", {{"result", "nak"}}) <= 6);
  // And held ones were not delivered again for want of an ack: redeliveries are those naks'.
  CHECK(n1.metric("docpipe_cluster_redeliveries_total") <=
        n1.metric("docpipe_cluster_acks_total", {{"result", "nak"}}));
}
