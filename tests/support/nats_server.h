#pragma once
// Real nats-server processes for tests: one JetStream server (NatsServer) or three clustered
// ones (NatsCluster), each on free loopback ports with a store folder of its own that is removed
// at the end. Readiness is polled (with a deadline) on the monitoring port's /healthz, which on
// nats-server 2.9.10 answers 200 only once JetStream is enabled and, clustered, in contact with
// a meta leader and current on every stream and consumer the server holds.
//
// Children get PR_SET_PDEATHSIG(SIGKILL): a test that dies leaves no server behind. That signal
// follows the thread that forked, so start, restart and respawn from the test's main thread.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace docpipe::test {

namespace nats_detail {

inline constexpr const char* kServerBinary = "/usr/sbin/nats-server";
inline constexpr std::chrono::seconds kReadyTimeout{20};
inline constexpr std::chrono::seconds kRejoinTimeout{60};

// A port the kernel had free a moment ago (bind 127.0.0.1:0, read it, close). Another process
// may take it before the server binds it: NatsServer::start retries once on "address in use".
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("free_port: socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error(std::string("free_port: bind 127.0.0.1:0: ") + std::strerror(e));
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

// Connects to 127.0.0.1:port; -1 when nothing listens there.
inline int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{1, 0};  // a hung server must not hang the readiness poll
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

struct HttpReply {
  int status = 0;  // 0: no answer
  std::string body;
};

// GET http://127.0.0.1:port<path> with HTTP/1.0 (the server closes after the reply).
inline HttpReply http_get(int port, const std::string& path) {
  HttpReply reply;
  const int fd = connect_loopback(port);
  if (fd < 0) return reply;
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return reply;
  }
  std::string raw;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) raw.append(buf, size_t(n));
  ::close(fd);
  if (raw.rfind("HTTP/1.", 0) != 0 || raw.size() < 12) return reply;
  reply.status = std::atoi(raw.c_str() + 9);
  const size_t head_end = raw.find("\r\n\r\n");
  if (head_end != std::string::npos) reply.body = raw.substr(head_end + 4);
  return reply;
}

// Polls `done` every 20 ms until it holds or `timeout` passes; returns whether it held.
template <typename Done>
bool poll_until(Done done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Waits up to `timeout` for child `pid` to exit and reaps it. Returns whether it did.
inline bool reap_within(pid_t pid, std::chrono::milliseconds timeout) {
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int r;
    do {
      r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    } while (r < 0 && errno == EINTR);
    ::close(pidfd);
    if (r != 1) return false;
  }
  int status;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return true;
}

}  // namespace nats_detail

// One `nats-server -js` process, configured by a generated file in its temp folder.
class NatsServer {
 public:
  // How a server of a cluster finds the others; empty cluster_name means a lone server.
  struct ClusterSetup {
    std::string cluster_name;
    int cluster_port = 0;
    std::vector<int> route_ports;  // the other members' cluster ports
  };

  // Starts on a free loopback port with a fresh store folder (removed at destruction) and a
  // monitoring port; waits (up to 20 s) until /healthz answers 200. Throws std::runtime_error
  // with the log tail.
  static std::unique_ptr<NatsServer> start(const std::string& name = "n1") {
    for (int attempt = 0;; ++attempt) {
      std::unique_ptr<NatsServer> s(new NatsServer(name, nats_detail::free_port(),
                                                   nats_detail::free_port(), {}));
      s->spawn();
      try {
        s->wait_ready();
        return s;
      } catch (const std::runtime_error&) {
        if (attempt > 0 || !s->lost_port_race()) throw;
      }
    }
  }

  // For NatsCluster: a server with fixed ports and routes, not yet running (call spawn()).
  static std::unique_ptr<NatsServer> create(const std::string& name, int client_port,
                                            int monitor_port, ClusterSetup cluster) {
    return std::unique_ptr<NatsServer>(
        new NatsServer(name, client_port, monitor_port, std::move(cluster)));
  }

  ~NatsServer() {
    if (pid_ > 0) kill();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  const std::string& url() const { return url_; }
  int port() const { return port_; }
  int monitor_port() const { return monitor_port_; }
  const std::string& name() const { return name_; }
  const std::string& folder() const { return dir_; }
  pid_t pid() const { return pid_; }

  // SIGKILL and reap (no clean shutdown: what a crashed host looks like).
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    nats_detail::reap_within(pid_, std::chrono::milliseconds(-1));
    pid_ = -1;
  }

  // SIGTERM and wait for the exit (SIGKILL and throw after 20 s).
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    if (!nats_detail::reap_within(pid_, nats_detail::kReadyTimeout)) {
      kill();
      throw std::runtime_error("nats-server " + name_ + " did not exit within 20 s of SIGTERM\n" +
                               log_tail());
    }
    pid_ = -1;
  }

  // Starts again on the same ports and store folder and waits until ready. In a cluster the
  // server is ready only once it reaches a meta leader: with every member down use
  // NatsCluster::restart_all().
  // A restarted cluster member answers /healthz only once every stream and consumer it holds is
  // current again, which under load (sanitizer builds, ctest -j2) can take well over 20 s.
  void restart() {
    spawn();
    wait_ready(nats_detail::kRejoinTimeout);
  }

  // Starts the process (if not running) without waiting for it to be ready.
  void spawn() {
    if (running()) return;
    // argv built before fork: the child may only make async-signal-safe calls.
    const std::string binary = nats_detail::kServerBinary;
    const std::string config = dir_ + "/nats-server.conf";
    const std::string log = dir_ + "/nats-server.log";
    const std::string dash_c = "-c", dash_l = "-l";
    char* argv[] = {const_cast<char*>(binary.c_str()), const_cast<char*>(dash_c.c_str()),
                    const_cast<char*>(config.c_str()), const_cast<char*>(dash_l.c_str()),
                    const_cast<char*>(log.c_str()), nullptr};
    // Start-up errors (before -l takes effect) go to the same log, so log_tail() shows them.
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0) throw std::runtime_error("cannot open " + log + ": " + std::strerror(errno));
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(out);
      throw std::runtime_error(std::string("fork for nats-server: ") + std::strerror(errno));
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
      const int devnull = ::open("/dev/null", O_RDONLY);
      ::dup2(devnull, 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::execv(argv[0], argv);
      ::_exit(127);
    }
    ::close(out);
    pid_ = pid;
  }

  // Whether the process is alive (reaps it if it exited on its own).
  bool running() const {
    if (pid_ <= 0) return false;
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }

  // Whether the server answers: /healthz 200 and the client port accepts.
  bool ready() const {
    if (nats_detail::http_get(monitor_port_, "/healthz").status != 200) return false;
    const int fd = nats_detail::connect_loopback(port_);
    if (fd < 0) return false;
    ::close(fd);
    return true;
  }

  // Waits up to `timeout` (20 s) until ready(); throws with the log tail if the server exits or
  // times out.
  void wait_ready(std::chrono::seconds timeout = nats_detail::kReadyTimeout) const {
    bool exited = false;
    const bool ok = nats_detail::poll_until(
        [&] {
          if (!running()) return exited = true;
          return ready();
        },
        timeout);
    if (ok && !exited) return;
    throw std::runtime_error("nats-server " + name_ + " on " + url_ +
                             (exited ? " exited during start-up"
                                     : " not ready within " + std::to_string(timeout.count()) +
                                           " s") +
                             " (/healthz on port " + std::to_string(monitor_port_) + ")\n" +
                             log_tail());
  }

  // The last `lines` lines of the server's log (start-up errors included).
  std::string log_tail(size_t lines = 40) const {
    std::ifstream in(dir_ + "/nats-server.log");
    std::deque<std::string> tail;
    for (std::string line; std::getline(in, line);) {
      tail.push_back(line);
      if (tail.size() > lines) tail.pop_front();
    }
    std::string out;
    for (const std::string& line : tail) out += line + "\n";
    return out;
  }

  // Whether the server exited because a port was taken after free_port() picked it.
  bool lost_port_race() const {
    return !running() && log_tail(10).find("address already in use") != std::string::npos;
  }

 private:
  NatsServer(std::string name, int client_port, int monitor_port, ClusterSetup cluster)
      : name_(std::move(name)), port_(client_port), monitor_port_(monitor_port),
        url_("nats://127.0.0.1:" + std::to_string(client_port)) {
    std::string tmpl = "/tmp/docpipe-nats-" + name_ + "-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr)
      throw std::runtime_error("mkdtemp " + tmpl + ": " + std::strerror(errno));
    dir_ = tmpl;
    write_config(cluster);
  }

  void write_config(const ClusterSetup& cluster) const {
    std::ofstream conf(dir_ + "/nats-server.conf");
    conf << "server_name: " << name_ << "\n"
         << "listen: 127.0.0.1:" << port_ << "\n"
         << "http: 127.0.0.1:" << monitor_port_ << "\n"
         // Small limits: tests hold a few messages, and 2 cores share the machine.
         << "jetstream {\n  store_dir: \"" << dir_ << "/store\"\n"
         << "  max_memory_store: 64MB\n  max_file_store: 256MB\n}\n";
    if (!cluster.cluster_name.empty()) {
      conf << "cluster {\n  name: " << cluster.cluster_name << "\n"
           << "  listen: 127.0.0.1:" << cluster.cluster_port << "\n  routes: [\n";
      for (int p : cluster.route_ports) conf << "    nats-route://127.0.0.1:" << p << "\n";
      conf << "  ]\n}\n";
    }
    if (!conf) throw std::runtime_error("cannot write " + dir_ + "/nats-server.conf");
  }

  std::string name_;
  int port_;
  int monitor_port_;
  std::string url_;
  std::string dir_;
  mutable pid_t pid_ = -1;  // mutable: running() reaps a server that exited on its own
};

// Servers with routes to each other on loopback and clustered JetStream (R3 streams possible).
class NatsCluster {
 public:
  // Starts `servers` servers named n1..nN and waits until every one is ready (a meta leader is
  // elected and known to all). Retries once with fresh ports if one lost a port race.
  static std::unique_ptr<NatsCluster> start(int servers = 3) {
    for (int attempt = 0;; ++attempt) {
      std::unique_ptr<NatsCluster> c(new NatsCluster(servers));
      // All spawned before any wait: none is ready before a quorum runs.
      for (auto& s : c->servers_) s->spawn();
      try {
        c->wait_ready();
        return c;
      } catch (const std::runtime_error&) {
        bool race = false;
        for (auto& s : c->servers_) race = race || s->lost_port_race();
        if (attempt > 0 || !race) throw;
      }
    }
  }

  NatsServer& server(int i) { return *servers_.at(size_t(i)); }
  int size() const { return int(servers_.size()); }

  // Every client URL, running or not.
  std::vector<std::string> urls() const {
    std::vector<std::string> out;
    for (const auto& s : servers_) out.push_back(s->url());
    return out;
  }
  // Comma-separated, for natsOptions_SetURL (or split for natsOptions_SetServers).
  std::string url_list() const {
    std::string out;
    for (const auto& s : servers_) out += (out.empty() ? "" : ",") + s->url();
    return out;
  }

  // Waits until every running server is ready: JetStream usable through a meta leader. Throws
  // with each server's log tail after 20 s.
  void wait_ready() const {
    const bool ok = nats_detail::poll_until(
        [&] {
          for (const auto& s : servers_)
            if (s->running() && !s->ready()) return false;
          return true;
        },
        nats_detail::kReadyTimeout);
    if (ok) return;
    std::string logs;
    for (const auto& s : servers_)
      logs += "--- " + s->name() + (s->running() ? " (running)" : " (not running)") + " ---\n" +
              s->log_tail(15);
    throw std::runtime_error("NATS cluster not ready within 20 s\n" + logs);
  }

  // Stops (SIGTERM) every running server.
  void stop_all() {
    for (auto& s : servers_) s->stop();
  }
  // Starts every server that is not running, then waits until all are ready.
  void restart_all() {
    for (auto& s : servers_) s->spawn();
    wait_ready();
  }

  // The name of the server that leads the JetStream meta group ("" if none), from /jsz.
  std::string meta_leader() const {
    for (const auto& s : servers_) {
      if (!s->running()) continue;
      const std::string body = nats_detail::http_get(s->monitor_port(), "/jsz").body;
      const size_t meta = body.find("\"meta_cluster\"");
      if (meta == std::string::npos) continue;
      const size_t key = body.find("\"leader\":", meta);
      if (key == std::string::npos) continue;
      const size_t open = body.find('"', key + 9), close = body.find('"', open + 1);
      if (open != std::string::npos && close != std::string::npos && close > open + 1)
        return body.substr(open + 1, close - open - 1);
    }
    return "";
  }

 private:
  explicit NatsCluster(int count) {
    std::vector<int> client, monitor, cluster;
    for (int i = 0; i < count; ++i) {
      client.push_back(nats_detail::free_port());
      monitor.push_back(nats_detail::free_port());
      cluster.push_back(nats_detail::free_port());
    }
    for (int i = 0; i < count; ++i) {
      NatsServer::ClusterSetup setup{"docpipe-test", cluster[size_t(i)], {}};
      for (int j = 0; j < count; ++j)
        if (j != i) setup.route_ports.push_back(cluster[size_t(j)]);
      servers_.push_back(NatsServer::create("n" + std::to_string(i + 1), client[size_t(i)],
                                            monitor[size_t(i)], std::move(setup)));
    }
  }

  std::vector<std::unique_ptr<NatsServer>> servers_;
};

}  // namespace docpipe::test
