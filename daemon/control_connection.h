#pragma once
// Internal to ControlServer (control_server.cc, control_connection.cc): one client connection.
// It splits the byte stream into NDJSON request lines, takes a request only while the client
// keeps up with its replies (ControlLimits), and writes the replies in request order.
//
// Ownership: the server's set holds it while its pipe is open, and pending writes and threadpool
// parses hold it too; replies given later hold it weakly. Its pipe is a UvHandle whose close
// callback drops the set's reference, so the connection is freed only once libuv is done with it.

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "daemon/control_server.h"

namespace docpipe {

inline nlohmann::json control_error_reply(const std::string& message) {
  return {{"ok", false}, {"error", message}};
}

inline std::string control_reply_line(const nlohmann::json& reply) {
  return reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

struct ControlServer::Connection : std::enable_shared_from_this<Connection> {
  using Pipe = UvHandle<uv_pipe_t>;

  ControlServer* server = nullptr;
  Pipe pipe;
  Credentials peer;
  std::string inbox;   // bytes received and not yet taken as requests
  size_t scanned = 0;  // inbox[0, scanned) holds no newline
  bool reading = false;
  bool pumping = false;  // inside pump(): replies given synchronously must not re-enter it
  // Replies go out in request order even when a later request is answered first.
  uint64_t next_request = 0;
  uint64_t next_reply = 0;
  std::map<uint64_t, std::string> ready;
  size_t in_flight = 0;    // requests taken whose reply has not been given yet
  size_t ready_bytes = 0;  // bytes in `ready`, waiting for an earlier reply
  Clock::time_point last_activity;

  static Connection* of(uv_stream_t* s) {
    return Pipe::owner_of<Connection>(reinterpret_cast<uv_handle_t*>(s));
  }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(pipe.get()); }
  const ControlLimits& limits() const { return server->limits_; }
  bool open() const { return pipe.is_open(); }

  // Opens the pipe; the server's set keeps the connection until the pipe's close callback.
  int open_on(uv_loop_t* loop);
  void close();
  // Whether another request may be taken: few enough unanswered, and the client keeps up with
  // reading the replies.
  bool can_take() const {
    return in_flight < limits().max_in_flight && backlog() < limits().backlog_pause_bytes;
  }
  // Reply bytes the client has not taken yet: waiting for their turn, or queued for the socket
  // (libuv writes what the kernel takes at once and queues only the rest).
  size_t backlog() const { return ready_bytes + pipe.get()->write_queue_size; }
  void update_reading();
  void start_reading();
  void send(uint64_t seq, const nlohmann::json& reply);
  void write(std::string data);
  void on_data(const char* data, size_t n);
  // Takes the complete lines in the inbox while can_take(), then reads on or pauses.
  void pump();
  void take(std::string_view line);
  void dispatch(uint64_t seq, Result<ControlRequest> request);
};

}  // namespace docpipe
