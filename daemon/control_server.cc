#include "daemon/control_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>

#include "daemon/log.h"
#include "daemon/peer_credentials.h"

namespace docpipe {

namespace {

nlohmann::json error_reply(const std::string& message) {
  return {{"ok", false}, {"error", message}};
}

std::string reply_line(const nlohmann::json& reply) {
  return reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace

// One client. Shared ownership: the server's set, pending writes and threadpool parses keep it
// alive; the uv handle inside is freed only after its close callback. Replies hold it weakly.
struct ControlServer::Connection : std::enable_shared_from_this<Connection> {
  ControlServer* server = nullptr;
  uv_pipe_t pipe{};
  Credentials peer;
  std::string inbox;   // bytes received and not yet taken as requests
  size_t scanned = 0;  // inbox[0, scanned) holds no newline
  bool closing = false;
  bool reading = false;
  bool pumping = false;  // inside pump(): replies given synchronously must not re-enter it
  // Replies go out in request order even when a later request is answered first.
  uint64_t next_request = 0;
  uint64_t next_reply = 0;
  std::map<uint64_t, std::string> ready;
  size_t in_flight = 0;    // requests taken whose reply has not been given yet
  size_t ready_bytes = 0;  // bytes in `ready`, waiting for an earlier reply
  uint64_t last_activity_ms = 0;
  std::shared_ptr<Connection> self_while_open;  // released in the close callback

  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&pipe); }
  const ControlLimits& limits() const { return server->limits_; }

  void close() {
    if (closing) return;
    closing = true;
    --server->open_connections_;  // its descriptor is given back now, in uv_close()
    if (reading) uv_read_stop(stream());
    reading = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&pipe), [](uv_handle_t* h) {
      auto* c = static_cast<Connection*>(h->data);
      std::shared_ptr<Connection> keep = std::move(c->self_while_open);
      if (c->server != nullptr) c->server->connections_.erase(keep);
    });
  }

  // Whether another request may be taken: few enough unanswered, and the client keeps up with
  // reading the replies.
  bool can_take() const {
    return in_flight < limits().max_in_flight && backlog() < limits().backlog_pause_bytes;
  }

  // Reply bytes the client has not taken yet: waiting for their turn, or queued for the socket
  // (libuv writes what the kernel takes at once and queues only the rest).
  size_t backlog() const { return ready_bytes + pipe.write_queue_size; }

  void update_reading() {
    bool want = !closing && can_take();
    if (want == reading) return;
    if (want) {
      start_reading();
    } else {
      uv_read_stop(stream());
      reading = false;
    }
  }

  void start_reading() {
    int rc = uv_read_start(
        stream(),
        [](uv_handle_t*, size_t suggested, uv_buf_t* buf) {
          buf->base = new char[suggested];
          buf->len = suggested;
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
          auto* c = static_cast<Connection*>(s->data);
          if (n > 0) {
            c->on_data(buf->base, static_cast<size_t>(n));
          } else if (n < 0) {
            c->close();  // EOF or error
          }
          delete[] buf->base;
        });
    if (rc != 0) {
      close();
      return;
    }
    reading = true;
  }

  void send(uint64_t seq, const nlohmann::json& reply) {
    if (closing) return;
    if (in_flight > 0) --in_flight;
    std::string line = reply_line(reply);
    ready_bytes += line.size();
    ready[seq] = std::move(line);
    while (!ready.empty() && ready.begin()->first == next_reply) {
      ready_bytes -= ready.begin()->second.size();
      write(std::move(ready.begin()->second));
      ready.erase(ready.begin());
      ++next_reply;
      if (closing) return;
    }
    if (backlog() > limits().backlog_max_bytes) {
      log_warn("closing a control connection whose client does not read its replies",
               {{"unread_bytes", std::to_string(backlog())}, {"uid", std::to_string(peer.uid)}});
      close();
      return;
    }
    pump();
  }

  void write(std::string data) {
    struct WriteReq {
      uv_write_t req;
      std::string data;
      std::shared_ptr<Connection> conn;
    };
    auto* w = new WriteReq{{}, std::move(data), shared_from_this()};
    w->req.data = w;
    uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    int rc = uv_write(&w->req, stream(), &buf, 1, [](uv_write_t* req, int status) {
      auto* w = static_cast<WriteReq*>(req->data);
      Connection& c = *w->conn;
      if (status < 0) {
        c.close();
      } else if (!c.closing) {
        c.last_activity_ms = uv_now(c.server->loop_);
        c.pump();  // the client caught up: take held-back requests
      }
      delete w;
    });
    if (rc != 0) {  // a failed call never calls back
      delete w;
      close();
    }
  }

  void on_data(const char* data, size_t n) {
    last_activity_ms = uv_now(server->loop_);
    inbox.append(data, n);
    pump();
  }

  // Takes the complete lines in the inbox while can_take(), then reads on or pauses.
  void pump() {
    if (closing || pumping) return;
    pumping = true;
    size_t start = 0;
    while (!closing && can_take()) {
      size_t nl = inbox.find('\n', std::max(start, scanned));
      if (nl == std::string::npos) break;
      std::string_view line(inbox.data() + start, nl - start);
      start = nl + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
      take(line);
    }
    pumping = false;
    if (closing) return;
    inbox.erase(0, start);
    scanned = inbox.find('\n') == std::string::npos ? inbox.size() : 0;
    if (scanned > kMaxRequestBytes) {
      // The stream can no longer be split into requests: say so, and hang up.
      inbox.clear();
      scanned = 0;
      uint64_t seq = next_request++;
      ++in_flight;
      send(seq, error_reply("request too large: over " + std::to_string(kMaxRequestBytes) +
                            " bytes without a newline"));
      close();
      return;
    }
    update_reading();
  }

  void take(std::string_view line) {
    uint64_t seq = next_request++;
    ++in_flight;
    if (line.size() <= kInlineParseBytes) {
      dispatch(seq, parse_control_request(line));
      return;
    }
    // A large request (a submit of a big job): parsing and printing it is real CPU work.
    struct ParseWork {
      uv_work_t req;
      std::string line;
      std::weak_ptr<Connection> conn;
      uint64_t seq;
      std::optional<Result<ControlRequest>> result;
    };
    auto* w = new ParseWork{{}, std::string(line), weak_from_this(), seq, std::nullopt};
    w->req.data = w;
    int rc = uv_queue_work(
        server->loop_, &w->req,
        [](uv_work_t* req) {
          auto* w = static_cast<ParseWork*>(req->data);
          w->result.emplace(parse_control_request(w->line));
          std::string().swap(w->line);
        },
        [](uv_work_t* req, int) {
          auto* w = static_cast<ParseWork*>(req->data);
          if (auto c = w->conn.lock(); c && w->result) c->dispatch(w->seq, std::move(*w->result));
          delete w;
        });
    if (rc != 0) {
      delete w;
      send(seq, error_reply("cannot take the request now: " + std::string(uv_strerror(rc))));
    }
  }

  void dispatch(uint64_t seq, Result<ControlRequest> request) {
    if (closing) return;
    if (!request) {
      bool fatal = request.error().code == ErrorCode::kTooLarge;
      send(seq, error_reply(request.error().message));
      if (fatal) close();
      return;
    }
    std::weak_ptr<Connection> weak = weak_from_this();
    server->handler_(std::move(*request), peer, [weak, seq](nlohmann::json reply) {
      if (auto conn = weak.lock()) conn->send(seq, reply);
    });
  }
};

ControlServer::ControlServer(uv_loop_t* loop, std::string path, ControlLimits limits,
                             Handler handler)
    : loop_(loop), path_(std::move(path)), limits_(limits), handler_(std::move(handler)) {}

bool control_socket_answers(const std::string& socket_path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  bool answers = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return answers;
}

std::string ControlServer::start() {
  if (control_socket_answers(path_)) {
    return "another process answers on the control socket " + path_ +
           " (is another docpipe running on this spool?)";
  }
  ::unlink(path_.c_str());  // a stale socket from a crash
  uv_pipe_init(loop_, &server_, 0);
  server_.data = this;
  uv_timer_init(loop_, &sweep_);
  sweep_.data = this;
  started_ = true;
  int rc = uv_pipe_bind(&server_, path_.c_str());
  if (rc == 0) {
    // Who may connect is the socket's group (see docs/design-rights.md); what a caller may see
    // and do is decided per request from its credentials.
    ::chmod(path_.c_str(), 0660);
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&server_), 64, [](uv_stream_t* s, int status) {
      if (status == 0) static_cast<ControlServer*>(s->data)->on_connection();
    });
  }
  if (rc != 0) return "cannot listen on the control socket " + path_ + ": " + uv_strerror(rc);
  arm_sweep();
  return {};
}

void ControlServer::arm_sweep() {
  // A quarter of the timeout (within 10 ms..1 s): a connection is closed at most 25 % late.
  uint64_t every = static_cast<uint64_t>(
      std::clamp<int64_t>(limits_.idle_timeout_ms / 4, int64_t{10}, int64_t{1000}));
  uv_timer_start(
      &sweep_, [](uv_timer_t* t) { static_cast<ControlServer*>(t->data)->sweep_idle(); }, every,
      every);
}

void ControlServer::set_limits(ControlLimits limits) {
  limits_ = limits;
  if (started_ && !closed_) arm_sweep();
}

void ControlServer::sweep_idle() {
  uint64_t now = uv_now(loop_);
  auto conns = connections_;
  for (const auto& c : conns) {
    if (c->closing || c->in_flight > 0) continue;
    if (now - c->last_activity_ms >= static_cast<uint64_t>(limits_.idle_timeout_ms)) {
      log_debug("closing an idle control connection", {{"uid", std::to_string(c->peer.uid)}});
      c->close();
    }
  }
}

void ControlServer::on_connection() {
  if (closed_) return;
  auto conn = std::make_shared<Connection>();
  conn->server = this;
  uv_pipe_init(loop_, &conn->pipe, 0);
  conn->pipe.data = conn.get();
  conn->self_while_open = conn;
  conn->last_activity_ms = uv_now(loop_);
  connections_.insert(conn);
  ++open_connections_;
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&server_), conn->stream()) != 0) {
    conn->close();
    return;
  }
  // Refused at once with a reason: the descriptor is given back right away, and the client
  // learns why instead of hanging.
  auto refuse = [&conn](const std::string& message) {
    std::string line = reply_line(error_reply(message));
    uv_buf_t buf = uv_buf_init(line.data(), static_cast<unsigned>(line.size()));
    uv_try_write(conn->stream(), &buf, 1);
    conn->close();
  };
  if (open_connections_ > limits_.max_connections) {
    uint64_t now = uv_now(loop_);
    if (now - last_refusal_log_ms_ >= 10000 || last_refusal_log_ms_ == 0) {
      last_refusal_log_ms_ = now;
      log_warn("control connection refused: too many open",
               {{"max_control_connections", std::to_string(limits_.max_connections)}});
    }
    refuse("too many control connections (max_control_connections = " +
           std::to_string(limits_.max_connections) + "); try again later");
    return;
  }
  uv_os_fd_t fd = -1;
  Result<Credentials> peer = uv_fileno(reinterpret_cast<uv_handle_t*>(&conn->pipe), &fd) == 0
                                 ? socket_peer_credentials(fd)
                                 : make_error(ErrorCode::kIo, "control socket: no descriptor");
  if (!peer) {
    log_warn("control connection refused: unknown peer", {{"error", peer.error().message}});
    refuse("cannot tell who is calling: " + peer.error().message);
    return;
  }
  conn->peer = std::move(*peer);
  conn->update_reading();
}

void ControlServer::close() {
  if (closed_) return;
  closed_ = true;
  auto conns = connections_;
  for (const auto& c : conns) c->close();
  if (started_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sweep_), nullptr);
    ::unlink(path_.c_str());
  }
}

nlohmann::json control_request(const std::string& socket_path, const nlohmann::json& request,
                               int timeout_ms) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    ::close(fd);
    throw std::runtime_error("cannot reach the daemon at " + socket_path + ": " +
                             std::strerror(err));
  }
  std::string out = request.dump() + "\n";
  for (size_t off = 0; off < out.size();) {
    ssize_t n = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      throw std::runtime_error(std::string("send to the daemon: ") + std::strerror(err));
    }
    off += static_cast<size_t>(n);
  }
  std::string in;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    size_t nl = in.find('\n');
    if (nl != std::string::npos) {
      ::close(fd);
      nlohmann::json reply = nlohmann::json::parse(in.substr(0, nl), nullptr, false);
      if (reply.is_discarded()) throw std::runtime_error("malformed reply from the daemon");
      return reply;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    pollfd p{fd, POLLIN, 0};
    int rc = left > 0 ? ::poll(&p, 1, static_cast<int>(left)) : 0;
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) {
      ::close(fd);
      throw std::runtime_error("the daemon did not answer within " + std::to_string(timeout_ms) +
                               " ms");
    }
    char buf[65536];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      throw std::runtime_error("the daemon closed the connection without a reply");
    }
    in.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace docpipe
