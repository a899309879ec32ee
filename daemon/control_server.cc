#include "daemon/control_server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "daemon/control_connection.h"
#include "daemon/log.h"
#include "daemon/peer_credentials.h"

namespace docpipe {

ControlServer::ControlServer(uv_loop_t* loop, std::string path, ControlLimits limits,
                             Handler handler, const Clock& clock)
    : loop_(loop),
      path_(std::move(path)),
      limits_(limits),
      handler_(std::move(handler)),
      clock_(clock) {}

std::string ControlServer::start() {
  if (listener_.state() != UvHandle<uv_pipe_t>::State::kUnopened) return {};
  if (control_socket_answers(path_)) {
    return "another process answers on the control socket " + path_ +
           " (is another docpipe running on this spool?)";
  }
  ::unlink(path_.c_str());  // a stale socket from a crash
  int rc = listener_.open(this, [this](uv_pipe_t* p) { return uv_pipe_init(loop_, p, 0); });
  if (rc == 0) rc = sweep_.open(this, [this](uv_timer_t* t) { return uv_timer_init(loop_, t); });
  if (rc == 0) rc = uv_pipe_bind(listener_.get(), path_.c_str());
  if (rc == 0) {
    // Who may connect is the socket's group (see docs/design-rights.md); what a caller may see
    // and do is decided per request from its credentials.
    ::chmod(path_.c_str(), 0660);
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener_.get()), 64,
                   [](uv_stream_t* s, int status) {
                     auto* h = reinterpret_cast<uv_handle_t*>(s);
                     if (status == 0)
                       UvHandle<uv_pipe_t>::owner_of<ControlServer>(h)->on_connection();
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
      sweep_.get(),
      [](uv_timer_t* t) { UvHandle<uv_timer_t>::owner_of<ControlServer>(t)->close_idle(); }, every,
      every);
}

void ControlServer::set_limits(ControlLimits limits) {
  limits_ = limits;
  if (sweep_.is_open() && listener_.is_open()) arm_sweep();
}

void ControlServer::close_idle() {
  Clock::time_point now = clock_.now();
  auto conns = connections_;
  for (const auto& c : conns) {
    if (!c->open() || c->in_flight > 0) continue;
    if (now - c->last_activity >= std::chrono::milliseconds(limits_.idle_timeout_ms)) {
      log_debug("closing an idle control connection", {{"uid", std::to_string(c->peer.uid)}});
      c->close();
    }
  }
}

void ControlServer::on_connection() {
  if (!listener_.is_open()) return;
  auto conn = std::make_shared<Connection>();
  conn->server = this;
  if (conn->open_on(loop_) != 0) return;
  conn->last_activity = clock_.now();
  if (uv_accept(reinterpret_cast<uv_stream_t*>(listener_.get()), conn->stream()) != 0) {
    conn->close();
    return;
  }
  // Refused at once with a reason: the descriptor is given back right away, and the client
  // learns why instead of hanging.
  auto refuse = [&conn](const std::string& message) {
    std::string line = control_reply_line(control_error_reply(message));
    uv_buf_t buf = uv_buf_init(line.data(), static_cast<unsigned>(line.size()));
    uv_try_write(conn->stream(), &buf, 1);
    conn->close();
  };
  if (open_connections_ > limits_.max_connections) {
    Clock::time_point now = clock_.now();
    if (!last_refusal_log_ || now - *last_refusal_log_ >= std::chrono::seconds(10)) {
      last_refusal_log_ = now;
      log_warn("control connection refused: too many open",
               {{"max_control_connections", std::to_string(limits_.max_connections)}});
    }
    refuse("too many control connections (max_control_connections = " +
           std::to_string(limits_.max_connections) + "); try again later");
    return;
  }
  uv_os_fd_t fd = -1;
  Result<Credentials> peer = uv_fileno(conn->pipe.base(), &fd) == 0
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

void ControlServer::close(std::function<void()> on_closed) {
  if (listener_.state() == UvHandle<uv_pipe_t>::State::kUnopened) {
    if (on_closed) on_closed();  // never started: nothing to close
    return;
  }
  if (!listener_.is_open()) return;  // closing or closed: the first close() owns the callback
  on_closed_ = std::move(on_closed);
  auto conns = connections_;
  for (const auto& c : conns) c->close();
  listener_.close([this] { maybe_closed(); });
  sweep_.close([this] { maybe_closed(); });
  ::unlink(path_.c_str());
}

void ControlServer::maybe_closed() {
  if (listener_.in_use() || sweep_.in_use() || !connections_.empty() || !on_closed_) return;
  std::function<void()> done = std::move(on_closed_);
  on_closed_ = nullptr;
  done();
}

}  // namespace docpipe
