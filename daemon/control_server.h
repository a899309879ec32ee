#pragma once
// The control socket: a Unix stream socket (uv_pipe) speaking newline-delimited JSON, one
// request per line, one reply line per request, in order. Requests larger than kMaxRequestBytes
// or not JSON objects get an error reply; the connection is closed after an oversized one. A
// client that disconnects early never stalls or crashes the daemon: replies to it are dropped.

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_set>

namespace docpipe {

class ControlServer {
 public:
  static constexpr size_t kMaxRequestBytes = 4u << 20;

  // Replies exactly once; may be called later (after threadpool work), or never if the client
  // went away. Always called on the loop thread.
  using Reply = std::function<void(nlohmann::json)>;
  using Handler = std::function<void(const nlohmann::json& request, Reply reply)>;

  ControlServer(uv_loop_t* loop, std::string path, Handler handler);
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Binds (replacing a stale socket file that nobody answers on), chmod 0660, listens.
  // Returns a message on failure (e.g. another daemon answers on the path), empty on success.
  std::string start();
  // Closes the listener and every connection; the loop finishes the closes.
  void close();

 private:
  struct Connection;
  void on_connection();

  uv_loop_t* loop_;
  std::string path_;
  Handler handler_;
  uv_pipe_t server_{};
  bool started_ = false;
  bool closed_ = false;
  std::unordered_set<std::shared_ptr<Connection>> connections_;
};

// Client side, for the CLI (blocking, no libuv): one request, one reply. Throws
// std::runtime_error with a clear message when the daemon cannot be reached or times out.
nlohmann::json control_request(const std::string& socket_path, const nlohmann::json& request,
                               int timeout_ms);

// True when something accepts connections on `socket_path`.
bool control_socket_answers(const std::string& socket_path);

}  // namespace docpipe
