// A document message the stream no longer holds, with no outcome for it (lost in a server
// failover, seen once in CI): the coordinator notices once all else is quiet, publishes it again,
// and the job completes instead of waiting for good.

#include <doctest/doctest.h>
#include <nats/nats.h>

#include "tests/cluster/cluster_support.h"

using namespace cluster_test;
using docpipe::test::NatsServer;

namespace {

const std::string kTestBinary = DOCPIPE_TEST_BINARY;

// The test's own NATS connection: it plays the failure by purging document messages.
class Purger {
 public:
  explicit Purger(const std::string& url) {
    REQUIRE(natsConnection_ConnectTo(&nc_, url.c_str()) == NATS_OK);
    REQUIRE(natsConnection_JetStream(&js_, nc_, nullptr) == NATS_OK);
  }
  ~Purger() {
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }
  Purger(const Purger&) = delete;
  Purger& operator=(const Purger&) = delete;

  // Messages on `subject` in the stream; 0 if the stream is not there yet.
  uint64_t messages(const std::string& stream, const std::string& subject) {
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Info.SubjectsFilter = subject.c_str();
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, js_, stream.c_str(), &o, nullptr) != NATS_OK) return 0;
    uint64_t n = 0;
    if (si->State.Subjects != nullptr) {
      for (int i = 0; i < si->State.Subjects->Count; ++i) n += si->State.Subjects->List[i].Msgs;
    }
    jsStreamInfo_Destroy(si);
    return n;
  }
  void purge(const std::string& stream, const std::string& subject) {
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Subject = subject.c_str();
    REQUIRE(js_PurgeStream(js_, stream.c_str(), &o, nullptr) == NATS_OK);
  }

 private:
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

}  // namespace

TEST_CASE("cluster: document messages lost from the stream are published again and the job completes") {
  const int count = 40;
  auto nats = NatsServer::start();
  e2e::TempDir tmp(e2e::scratch_base());
  const std::string in = tmp / "in", out = tmp / "out";
  write_corpus(in, count);
  // One node, one worker, two documents held at a time: most messages wait in the stream.
  Node n1(tmp.path(), "n1",
          json{{"max_in_flight_documents", 2},
               {"workers", 1},
               {"cluster", cluster_section({nats->url()})}},
          kTestBinary);
  n1.start();
  e2e::drop_job(n1.spool(), "job.json",
                e2e::make_job("job", in, out, {{{"op", "test.sleep"}, {"ms", 100}}}));

  Purger purger(nats->url());
  const std::string subject = "DOCPIPE.doc.job";
  REQUIRE_MESSAGE(e2e::poll_until(milliseconds(20000),
                                  [&] { return purger.messages("DOCPIPE", subject) >= 5; }),
                  "no document messages waiting in the stream:\n" << n1.log());
  purger.purge("DOCPIPE", subject);  // published and acknowledged, then gone: no outcome will come

  Node* done = wait_finished({&n1}, "job", milliseconds(60000));
  REQUIRE_MESSAGE(done == &n1, "the job did not finish:\n" << n1.log());
  check_job_done(n1, "job", count);
  OutputCheck outputs = check_outputs(out, count);
  CHECK_MESSAGE(outputs.missing + outputs.wrong + outputs.extra == 0, outputs.first_problem);
  CHECK(n1.log_has("publishing them again"));
}
