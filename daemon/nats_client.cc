#include "daemon/nats_client.h"

#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include "core/fs_util.h"

namespace docpipe {

Error nats_error(const std::string& what, natsStatus s, jsErrCode js) {
  std::string text = natsStatus_GetText(s);
  // The last error of this thread often says more ("wrong last sequence: 12").
  if (const char* last = nats_GetLastError(nullptr); last != nullptr && *last != '\0') {
    if (text.find(last) == std::string::npos) text += std::string(": ") + last;
  }
  if (js != 0) text += " (JetStream error " + std::to_string(static_cast<int>(js)) + ")";
  ErrorCode code = s == NATS_NOT_FOUND ? ErrorCode::kNotFound : ErrorCode::kIo;
  return make_error(code, "nats: " + what + ": " + text);
}

std::string msg_data(natsMsg* m) {
  const char* data = natsMsg_GetData(m);
  return data == nullptr ? std::string() : std::string(data, natsMsg_GetDataLength(m));
}

namespace {

constexpr char kBase32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

uint16_t crc16(const unsigned char* data, size_t n) {  // CRC-16/XMODEM, as nkeys use
  uint16_t crc = 0;
  for (size_t i = 0; i < n; ++i) {
    crc ^= static_cast<uint16_t>(data[i]) << 8;
    for (int b = 0; b < 8; ++b)
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
  }
  return crc;
}

std::string base32_encode(const std::vector<unsigned char>& in) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char c : in) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 5) {
      out += kBase32[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += kBase32[(buffer << (5 - bits)) & 31];
  return out;
}

std::optional<std::vector<unsigned char>> base32_decode(std::string_view in) {
  std::vector<unsigned char> out;
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : in) {
    const char* at = std::strchr(kBase32, c);
    if (c == '\0' || at == nullptr) return std::nullopt;
    buffer = (buffer << 5) | static_cast<uint32_t>(at - kBase32);
    bits += 5;
    if (bits >= 8) {
      out.push_back(static_cast<unsigned char>((buffer >> (bits - 8)) & 0xff));
      bits -= 8;
    }
  }
  return out;
}

struct OptionsDeleter {
  void operator()(natsOptions* o) const { natsOptions_Destroy(o); }
};

}  // namespace

Result<std::string> nkey_public_key(std::string_view seed) {
  auto bad = [](const std::string& why) {
    return make_error(ErrorCode::kInvalidArgument, "not an NKey seed: " + why);
  };
  std::optional<std::vector<unsigned char>> raw = base32_decode(seed);
  if (!raw) return bad("not base32");
  if (raw->size() != 36) return bad("wrong length");
  const uint16_t crc = static_cast<uint16_t>((*raw)[34] | ((*raw)[35] << 8));
  if (crc16(raw->data(), 34) != crc) return bad("checksum mismatch");
  constexpr unsigned char kSeedPrefix = 18 << 3;  // 'S'
  if (((*raw)[0] & 0xf8) != kSeedPrefix) return bad("does not start with S");
  const unsigned char type =
      static_cast<unsigned char>((((*raw)[0] & 7) << 5) | (((*raw)[1] & 0xf8) >> 3));
  EVP_PKEY* key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, raw->data() + 2, 32);
  if (key == nullptr) return bad("not an ed25519 seed");
  unsigned char pub[32];
  size_t len = sizeof pub;
  const bool got = EVP_PKEY_get_raw_public_key(key, pub, &len) == 1 && len == 32;
  EVP_PKEY_free(key);
  if (!got) return bad("cannot derive its public key");
  std::vector<unsigned char> out{type};
  out.insert(out.end(), pub, pub + 32);
  const uint16_t out_crc = crc16(out.data(), out.size());
  out.push_back(static_cast<unsigned char>(out_crc & 0xff));
  out.push_back(static_cast<unsigned char>(out_crc >> 8));
  return base32_encode(out);
}

Result<std::unique_ptr<NatsConnection>> NatsConnection::connect(const ClusterConfig& config,
                                                                std::string client_name,
                                                                Events events) {
  std::unique_ptr<NatsConnection> self(new NatsConnection());
  self->events_ = std::move(events);
  self->wait_ms_ = config.reconnect_wait_ms;
  self->max_wait_ms_ = std::max(config.reconnect_max_wait_ms, config.reconnect_wait_ms);

  natsOptions* raw = nullptr;
  if (natsStatus s = natsOptions_Create(&raw); s != NATS_OK) return nats_error("options", s);
  std::unique_ptr<natsOptions, OptionsDeleter> opts(raw);
  std::vector<const char*> urls;
  for (const std::string& u : config.nats) urls.push_back(u.c_str());
  auto check = [](const std::string& what, natsStatus s) -> Status {
    if (s != NATS_OK) return nats_error(what, s);
    return ok();
  };
  Status st = check("servers",
                    natsOptions_SetServers(opts.get(), urls.data(), static_cast<int>(urls.size())));
  if (st) st = check("name", natsOptions_SetName(opts.get(), client_name.c_str()));
  if (st) st = check("reconnect", natsOptions_SetMaxReconnect(opts.get(), -1));
  if (st) {
    st = check("reconnect delay",
               natsOptions_SetCustomReconnectDelay(opts.get(), reconnect_delay, self.get()));
  }
  // Documents published while disconnected wait in this buffer; past it a publish fails and
  // is retried by the caller (8 MiB: thousands of outcomes).
  if (st) st = check("reconnect buffer", natsOptions_SetReconnectBufSize(opts.get(), 8 << 20));
  if (st) st = check("timeout", natsOptions_SetTimeout(opts.get(), 5000));
  if (st) st = check("ping", natsOptions_SetPingInterval(opts.get(), 2000));
  if (st) st = check("ping", natsOptions_SetMaxPingsOut(opts.get(), 3));
  if (st) {
    st = check("callbacks", natsOptions_SetDisconnectedCB(opts.get(), on_disconnected, self.get()));
  }
  if (st) {
    st = check("callbacks", natsOptions_SetReconnectedCB(opts.get(), on_reconnected, self.get()));
  }
  if (st) st = check("callbacks", natsOptions_SetClosedCB(opts.get(), on_closed, self.get()));
  if (st && !config.credentials.empty()) {
    st = check(
        "credentials " + config.credentials,
        natsOptions_SetUserCredentialsFromFiles(opts.get(), config.credentials.c_str(), nullptr));
  }
  std::string nkey;
  if (st && !config.nkey_seed.empty()) {
    // libnats signs the server's nonce with the seed file; the server needs the public key.
    Result<std::string> text = read_file(config.nkey_seed);
    if (!text) return text.error();
    const size_t at = text->find("SU");
    const std::string seed = at == std::string::npos ? std::string() : text->substr(at, 58);
    Result<std::string> pub = nkey_public_key(seed);
    if (!pub) return make_error(pub.error().code, config.nkey_seed + ": " + pub.error().message);
    nkey = *pub;
    st = check("nkey seed " + config.nkey_seed,
               natsOptions_SetNKeyFromSeed(opts.get(), nkey.c_str(), config.nkey_seed.c_str()));
  }
  if (st && !config.user.empty()) {
    st = check("user",
               natsOptions_SetUserInfo(opts.get(), config.user.c_str(), config.password.c_str()));
  }
  if (st && !config.token.empty()) {
    st = check("token", natsOptions_SetToken(opts.get(), config.token.c_str()));
  }
  const bool tls = !config.tls_ca.empty() || !config.tls_cert.empty();
  if (st && tls) st = check("tls", natsOptions_SetSecure(opts.get(), true));
  if (st && !config.tls_ca.empty()) {
    st = check("tls ca " + config.tls_ca,
               natsOptions_LoadCATrustedCertificates(opts.get(), config.tls_ca.c_str()));
  }
  if (st && !config.tls_cert.empty()) {
    st = check("tls certificate " + config.tls_cert,
               natsOptions_LoadCertificatesChain(opts.get(), config.tls_cert.c_str(),
                                                 config.tls_key.c_str()));
  }
  if (st && !config.tls_hostname.empty()) {
    st = check("tls hostname",
               natsOptions_SetExpectedHostname(opts.get(), config.tls_hostname.c_str()));
  }
  if (!st) return st.error();

  // One plain attempt first, for its reason when it fails (refused, authorization violation,
  // TLS): in the background mode below libnats keeps retrying without saying why.
  natsStatus s = natsOptions_SetRetryOnFailedConnect(opts.get(), false, nullptr, nullptr);
  if (s == NATS_OK) s = natsConnection_Connect(&self->nc_, opts.get());
  if (s != NATS_OK) {
    self->first_error_ = nats_error("connect", s).message;
    s = natsOptions_SetRetryOnFailedConnect(opts.get(), true, on_connected, self.get());
    if (s == NATS_OK) s = natsConnection_Connect(&self->nc_, opts.get());
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) return nats_error("connect", s);
  }
  jsOptions jso;
  jsOptions_Init(&jso);
  jso.Wait = 5000;
  if (s = natsConnection_JetStream(&self->js_, self->nc_, &jso); s != NATS_OK) {
    return nats_error("JetStream context", s);
  }
  return self;
}

NatsConnection::~NatsConnection() {
  if (js_ != nullptr) jsCtx_Destroy(js_);
  if (nc_ != nullptr) {
    // Close queues the disconnected callback and then the closed one on libnats' callback
    // thread, which runs them later, in order, with `this`. Without this wait a shutdown freed
    // the connection while on_disconnected was still to run (a use after free seen by ASan in
    // the prometheus e2e test). The closed callback is queued exactly once per connection (now,
    // or when it closed earlier), so the wait ends.
    natsConnection_Close(nc_);
    {
      std::unique_lock lock(closed_mu_);
      closed_cv_.wait(lock, [this] { return closed_; });
    }
    natsConnection_Destroy(nc_);
  }
}

bool NatsConnection::connected() const {
  return nc_ != nullptr && natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED;
}

std::string NatsConnection::connected_url() const {
  char buf[256] = {0};
  if (nc_ == nullptr || natsConnection_GetConnectedUrl(nc_, buf, sizeof buf) != NATS_OK) return {};
  return buf;
}

Result<KvStorePtr> NatsConnection::key_value(const std::string& bucket, int replicas,
                                             int64_t ttl_ms) {
  kvStore* kv = nullptr;
  natsStatus s = js_KeyValue(&kv, js_, bucket.c_str());
  if (s == NATS_OK) return KvStorePtr(kv);
  kvConfig cfg;
  kvConfig_Init(&cfg);
  cfg.Bucket = bucket.c_str();
  cfg.History = 1;
  cfg.Replicas = replicas;
  cfg.StorageType = js_FileStorage;
  cfg.TTL = ttl_ms * 1000000;
  s = js_CreateKeyValue(&kv, js_, &cfg);
  if (s != NATS_OK) return nats_error("key-value bucket " + bucket, s);
  return KvStorePtr(kv);
}

void NatsConnection::on_disconnected(natsConnection*, void* self) {
  auto* c = static_cast<NatsConnection*>(self);
  if (c->events_.disconnected) c->events_.disconnected();
}

void NatsConnection::on_reconnected(natsConnection*, void* self) {
  auto* c = static_cast<NatsConnection*>(self);
  c->reconnects_.fetch_add(1);
  if (c->events_.reconnected) c->events_.reconnected(false);
}

void NatsConnection::on_closed(natsConnection*, void* self) {
  auto* c = static_cast<NatsConnection*>(self);
  std::lock_guard lock(c->closed_mu_);
  c->closed_ = true;
  c->closed_cv_.notify_all();
}

void NatsConnection::on_connected(natsConnection*, void* self) {
  auto* c = static_cast<NatsConnection*>(self);
  if (c->events_.reconnected) c->events_.reconnected(true);
}

int64_t NatsConnection::reconnect_delay(natsConnection*, int attempts, void* self) {
  // libnats calls this after a pass over every server: wait, 2 x wait, 4 x wait, ... up to max,
  // plus up to a quarter more so that many nodes do not come back in step.
  auto* c = static_cast<NatsConnection*>(self);
  int64_t delay = c->wait_ms_;
  for (int i = 1; i < attempts && delay < c->max_wait_ms_; ++i) delay *= 2;
  delay = std::min(delay, c->max_wait_ms_);
  return delay + static_cast<int64_t>(nats_Now() % (delay / 4 + 1));
}

Result<std::optional<KvValue>> kv_get(kvStore* kv, const std::string& key) {
  kvEntry* e = nullptr;
  natsStatus s = kvStore_Get(&e, kv, key.c_str());
  if (s == NATS_NOT_FOUND) return std::optional<KvValue>();
  if (s != NATS_OK) return nats_error("get " + key, s);
  KvEntryPtr entry(e);
  const char* v = static_cast<const char*>(kvEntry_Value(e));
  KvValue out{v == nullptr ? std::string() : std::string(v, kvEntry_ValueLen(e)),
              kvEntry_Revision(e)};
  return std::optional<KvValue>(std::move(out));
}

Result<uint64_t> kv_create(kvStore* kv, const std::string& key, const std::string& value) {
  uint64_t rev = 0;
  natsStatus s =
      kvStore_Create(&rev, kv, key.c_str(), value.data(), static_cast<int>(value.size()));
  if (s == NATS_OK) return rev;
  Error e = nats_error("create " + key, s);
  auto now = kv_get(kv, key);
  if (now && *now) return make_error(ErrorCode::kExists, "nats: " + key + " exists already");
  return e;
}

Result<uint64_t> kv_update(kvStore* kv, const std::string& key, const std::string& value,
                           uint64_t revision) {
  uint64_t rev = 0;
  natsStatus s =
      kvStore_Update(&rev, kv, key.c_str(), value.data(), static_cast<int>(value.size()), revision);
  if (s == NATS_OK) return rev;
  Error e = nats_error("update " + key, s);
  auto now = kv_get(kv, key);
  if (now && (!*now || (*now)->revision != revision)) {
    return make_error(ErrorCode::kExists, "nats: " + key + " was changed by someone else");
  }
  return e;
}

Result<uint64_t> kv_put(kvStore* kv, const std::string& key, const std::string& value) {
  uint64_t rev = 0;
  natsStatus s = kvStore_Put(&rev, kv, key.c_str(), value.data(), static_cast<int>(value.size()));
  if (s != NATS_OK) return nats_error("put " + key, s);
  return rev;
}

Status kv_delete(kvStore* kv, const std::string& key) {
  natsStatus s = kvStore_Delete(kv, key.c_str());
  if (s != NATS_OK && s != NATS_NOT_FOUND) return nats_error("delete " + key, s);
  return ok();
}

Result<std::vector<std::string>> kv_keys(kvStore* kv) {
  kvKeysList list{};
  kvWatchOptions o;
  kvWatchOptions_Init(&o);
  o.Timeout = 5000;
  natsStatus s = kvStore_Keys(&list, kv, &o);
  if (s == NATS_NOT_FOUND) return std::vector<std::string>();
  if (s != NATS_OK) return nats_error("keys", s);
  std::vector<std::string> out;
  for (int i = 0; i < list.Count; ++i) out.emplace_back(list.Keys[i]);
  kvKeysList_Destroy(&list);
  return out;
}

}  // namespace docpipe

namespace docpipe {

KvMirror::KvMirror(kvStore* kv) : kv_(kv), thread_([this] { run(); }) {}

KvMirror::~KvMirror() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

std::optional<std::map<std::string, KvMirror::Entry>> KvMirror::snapshot() const {
  std::lock_guard lock(mu_);
  if (!current_) return std::nullopt;
  return entries_;
}

void KvMirror::run() {
  while (!stop_.load()) {
    kvWatcher* w = nullptr;
    kvWatchOptions o;
    kvWatchOptions_Init(&o);
    if (kvStore_WatchAll(&w, kv_, &o) != NATS_OK) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      continue;
    }
    // The watcher first delivers every key's last value, then a null entry, then updates.
    std::map<std::string, Entry> fresh;
    bool initial = true;
    while (!stop_.load()) {
      kvEntry* e = nullptr;
      natsStatus s = kvWatcher_Next(&e, w, 250);
      if (s == NATS_TIMEOUT) continue;
      if (s != NATS_OK) break;  // broken (an outage): start over with a new watcher
      if (e == nullptr) {
        std::lock_guard lock(mu_);
        entries_.swap(fresh);
        current_ = true;
        initial = false;
        continue;
      }
      KvEntryPtr entry(e);
      std::map<std::string, Entry>* target = &fresh;
      std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
      if (!initial) {
        lock.lock();
        target = &entries_;
      }
      const std::string key = kvEntry_Key(e);
      if (kvEntry_Operation(e) == kvOp_Put) {
        const char* v = static_cast<const char*>(kvEntry_Value(e));
        (*target)[key] = Entry{v == nullptr ? std::string() : std::string(v, kvEntry_ValueLen(e)),
                               kvEntry_Revision(e)};
      } else {
        target->erase(key);
      }
    }
    {
      std::lock_guard lock(mu_);
      current_ = false;
    }
    kvWatcher_Stop(w);
    kvWatcher_Destroy(w);
  }
}

}  // namespace docpipe
