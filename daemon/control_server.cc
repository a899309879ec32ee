#include "daemon/control_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "daemon/log.h"

namespace docpipe {

// One client. Shared ownership: the server's set, pending replies and the pending write all keep
// it alive; the uv handle inside is freed only after its close callback.
struct ControlServer::Connection : std::enable_shared_from_this<Connection> {
  ControlServer* server = nullptr;
  uv_pipe_t pipe{};
  std::string inbox;
  bool closing = false;
  // Replies go out in request order even when a later request is answered first.
  uint64_t next_request = 0;
  uint64_t next_reply = 0;
  std::map<uint64_t, std::string> ready;
  std::shared_ptr<Connection> self_while_open;  // released in the close callback

  void close() {
    if (closing) return;
    closing = true;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&pipe));
    uv_close(reinterpret_cast<uv_handle_t*>(&pipe), [](uv_handle_t* h) {
      auto* c = static_cast<Connection*>(h->data);
      std::shared_ptr<Connection> keep = std::move(c->self_while_open);
      if (c->server != nullptr) c->server->connections_.erase(keep);
    });
  }

  void send(uint64_t seq, const nlohmann::json& reply) {
    if (closing) return;
    ready[seq] = reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    while (!ready.empty() && ready.begin()->first == next_reply) {
      write(std::move(ready.begin()->second));
      ready.erase(ready.begin());
      ++next_reply;
    }
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
    int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&pipe), &buf, 1,
                      [](uv_write_t* req, int status) {
                        auto* w = static_cast<WriteReq*>(req->data);
                        if (status < 0) w->conn->close();
                        delete w;
                      });
    if (rc != 0) {  // a failed call never calls back
      delete w;
      close();
    }
  }

  void on_data(const char* data, size_t n) {
    inbox.append(data, n);
    size_t start = 0;
    for (;;) {
      size_t nl = inbox.find('\n', start);
      if (nl == std::string::npos) break;
      std::string_view line(inbox.data() + start, nl - start);
      start = nl + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
      handle(line);
      if (closing) return;
    }
    inbox.erase(0, start);
    if (inbox.size() > kMaxRequestBytes) {
      send(next_request++,
           {{"ok", false},
            {"error", "request too large: over " + std::to_string(kMaxRequestBytes) +
                          " bytes without a newline"}});
      close();
    }
  }

  void handle(std::string_view line) {
    uint64_t seq = next_request++;
    if (line.size() > kMaxRequestBytes) {
      send(seq, {{"ok", false}, {"error", "request too large"}});
      return;
    }
    nlohmann::json request = nlohmann::json::parse(line, nullptr, false);
    if (request.is_discarded() || !request.is_object()) {
      send(seq, {{"ok", false}, {"error", "malformed request: expected one JSON object per line"}});
      return;
    }
    std::weak_ptr<Connection> weak = shared_from_this();
    server->handler_(request, [weak, seq](nlohmann::json reply) {
      if (auto conn = weak.lock()) conn->send(seq, reply);
    });
  }
};

ControlServer::ControlServer(uv_loop_t* loop, std::string path, Handler handler)
    : loop_(loop), path_(std::move(path)), handler_(std::move(handler)) {}

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
  started_ = true;
  int rc = uv_pipe_bind(&server_, path_.c_str());
  if (rc == 0) {
    ::chmod(path_.c_str(), 0660);
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&server_), 64, [](uv_stream_t* s, int status) {
      if (status == 0) static_cast<ControlServer*>(s->data)->on_connection();
    });
  }
  if (rc != 0) return "cannot listen on the control socket " + path_ + ": " + uv_strerror(rc);
  return {};
}

void ControlServer::on_connection() {
  if (closed_) return;
  auto conn = std::make_shared<Connection>();
  conn->server = this;
  uv_pipe_init(loop_, &conn->pipe, 0);
  conn->pipe.data = conn.get();
  conn->self_while_open = conn;
  connections_.insert(conn);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&server_),
                reinterpret_cast<uv_stream_t*>(&conn->pipe)) != 0) {
    conn->close();
    return;
  }
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&conn->pipe),
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
}

void ControlServer::close() {
  if (closed_) return;
  closed_ = true;
  auto conns = connections_;
  for (const auto& c : conns) c->close();
  if (started_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
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
