#include "daemon/control_connection.h"

#include <algorithm>
#include <optional>

#include "daemon/log.h"

namespace docpipe {

int ControlServer::Connection::open_on(uv_loop_t* loop) {
  int rc = pipe.open(this, [loop](uv_pipe_t* p) { return uv_pipe_init(loop, p, 0); });
  if (rc != 0) return rc;
  server->connections_.insert(shared_from_this());
  ++server->open_connections_;
  return 0;
}

void ControlServer::Connection::close() {
  if (!pipe.is_open()) return;
  --server->open_connections_;  // its descriptor is given back now, in uv_close()
  if (reading) uv_read_stop(stream());
  reading = false;
  pipe.close([this] {
    // The set's reference may be the last: the connection is freed when `keep` goes.
    ControlServer* s = server;
    std::shared_ptr<Connection> keep = shared_from_this();
    s->connections_.erase(keep);
    s->maybe_closed();
  });
}

void ControlServer::Connection::update_reading() {
  bool want = open() && can_take();
  if (want == reading) return;
  if (want) {
    start_reading();
  } else {
    uv_read_stop(stream());
    reading = false;
  }
}

void ControlServer::Connection::start_reading() {
  int rc = uv_read_start(
      stream(),
      [](uv_handle_t*, size_t suggested, uv_buf_t* buf) {
        buf->base = new char[suggested];
        buf->len = suggested;
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        Connection* c = of(s);
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

void ControlServer::Connection::send(uint64_t seq, const nlohmann::json& reply) {
  if (!open()) return;
  if (in_flight > 0) --in_flight;
  std::string line = control_reply_line(reply);
  ready_bytes += line.size();
  ready[seq] = std::move(line);
  while (!ready.empty() && ready.begin()->first == next_reply) {
    ready_bytes -= ready.begin()->second.size();
    write(std::move(ready.begin()->second));
    ready.erase(ready.begin());
    ++next_reply;
    if (!open()) return;
  }
  if (backlog() > limits().backlog_max_bytes) {
    log_warn("closing a control connection whose client does not read its replies",
             {{"unread_bytes", std::to_string(backlog())}, {"uid", std::to_string(peer.uid)}});
    close();
    return;
  }
  pump();
}

void ControlServer::Connection::write(std::string data) {
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
    } else if (c.open()) {
      c.last_activity = c.server->clock_.now();
      c.pump();  // the client caught up: take held-back requests
    }
    delete w;
  });
  if (rc != 0) {  // a failed call never calls back
    delete w;
    close();
  }
}

void ControlServer::Connection::on_data(const char* data, size_t n) {
  last_activity = server->clock_.now();
  inbox.append(data, n);
  pump();
}

void ControlServer::Connection::pump() {
  if (!open() || pumping) return;
  pumping = true;
  size_t start = 0;
  while (open() && can_take()) {
    size_t nl = inbox.find('\n', std::max(start, scanned));
    if (nl == std::string::npos) break;
    std::string_view line(inbox.data() + start, nl - start);
    start = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    take(line);
  }
  pumping = false;
  if (!open()) return;
  inbox.erase(0, start);
  scanned = inbox.find('\n') == std::string::npos ? inbox.size() : 0;
  if (scanned > kMaxRequestBytes) {
    // The stream can no longer be split into requests: say so, and hang up.
    inbox.clear();
    scanned = 0;
    uint64_t seq = next_request++;
    ++in_flight;
    send(seq, control_error_reply("request too large: over " + std::to_string(kMaxRequestBytes) +
                                  " bytes without a newline"));
    close();
    return;
  }
  update_reading();
}

void ControlServer::Connection::take(std::string_view line) {
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
    send(seq, control_error_reply("cannot take the request now: " + std::string(uv_strerror(rc))));
  }
}

void ControlServer::Connection::dispatch(uint64_t seq, Result<ControlRequest> request) {
  if (!open()) return;
  if (!request) {
    bool fatal = request.error().code == ErrorCode::kTooLarge;
    send(seq, control_error_reply(request.error().message));
    if (fatal) close();
    return;
  }
  std::weak_ptr<Connection> weak = weak_from_this();
  server->handler_(std::move(*request), peer, [weak, seq](nlohmann::json reply) {
    if (auto conn = weak.lock()) conn->send(seq, reply);
  });
}

}  // namespace docpipe
