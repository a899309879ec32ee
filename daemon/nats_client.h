#pragma once
// A thin C++ layer over libnats (the NATS C client, JetStream and KV included): owners for its
// objects, its statuses turned into docpipe Errors ("nats: what: why"), and the one connection a
// cluster node keeps (docs/design.md "Several nodes"). The connection reconnects by itself with
// a capped exponential backoff, also when the servers are unreachable at start; callbacks say
// when it goes down and comes back. libnats objects are thread-safe as libnats documents them
// (publish, request, fetch, ack from several threads), except where a class here says otherwise.

#include <nats/nats.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/daemon_config.h"
#include "core/result.h"

namespace docpipe {

// "nats: <what>: <libnats text>[ (<JetStream error code>)]"; kIo unless `s` says "not found".
Error nats_error(const std::string& what, natsStatus s, jsErrCode js = static_cast<jsErrCode>(0));

struct NatsMsgDeleter {
  void operator()(natsMsg* m) const { natsMsg_Destroy(m); }
};
using NatsMsgPtr = std::unique_ptr<natsMsg, NatsMsgDeleter>;

struct NatsSubDeleter {
  void operator()(natsSubscription* s) const {
    natsSubscription_Unsubscribe(s);
    natsSubscription_Destroy(s);
  }
};
using NatsSubPtr = std::unique_ptr<natsSubscription, NatsSubDeleter>;

struct KvEntryDeleter {
  void operator()(kvEntry* e) const { kvEntry_Destroy(e); }
};
using KvEntryPtr = std::unique_ptr<kvEntry, KvEntryDeleter>;

struct KvStoreDeleter {
  void operator()(kvStore* kv) const { kvStore_Destroy(kv); }
};
using KvStorePtr = std::unique_ptr<kvStore, KvStoreDeleter>;

std::string msg_data(natsMsg* m);

// A value and its revision in a KV bucket.
struct KvValue {
  std::string value;
  uint64_t revision = 0;
};

// The public key of an NKey seed ("SU..." -> "U..."): libnats signs with the seed file but must
// be told the public key, which the server looks the user up by. Refuses a malformed seed
// (base32, prefix, length, CRC16) with what is wrong.
Result<std::string> nkey_public_key(std::string_view seed);

class NatsConnection {
 public:
  struct Events {
    std::function<void()> disconnected;  // from a libnats thread
    // After a loss (first false), and at the first connect when it came late (first true).
    std::function<void(bool first)> reconnected;
  };

  // Connects with the cluster section's servers, credentials and TLS. Unreachable servers are
  // not an error: the connection keeps trying in the background (connected() says when it is
  // up). A bad option (an unreadable credentials file, a malformed URL) is.
  static Result<std::unique_ptr<NatsConnection>> connect(const ClusterConfig& config,
                                                         std::string client_name, Events events);
  ~NatsConnection();  // closes; libnats threads have stopped calling back when it returns
  NatsConnection(const NatsConnection&) = delete;
  NatsConnection& operator=(const NatsConnection&) = delete;

  natsConnection* get() const { return nc_; }
  jsCtx* js() const { return js_; }
  bool connected() const;
  std::string connected_url() const;
  uint64_t reconnects() const { return reconnects_.load(); }
  // Why the first connect failed, when connect() returned before a server answered.
  const std::string& first_error() const { return first_error_; }

  // A KV bucket, created with `replicas` and `ttl_ms` (0: none) if missing. Blocking.
  Result<KvStorePtr> key_value(const std::string& bucket, int replicas, int64_t ttl_ms);

 private:
  NatsConnection() = default;
  static void on_disconnected(natsConnection* nc, void* self);
  static void on_reconnected(natsConnection* nc, void* self);
  static void on_connected(natsConnection* nc, void* self);
  static void on_closed(natsConnection* nc, void* self);
  static int64_t reconnect_delay(natsConnection* nc, int attempts, void* self);

  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  Events events_;
  int64_t wait_ms_ = 1000;
  int64_t max_wait_ms_ = 10000;
  std::atomic<uint64_t> reconnects_{0};
  std::string first_error_;
  // Set by on_closed, which libnats calls after every other callback of the connection (one
  // thread runs them all, in order): the destructor waits for it before `this` goes away.
  std::mutex closed_mu_;
  std::condition_variable closed_cv_;
  bool closed_ = false;
};

// KV helpers. Each is blocking (a request to the servers).
Result<std::optional<KvValue>> kv_get(kvStore* kv, const std::string& key);
// Creates `key` only if absent; kExists if it is there.
Result<uint64_t> kv_create(kvStore* kv, const std::string& key, const std::string& value);
// Replaces `key` only if its revision is still `revision`; kExists when someone changed it.
Result<uint64_t> kv_update(kvStore* kv, const std::string& key, const std::string& value,
                           uint64_t revision);
Result<uint64_t> kv_put(kvStore* kv, const std::string& key, const std::string& value);
Status kv_delete(kvStore* kv, const std::string& key);
Result<std::vector<std::string>> kv_keys(kvStore* kv);

}  // namespace docpipe

namespace docpipe {

// A bucket's keys and values kept current by one long-lived watcher (a JetStream ordered
// consumer) on a thread of its own. Listing keys with kvStore_Keys creates a consumer per call,
// a clustered operation; done every second by every node it loads the servers' meta layer
// enough to stall JetStream's recovery after an outage. This costs one consumer per bucket.
class KvMirror {
 public:
  struct Entry {
    std::string value;
    uint64_t revision = 0;
  };
  explicit KvMirror(kvStore* kv);
  ~KvMirror();  // stops the thread
  KvMirror(const KvMirror&) = delete;
  KvMirror& operator=(const KvMirror&) = delete;

  // Every key and its last value, as of the last update the watcher delivered; nullopt while the
  // watcher is not caught up (starting, or restarting after it broke).
  std::optional<std::map<std::string, Entry>> snapshot() const;

 private:
  void run();

  kvStore* kv_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
  bool current_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace docpipe
