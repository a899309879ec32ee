#pragma once
// A real HTTP receiver for the webhook tests: a loopback TCP server on a free port, run by a
// thread of the test process. It accepts a connection, reads one request (headers, then
// Content-Length bytes of body), answers with the next scripted status (the last one repeats) and
// closes. Every request is kept for the test to look at, with the time it came in.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace e2e {

struct ReceivedRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::chrono::steady_clock::time_point received_at;  // once the whole request was read
};

// An answer: a status, and extra header lines ("Retry-After: 2\r\n").
struct Reply {
  Reply(int status, std::string headers = "")  // NOLINT: a bare status reads as a Reply
      : status(status), headers(std::move(headers)) {}
  int status;
  std::string headers;
};

class HttpReceiver {
 public:
  explicit HttpReceiver(std::vector<Reply> statuses) : statuses_(std::move(statuses)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;  // a free port
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ::close(fd_);
      throw std::runtime_error("bind/listen: " + std::string(std::strerror(errno)));
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~HttpReceiver() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  HttpReceiver(const HttpReceiver&) = delete;
  HttpReceiver& operator=(const HttpReceiver&) = delete;

  int port() const { return port_; }
  std::string host_port() const { return "127.0.0.1:" + std::to_string(port_); }

  // From now on answer these (the last one repeats).
  void answer(std::vector<Reply> statuses) {
    std::lock_guard lock(mu_);
    statuses_ = std::move(statuses);
    next_ = 0;
  }
  std::vector<ReceivedRequest> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  size_t count() const {
    std::lock_guard lock(mu_);
    return requests_.size();
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      handle(c);
      ::close(c);
    }
  }

  // Reads until the headers and Content-Length bytes of body are in, or 5 s pass.
  void handle(int c) {
    std::string data;
    size_t header_end = std::string::npos;
    size_t want = 0;
    char buf[4096];
    for (int waited = 0; waited < 5000;) {
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) {
        waited += 50;
        if (stop_) return;
        continue;
      }
      ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) break;
      data.append(buf, static_cast<size_t>(n));
      if (header_end == std::string::npos) {
        header_end = data.find("\r\n\r\n");
        if (header_end != std::string::npos) {
          ReceivedRequest r = parse_head(data.substr(0, header_end));
          want = r.headers.count("content-length") ? std::stoul(r.headers["content-length"]) : 0;
        }
      }
      if (header_end != std::string::npos && data.size() >= header_end + 4 + want) break;
    }
    if (header_end == std::string::npos) return;
    ReceivedRequest r = parse_head(data.substr(0, header_end));
    r.body = data.substr(header_end + 4, want);
    r.received_at = std::chrono::steady_clock::now();
    Reply reply(200);
    {
      std::lock_guard lock(mu_);
      if (!statuses_.empty()) reply = statuses_[std::min(next_, statuses_.size() - 1)];
      ++next_;
      requests_.push_back(std::move(r));
    }
    const int status = reply.status;
    const std::string body = status < 300 ? "ok\n" : "receiver says no\n";
    const std::string answer = "HTTP/1.1 " + std::to_string(status) +
                               " X\r\nContent-Length: " + std::to_string(body.size()) +
                               "\r\nConnection: close\r\n" + reply.headers + "\r\n" + body;
    (void)!::write(c, answer.data(), answer.size());
  }

  static ReceivedRequest parse_head(const std::string& head) {
    ReceivedRequest r;
    size_t line_end = head.find("\r\n");
    const std::string first = head.substr(0, line_end);
    const size_t sp1 = first.find(' ');
    const size_t sp2 = first.find(' ', sp1 + 1);
    r.method = first.substr(0, sp1);
    r.path = first.substr(sp1 + 1, sp2 - sp1 - 1);
    while (line_end != std::string::npos && line_end + 2 < head.size()) {
      const size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string line = head.substr(start, line_end - start);
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      size_t v = colon + 1;
      while (v < line.size() && line[v] == ' ') ++v;
      r.headers[name] = line.substr(v);
    }
    return r;
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Reply> statuses_;
  size_t next_ = 0;
  std::vector<ReceivedRequest> requests_;
};

}  // namespace e2e
