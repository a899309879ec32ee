// The NatsServer / NatsCluster fixture, and the JetStream behaviours the cluster relies on,
// proved on the nats-server installed here (2.9.10) with the libnats the daemon links.

#include "tests/support/nats_server.h"

#include <doctest/doctest.h>
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "config/daemon_config.h"
#include "daemon/nats_client.h"

using docpipe::test::NatsCluster;
using docpipe::test::NatsServer;
using docpipe::test::nats_detail::poll_until;
using namespace std::chrono_literals;

namespace {

// A failed libnats call names the call, the status and libnats' last error.
void check(natsStatus s, const std::string& what, jsErrCode jerr = jsErrCode(0)) {
  if (s == NATS_OK) return;
  const char* last = nats_GetLastError(nullptr);
  const std::string message = what + ": " + natsStatus_GetText(s) + " (JetStream error " +
                              std::to_string(int(jerr)) + "): " + (last ? last : "");
  FAIL(message);
}

// One connection and its JetStream context; `reconnected` counts reconnected callbacks.
struct Client {
  natsOptions* opts = nullptr;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  std::atomic<int> disconnected{0};
  std::atomic<int> reconnected{0};
  std::atomic<bool> closed{false};

  explicit Client(const std::vector<std::string>& urls) {
    std::vector<const char*> servers;
    for (const std::string& u : urls) servers.push_back(u.c_str());
    check(natsOptions_Create(&opts), "natsOptions_Create");
    check(natsOptions_SetServers(opts, servers.data(), int(servers.size())), "SetServers");
    check(natsOptions_SetMaxReconnect(opts, -1), "SetMaxReconnect");
    check(natsOptions_SetReconnectWait(opts, 100), "SetReconnectWait");
    check(natsOptions_SetTimeout(opts, 2000), "SetTimeout");
    check(natsOptions_SetDisconnectedCB(opts, &Client::on_disconnected, this), "DisconnectedCB");
    check(natsOptions_SetReconnectedCB(opts, &Client::on_reconnected, this), "ReconnectedCB");
    check(natsOptions_SetClosedCB(opts, &Client::on_closed, this), "ClosedCB");
    check(natsConnection_Connect(&nc, opts), "natsConnection_Connect " + urls.front());
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2000;  // per JetStream API request; callers retry across leader elections
    check(natsConnection_JetStream(&js, nc, &jo), "natsConnection_JetStream");
  }
  // libnats runs the disconnected and closed callbacks on its own thread, after the close that
  // caused them: the closed one comes last, so once it has run nothing calls into this object.
  ~Client() {
    jsCtx_Destroy(js);
    natsConnection_Close(nc);
    poll_until([&] { return closed.load(); }, 10s);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(opts);
  }
  static void on_disconnected(natsConnection*, void* self) {
    ++static_cast<Client*>(self)->disconnected;
  }
  static void on_reconnected(natsConnection*, void* self) {
    ++static_cast<Client*>(self)->reconnected;
  }
  static void on_closed(natsConnection*, void* self) { static_cast<Client*>(self)->closed = true; }
};

void add_work_queue_stream(jsCtx* js, const std::string& name, int replicas) {
  const std::string subject = name + ".doc.>";
  const char* subjects[] = {subject.c_str()};
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = name.c_str();
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Retention = js_WorkQueuePolicy;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = replicas;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = jsErrCode(0);
  check(js_AddStream(&si, js, &cfg, nullptr, &jerr), "js_AddStream " + name, jerr);
  jsStreamInfo_Destroy(si);
}

// Messages in the stream now (UINT64_MAX when the stream info cannot be had).
uint64_t stream_messages(jsCtx* js, const std::string& name) {
  jsStreamInfo* si = nullptr;
  if (js_GetStreamInfo(&si, js, name.c_str(), nullptr, nullptr) != NATS_OK) return UINT64_MAX;
  const uint64_t n = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  return n;
}

std::string stream_leader(jsCtx* js, const std::string& name) {
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = jsErrCode(0);
  check(js_GetStreamInfo(&si, js, name.c_str(), nullptr, &jerr), "js_GetStreamInfo", jerr);
  std::string leader = si->Cluster && si->Cluster->Leader ? si->Cluster->Leader : "";
  jsStreamInfo_Destroy(si);
  return leader;
}

// Publishes with a message id (so that retrying a publish whose ack was lost cannot store it
// twice), retrying for up to 15 s: a leader election makes publishes fail for a while.
void publish(jsCtx* js, const std::string& subject, const std::string& payload) {
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MsgId = payload.c_str();
  natsStatus last = NATS_OK;
  jsErrCode jerr = jsErrCode(0);
  const bool ok = poll_until(
      [&] {
        jsPubAck* pa = nullptr;
        last =
            js_Publish(&pa, js, subject.c_str(), payload.data(), int(payload.size()), &po, &jerr);
        jsPubAck_Destroy(pa);
        return last == NATS_OK;
      },
      15s);
  if (!ok) check(last, "js_Publish " + subject + " " + payload, jerr);
}

// A durable pull consumer on `stream`, explicit acks, AckWait `ack_wait`.
natsSubscription* pull_consumer(jsCtx* js, const std::string& stream, const std::string& durable,
                                std::chrono::milliseconds ack_wait = 30s) {
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.c_str();
  so.Config.AckPolicy = js_AckExplicit;
  so.Config.AckWait = std::chrono::nanoseconds(ack_wait).count();
  natsSubscription* sub = nullptr;
  jsErrCode jerr = jsErrCode(0);
  const std::string subject = stream + ".doc.>";
  natsStatus last = NATS_OK;
  // Retried: right after a (re)start the stream's leader may still be being elected.
  const bool ok = poll_until(
      [&] {
        last = js_PullSubscribe(&sub, js, subject.c_str(), durable.c_str(), nullptr, &so, &jerr);
        return last == NATS_OK;
      },
      15s);
  if (!ok) check(last, "js_PullSubscribe " + durable, jerr);
  return sub;
}

// Fetches and acks (synchronously) until `want` distinct payloads arrived or 15 s pass.
std::set<std::string> fetch_and_ack(natsSubscription* sub, size_t want) {
  std::set<std::string> got;
  poll_until(
      [&] {
        natsMsgList list{nullptr, 0};
        if (natsSubscription_Fetch(&list, sub, 10, 1000, nullptr) == NATS_OK) {
          for (int i = 0; i < list.Count; ++i) {
            natsMsg* m = list.Msgs[i];
            got.insert(std::string(natsMsg_GetData(m), size_t(natsMsg_GetDataLength(m))));
            check(natsMsg_AckSync(m, nullptr, nullptr), "natsMsg_AckSync");
          }
          natsMsgList_Destroy(&list);
        }
        return got.size() >= want;
      },
      15s);
  return got;
}

// Fetches exactly one message, waiting up to `timeout`; nullptr on timeout.
natsMsg* fetch_one(natsSubscription* sub, std::chrono::milliseconds timeout) {
  natsMsgList list{nullptr, 0};
  const natsStatus s = natsSubscription_Fetch(&list, sub, 1, timeout.count(), nullptr);
  if (s == NATS_TIMEOUT) return nullptr;
  check(s, "natsSubscription_Fetch");
  REQUIRE(list.Count == 1);
  natsMsg* m = list.Msgs[0];
  list.Msgs[0] = nullptr;  // kept: natsMsgList_Destroy would destroy it
  natsMsgList_Destroy(&list);
  return m;
}

uint64_t num_delivered(natsMsg* m) {
  jsMsgMetaData* meta = nullptr;
  check(natsMsg_GetMetaData(&meta, m), "natsMsg_GetMetaData");
  const uint64_t n = meta->NumDelivered;
  jsMsgMetaData_Destroy(meta);
  return n;
}

std::vector<std::string> numbered(const std::string& prefix, int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

std::set<std::string> as_set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

}  // namespace

TEST_CASE("nats server: a single server runs JetStream and an acked work-queue message is gone") {
  auto server = NatsServer::start();
  REQUIRE(server->running());
  CHECK(server->url() == "nats://127.0.0.1:" + std::to_string(server->port()));
  const std::string folder = server->folder();

  {
    Client c({server->url()});
    add_work_queue_stream(c.js, "WQ", 1);
    natsSubscription* sub = pull_consumer(c.js, "WQ", "workers");
    for (const std::string& p : numbered("doc-", 0, 3)) publish(c.js, "WQ.doc.job1", p);
    CHECK(stream_messages(c.js, "WQ") == 3);

    CHECK(fetch_and_ack(sub, 3) == as_set(numbered("doc-", 0, 3)));
    // Work-queue retention removes a message once its consumer acked it.
    CHECK(poll_until([&] { return stream_messages(c.js, "WQ") == 0; }, 5s));
    CHECK(fetch_one(sub, 200ms) == nullptr);
    natsSubscription_Destroy(sub);
  }

  const pid_t pid = server->pid();
  server->kill();
  CHECK_FALSE(server->running());
  CHECK(::kill(pid, 0) != 0);  // reaped, not a zombie
  server.reset();
  CHECK_FALSE(std::filesystem::exists(folder));
}

TEST_CASE("nats server: a 3-server cluster keeps R3 streams and KV usable with one server killed") {
  auto cluster = NatsCluster::start(3);
  CHECK(cluster->url_list() ==
        cluster->urls()[0] + "," + cluster->urls()[1] + "," + cluster->urls()[2]);
  CHECK_FALSE(cluster->meta_leader().empty());
  Client c(cluster->urls());
  add_work_queue_stream(c.js, "R3", 3);

  kvConfig kvc;
  kvConfig_Init(&kvc);
  kvc.Bucket = "R3_jobs";
  kvc.Replicas = 3;
  kvStore* kv = nullptr;
  check(js_CreateKeyValue(&kv, c.js, &kvc), "js_CreateKeyValue R3_jobs");
  uint64_t rev = 0;
  check(kvStore_PutString(&rev, kv, "job1", "n1"), "kvStore_PutString");

  natsSubscription* sub = pull_consumer(c.js, "R3", "workers");
  for (const std::string& p : numbered("before-", 0, 10)) publish(c.js, "R3.doc.job1", p);

  // Kill the stream's leader: the worst one to lose.
  const std::string leader = stream_leader(c.js, "R3");
  REQUIRE(!leader.empty());
  NatsServer* victim = nullptr;
  for (int i = 0; i < cluster->size(); ++i)
    if (cluster->server(i).name() == leader) victim = &cluster->server(i);
  REQUIRE(victim != nullptr);
  victim->kill();

  for (const std::string& p : numbered("after-", 0, 10)) publish(c.js, "R3.doc.job1", p);
  std::set<std::string> want = as_set(numbered("before-", 0, 10));
  want.merge(as_set(numbered("after-", 0, 10)));
  CHECK(fetch_and_ack(sub, want.size()) == want);

  kvEntry* e = nullptr;
  check(kvStore_Get(&e, kv, "job1"), "kvStore_Get with a server down");
  CHECK(std::string(kvEntry_ValueString(e)) == "n1");
  kvEntry_Destroy(e);
  CHECK(poll_until([&] { return kvStore_PutString(&rev, kv, "job1", "n2") == NATS_OK; }, 15s));

  // Back, it rejoins. Its own /healthz may stay unhealthy for a long while (seen under ASan: a
  // consumer replica it holds stays "not current" until the consumer moves again), so what is
  // awaited is that it runs and the stream, served by the cluster, is as it should be.
  victim->spawn();
  CHECK(poll_until([&] { return victim->running() && stream_messages(c.js, "R3") == 0; }, 20s));

  kvStore_Destroy(kv);
  natsSubscription_Destroy(sub);
}

TEST_CASE(
    "nats server: stream messages survive a whole-cluster restart and the client reconnects") {
  auto cluster = NatsCluster::start(3);
  Client c(cluster->urls());
  add_work_queue_stream(c.js, "KEEP", 3);
  const std::vector<std::string> payloads = numbered("kept-", 0, 5);
  for (const std::string& p : payloads) publish(c.js, "KEEP.doc.job1", p);

  cluster->stop_all();
  for (int i = 0; i < cluster->size(); ++i) CHECK_FALSE(cluster->server(i).running());
  REQUIRE(poll_until([&] { return c.disconnected.load() > 0; }, 10s));
  const int reconnects_before = c.reconnected.load();
  CHECK(natsConnection_Status(c.nc) != NATS_CONN_STATUS_CONNECTED);

  cluster->restart_all();
  CHECK(poll_until([&] { return c.reconnected.load() > reconnects_before; }, 15s));
  CHECK(natsConnection_Status(c.nc) == NATS_CONN_STATUS_CONNECTED);

  natsSubscription* sub = pull_consumer(c.js, "KEEP", "workers");
  CHECK(fetch_and_ack(sub, payloads.size()) == as_set(payloads));
  natsSubscription_Destroy(sub);
}

TEST_CASE("nats server: an unacked message is redelivered after AckWait and NakWithDelay waits") {
  auto server = NatsServer::start();
  Client c({server->url()});
  add_work_queue_stream(c.js, "REDO", 1);
  natsSubscription* sub = pull_consumer(c.js, "REDO", "workers", 1s);
  publish(c.js, "REDO.doc.job1", "doc-1");

  const auto delivered = std::chrono::steady_clock::now();
  natsMsg* first = fetch_one(sub, 5s);
  REQUIRE(first != nullptr);
  CHECK(num_delivered(first) == 1);
  natsMsg_Destroy(first);  // neither acked nor nakked: as if its node died

  natsMsg* second = fetch_one(sub, 5s);
  REQUIRE(second != nullptr);
  // The server's timers may fire a few milliseconds early against this clock, so the bounds
  // below keep a margin: they tell "after AckWait" from "at once", and "after the nak's
  // delay" from "after AckWait", which is what this test is about.
  CHECK(std::chrono::steady_clock::now() - delivered >= 900ms);
  CHECK(num_delivered(second) == 2);

  // A nak with a delay longer than AckWait: redelivered after the delay, not after AckWait.
  const auto nakked = std::chrono::steady_clock::now();
  check(natsMsg_NakWithDelay(second, 2000, nullptr), "natsMsg_NakWithDelay");
  natsMsg_Destroy(second);
  natsMsg* third = fetch_one(sub, 6s);
  REQUIRE(third != nullptr);
  CHECK(std::chrono::steady_clock::now() - nakked >= 1800ms);
  CHECK(num_delivered(third) == 3);
  check(natsMsg_AckSync(third, nullptr, nullptr), "natsMsg_AckSync");
  natsMsg_Destroy(third);
  CHECK(poll_until([&] { return stream_messages(c.js, "REDO") == 0; }, 5s));
  natsSubscription_Destroy(sub);
}

TEST_CASE("nats client: a connection is destroyed only after its last callback has returned") {
  auto server = NatsServer::start();
  REQUIRE(server->running());
  docpipe::ClusterConfig config;
  config.nats = {server->url()};
  std::atomic<int> disconnects{0};
  auto connected = docpipe::NatsConnection::connect(
      config, "docpipe test",
      {.disconnected =
           [&] {
             // A slow handler (a log line to a busy disk): libnats runs it on its own thread
             // after Close, so it is still to run, or running, when the destructor is entered.
             const auto until = std::chrono::steady_clock::now() + 200ms;
             while (std::chrono::steady_clock::now() < until) std::this_thread::yield();
             disconnects.fetch_add(1);
           },
       .reconnected = [](bool) {}});
  REQUIRE(connected);
  std::unique_ptr<docpipe::NatsConnection> nc = std::move(*connected);
  REQUIRE(poll_until([&] { return nc->connected(); }, 5s));
  nc.reset();
  // Before the fix the destructor returned at once and the handler ran on freed memory.
  CHECK(disconnects.load() == 1);
}
