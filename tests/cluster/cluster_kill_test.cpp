// Nodes die mid-job (kill -9, no clean shutdown): a worker's documents are redelivered after
// ack_wait_ms, a coordinator's job is taken over after lease_ms, and either way the job completes
// with every output right and one manifest line per document.
//
// Temp files: a node killed while writing leaves its ".NAME.docpipe-tmp.*" file in the shared
// output folder (nothing on the other nodes removes another node's temps). These tests allow such
// files, and only those: every real output must be complete and right.

#include <doctest/doctest.h>

#include "tests/cluster/cluster_support.h"

using namespace cluster_test;
using docpipe::test::NatsServer;

namespace {

const std::string kTestBinary = DOCPIPE_TEST_BINARY;

json slow_config(const std::string& url) {
  return json{{"max_in_flight_documents", 8}, {"workers", 2}, {"cluster", cluster_section({url})}};
}

// Polls until `node` has acked at least `acks` documents and holds some now: surely mid-job.
void wait_mid_job(Node& node, double acks) {
  const bool mid = e2e::poll_until(milliseconds(30000), [&] {
    return node.metric("docpipe_cluster_acks_total", {{"result", "ack"}}) >= acks &&
           node.metric("docpipe_cluster_messages_held") > 0;
  });
  REQUIRE_MESSAGE(mid, node.name() << " never got mid-job:\n" << node.log());
}

void check_outputs_complete(const std::string& out, int count) {
  OutputCheck outputs = check_outputs(out, count);
  CHECK_MESSAGE(outputs.missing == 0, outputs.first_problem);  // 0 lost
  CHECK_MESSAGE(outputs.wrong == 0, outputs.first_problem);    // 0 partial
  CHECK_MESSAGE(outputs.extra == 0, outputs.first_problem);
  MESSAGE(outputs.temps.size() << " temp file(s) left by the killed node");
}

}  // namespace

TEST_CASE("cluster: a worker killed mid-job loses no document and duplicates none") {
  const int count = documents(20000, 0.03, 300);  // 600 documents of 20 ms each
  auto nats = NatsServer::start();
  e2e::TempDir tmp(e2e::scratch_base());
  const std::string in = tmp / "in", out = tmp / "out";
  write_corpus(in, count);
  ThreeNodes nodes(tmp.path(), slow_config(nats->url()), kTestBinary);
  Node &n1 = nodes.n1, &n2 = nodes.n2, &n3 = nodes.n3;

  e2e::drop_job(n1.spool(), "job.json",
                e2e::make_job("job", in, out, {{{"op", "test.sleep"}, {"ms", 20}}}));
  wait_mid_job(n2, 10);
  n2.kill9();
  REQUIRE_FALSE(n1.finished("job"));  // the kill really was mid-job

  Node* done = wait_finished({&n1, &n3}, "job", milliseconds(60000));
  REQUIRE_MESSAGE(done == &n1, "job did not finish on n1:\n" << n1.log());
  check_job_done(n1, "job", count);
  check_outputs_complete(out, count);
  // Its held documents came back to the others after ack_wait_ms.
  CHECK(n1.metric("docpipe_cluster_redeliveries_total") +
            n3.metric("docpipe_cluster_redeliveries_total") >= 1);
}

namespace {

// Kills the coordinator n1 mid-job and waits until n2 or n3 takes the job over; returns the taker.
Node& kill_coordinator_and_wait_takeover(Node& n1, Node& n2, Node& n3) {
  wait_mid_job(n1, 10);
  n1.kill9();
  Node* taker = nullptr;
  e2e::poll_until(milliseconds(30000), [&] {
    for (Node* n : {&n2, &n3})
      if (!n->process().log_lines_with({"taking over", "job=job"}).empty()) taker = n;
    return taker != nullptr;
  });
  REQUIRE_MESSAGE(taker != nullptr, "nobody took the job over; n2 log:\n" << n2.log());
  return *taker;
}

json job_with_attempts(const std::string& in, const std::string& out, int ms, int attempts) {
  json job = e2e::make_job("job", in, out, {{{"op", "test.sleep"}, {"ms", ms}}});
  job["limits"] = {{"max_attempts", attempts}};
  return job;
}

}  // namespace

// The takeover itself. max_attempts 8: a document that a worker finishes while no coordinator
// answers is handed back with backoffs (0.1 s, 0.2 s, ... 6.4 s) that outlast lease_ms (3 s);
// the next test case is about the default.
TEST_CASE("cluster: a coordinator killed mid-job is taken over and its restart breaks nothing") {
  const int count = documents(20000, 0.03, 300);  // 600 documents of 60 ms each
  auto nats = NatsServer::start();
  e2e::TempDir tmp(e2e::scratch_base());
  const std::string in = tmp / "in", out = tmp / "out";
  write_corpus(in, count);
  ThreeNodes nodes(tmp.path(), slow_config(nats->url()), kTestBinary);
  Node &n1 = nodes.n1, &n2 = nodes.n2, &n3 = nodes.n3;

  e2e::drop_job(n1.spool(), "job.json", job_with_attempts(in, out, 60, 8));
  Node& taker = kill_coordinator_and_wait_takeover(n1, n2, n3);
  Node& other = &taker == &n2 ? n3 : n2;
  CHECK(taker.metric("docpipe_cluster_takeovers_total") == 1);
  CHECK(other.metric("docpipe_cluster_takeovers_total") == 0);

  // The killed coordinator comes back while the job still runs elsewhere.
  REQUIRE_FALSE(taker.finished("job"));
  n1.start();

  Node* done = wait_finished({&taker, &other}, "job", milliseconds(60000));
  REQUIRE_MESSAGE(done == &taker, "job did not finish on " << taker.name() << ":\n"
                                                           << taker.log());
  check_job_done(taker, "job", count);
  check_outputs_complete(out, count);

  // n1 found the job owned by its new coordinator: it closed its own copy as cancelled, naming
  // the taker (failed/, no done/ report: the job's one report is the taker's), ran none of it,
  // and still serves.
  json n1_jobs;
  CHECK_MESSAGE(e2e::poll_until(milliseconds(15000),
                                [&] {
                                  n1_jobs = n1.status(tmp.path())["jobs"];
                                  return n1_jobs.empty();
                                }),
                "n1 still lists: " << n1_jobs.dump() << "\nn1 log:\n" << n1.log());
  n1.process().expect_running();
  CHECK_FALSE(e2e::file_exists(n1.spool() + "/done/job.report.json"));
  const std::string closed = n1.spool() + "/failed/job.report.json";
  REQUIRE(e2e::file_exists(closed));
  json report = e2e::read_json(closed);
  CHECK(report["state"] == "cancelled");
  CHECK(report["reason"].get<std::string>().find(taker.name()) != std::string::npos);
  CHECK(report["counts"]["succeeded"] == 0);
  CHECK(report["counts"]["failed"] == 0);
  CHECK(n1.cluster_status(tmp.path())["connected"] == true);
}

// With the job's default max_attempts (3): documents workers finish while their coordinator is
// dead (before lease_ms passes and another node takes over) must not spend their attempts on
// it, or the taker reads failed outcomes and fails the job (max_failed_documents 0).
TEST_CASE("cluster: documents finished while the coordinator is dead are not failed") {
  const int count = documents(20000, 0.03, 300);
  auto nats = NatsServer::start();
  e2e::TempDir tmp(e2e::scratch_base());
  const std::string in = tmp / "in", out = tmp / "out";
  write_corpus(in, count);
  ThreeNodes nodes(tmp.path(), slow_config(nats->url()), kTestBinary);
  Node &n1 = nodes.n1, &n2 = nodes.n2, &n3 = nodes.n3;

  e2e::drop_job(n1.spool(), "job.json",
                e2e::make_job("job", in, out, {{{"op", "test.sleep"}, {"ms", 60}}}));
  Node& taker = kill_coordinator_and_wait_takeover(n1, n2, n3);
  Node* done = wait_finished({&n2, &n3}, "job", milliseconds(60000));
  REQUIRE(done == &taker);
  check_job_done(taker, "job", count);
  check_outputs_complete(out, count);
}

// if_exists skip: the worker asks the coordinator before each rename (the intent record). With
// the coordinator killed, those documents wait for the taker instead of failing.
// Known gap (docs/design.md "Several nodes", limits): a document the killed coordinator's own
// worker renamed into place just before the kill, without publishing its outcome, is done again
// by another node, which finds the output there and reports it skipped: its intent record lived
// in the dead node's journal. Its output is the job's own and right; only its state says
// skipped. So this test asks for no failure, every document once, and every output right.
TEST_CASE("cluster: if_exists skip survives a coordinator killed mid-job") {
  const int count = documents(20000, 0.03, 300);
  auto nats = NatsServer::start();
  e2e::TempDir tmp(e2e::scratch_base());
  const std::string in = tmp / "in", out = tmp / "out";
  write_corpus(in, count);
  ThreeNodes nodes(tmp.path(), slow_config(nats->url()), kTestBinary);
  Node &n1 = nodes.n1, &n2 = nodes.n2, &n3 = nodes.n3;

  json job = e2e::make_job("job", in, out, {{{"op", "test.sleep"}, {"ms", 40}}});
  job["output"]["if_exists"] = "skip";
  e2e::drop_job(n1.spool(), "job.json", job);
  Node& taker = kill_coordinator_and_wait_takeover(n1, n2, n3);
  Node* done = wait_finished({&n2, &n3}, "job", milliseconds(60000));
  REQUIRE_MESSAGE(done == &taker, "job did not finish on " << taker.name() << ":\n"
                                                           << taker.log());
  const std::string report_path = taker.spool() + "/done/job.report.json";
  REQUIRE_MESSAGE(e2e::file_exists(report_path), taker.log());
  json report = e2e::read_json(report_path);
  CHECK(report["state"] == "succeeded");
  CHECK(report["counts"]["failed"] == 0);
  const int skipped = report["counts"]["skipped"].get<int>();
  CHECK(report["counts"]["succeeded"].get<int>() + skipped == count);
  CHECK(skipped <= 8);  // at most what the killed node held (max_in_flight_documents 8)
  ManifestCheck m = check_manifest(taker.spool() + "/done/job.manifest.jsonl");
  CHECK(m.lines == size_t(count));
  CHECK(m.unique_inputs == size_t(count));
  check_outputs_complete(out, count);
}

// A cancel reaches every node: the workers answer the job's remaining messages cancelled, the
// coordinator writes one cancelled report, and no node keeps holding messages of it.
TEST_CASE("cluster: a cancelled job stops on every node") {
  const int count = documents(20000, 0.03, 300);
  auto nats = NatsServer::start();
  e2e::TempDir tmp(e2e::scratch_base());
  const std::string in = tmp / "in", out = tmp / "out";
  write_corpus(in, count);
  ThreeNodes nodes(tmp.path(), slow_config(nats->url()), kTestBinary);
  Node &n1 = nodes.n1, &n2 = nodes.n2, &n3 = nodes.n3;

  e2e::drop_job(n1.spool(), "job.json",
                e2e::make_job("job", in, out, {{{"op", "test.sleep"}, {"ms", 60}}}));
  wait_mid_job(n2, 5);
  e2e::CommandResult cancel = e2e::docpipe({"cancel", "--spool", n1.spool(), "job"}, tmp.path());
  REQUIRE_MESSAGE(cancel.exit_code == 0, cancel.err);

  const std::string report_path = n1.spool() + "/failed/job.report.json";
  REQUIRE_MESSAGE(e2e::poll_until(milliseconds(30000),
                                  [&] { return e2e::file_exists(n1.spool() + "/failed/job.json"); }),
                  n1.log());
  json report = e2e::read_json(report_path);
  CHECK(report["state"] == "cancelled");
  const int succeeded = report["counts"]["succeeded"].get<int>();
  CHECK(succeeded > 0);
  CHECK(succeeded < count);
  CHECK(report["counts"]["cancelled"].get<int>() == count - succeeded);
  ManifestCheck m = check_manifest(n1.spool() + "/failed/job.manifest.jsonl");
  CHECK(m.lines == m.unique_inputs);
  for (Node* n : {&n1, &n2, &n3}) {
    CAPTURE(n->name());
    CHECK(e2e::poll_until(milliseconds(10000),
                          [&] { return n->metric("docpipe_cluster_messages_held") == 0; }));
  }
}
