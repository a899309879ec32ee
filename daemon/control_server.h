#pragma once
// The control socket: a Unix stream socket (uv_pipe) speaking newline-delimited JSON, one
// request per line, one reply line per request, in order. Every connection knows its peer
// (SO_PEERCRED, SO_PEERGROUPS) and hands it to the handler with each request.
//
// One client cannot cost the daemon more than a bounded share (limits in ControlLimits):
// - at most max_connections at once; one more gets an error line and is closed;
// - a connection with no request in flight that sends nothing for idle_timeout_ms is closed;
// - requests are parsed one at a time and taken only while the connection has fewer than
//   max_in_flight unanswered requests and fewer than backlog_pause_bytes of replies the client
//   has not read; otherwise the daemon stops reading from it (the kernel's socket buffer then
//   blocks the client) until it catches up. A backlog above backlog_max_bytes closes it.
// - a line over kMaxControlRequestBytes gets an error and the connection is closed; lines over
//   kInlineParseBytes are parsed on the threadpool, never on the loop thread.
// A client that disconnects early never stalls or crashes the daemon: replies to it are dropped.
//
// Every handle is a UvHandle: the listener, the sweep timer and each connection's pipe (a
// connection frees itself in its close callback). Idleness is measured on the Clock it is given.
// Files: control_server.cc (listener, sweep), control_connection.cc (one client's NDJSON framing
// and flow control), control_socket_client.cc (the CLI's side).

#include <uv.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_set>

#include "core/clock.h"
#include "core/credentials.h"
#include "daemon/control_request.h"
#include "daemon/uv_handle.h"

namespace docpipe {

struct ControlLimits {
  size_t max_connections = 64;
  int64_t idle_timeout_ms = 60000;
  size_t max_in_flight = 16;              // unanswered requests per connection
  size_t backlog_pause_bytes = 1u << 20;  // unread reply bytes that pause reading
  size_t backlog_max_bytes = 64u << 20;   // unread reply bytes that close the connection
};

class ControlServer {
 public:
  static constexpr size_t kMaxRequestBytes = kMaxControlRequestBytes;
  // Longer lines are parsed (and a submitted job printed) on the threadpool.
  static constexpr size_t kInlineParseBytes = 64u << 10;

  // Replies exactly once; may be called later (after threadpool work), or never if the client
  // went away. Always called on the loop thread.
  using Reply = std::function<void(nlohmann::json)>;
  using Handler = std::function<void(ControlRequest request, const Credentials& peer, Reply reply)>;

  // Its handles must be closed (close() and the loop turned until its callback) before it is
  // destroyed: destroying an open server aborts (UvHandle).
  ControlServer(uv_loop_t* loop, std::string path, ControlLimits limits, Handler handler,
                const Clock& clock = system_clock());
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Binds (replacing a stale socket file that nobody answers on), chmod 0660, listens.
  // Returns a message on failure (e.g. another daemon answers on the path), empty on success.
  std::string start();
  // Closes the listener and every connection; the loop finishes the closes. The first close()
  // calls `on_closed` once the listener, the timer and every connection are closed (at once when
  // nothing was open); a later close() calls nothing back.
  void close(std::function<void()> on_closed = nullptr);

  // Takes effect for new connections and at the next idle sweep (config reload).
  void set_limits(ControlLimits limits);
  size_t connection_count() const { return open_connections_; }
  // Closes the connections with no request in flight that were quiet for idle_timeout_ms by the
  // clock (what the sweep timer does; public for tests on a fake clock).
  void close_idle();

 private:
  struct Connection;
  void on_connection();
  void arm_sweep();
  void maybe_closed();  // calls on_closed_ once everything is closed

  uv_loop_t* loop_;
  std::string path_;
  ControlLimits limits_;
  Handler handler_;
  const Clock& clock_;
  UvHandle<uv_pipe_t> listener_;
  UvHandle<uv_timer_t> sweep_;
  std::optional<Clock::time_point> last_refusal_log_;
  std::unordered_set<std::shared_ptr<Connection>> connections_;  // until their close callback
  size_t open_connections_ = 0;                                  // of those, not closing
  std::function<void()> on_closed_;
};

// Client side, for the CLI (blocking, no libuv): one request, one reply. Throws
// std::runtime_error with a clear message when the daemon cannot be reached or times out.
nlohmann::json control_request(const std::string& socket_path, const nlohmann::json& request,
                               int timeout_ms);

// True when something accepts connections on `socket_path`.
bool control_socket_answers(const std::string& socket_path);

}  // namespace docpipe
