#pragma once
// A raw client of the control socket, for requests the CLI would never send (e2e tests).

#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "tests/e2e/harness.h"

namespace e2e {

class ControlClient {
 public:
  int fd() const { return fd_; }

  explicit ControlClient(const std::string& socket_path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      int err = errno;
      ::close(fd_);
      throw std::runtime_error("connect " + socket_path + ": " + std::strerror(err));
    }
  }
  ~ControlClient() { ::close(fd_); }
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Sends `data`; false if the daemon closed the connection before taking all of it.
  bool send(std::string_view data, milliseconds timeout = milliseconds(10000)) {
    Clock::time_point deadline = Clock::now() + timeout;
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        data.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) return false;
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        throw std::runtime_error(std::string("send: ") + std::strerror(errno));
      }
      if (!wait_for(POLLOUT, deadline)) throw std::runtime_error("send: timed out");
    }
    return true;
  }

  // The next reply line, parsed; nullopt once the daemon has closed the connection.
  std::optional<nlohmann::json> reply(milliseconds timeout = milliseconds(10000)) {
    Clock::time_point deadline = Clock::now() + timeout;
    for (;;) {
      size_t nl = inbox_.find('\n');
      if (nl != std::string::npos) {
        std::string line = inbox_.substr(0, nl);
        inbox_.erase(0, nl + 1);
        return nlohmann::json::parse(line);
      }
      if (closed_) return std::nullopt;
      if (!wait_for(POLLIN, deadline)) throw std::runtime_error("no reply within the deadline");
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        inbox_.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno == ECONNRESET) {
        closed_ = true;  // a reset after closing on unread input reads as the end, too
      } else if (errno != EAGAIN && errno != EINTR) {
        throw std::runtime_error(std::string("recv: ") + std::strerror(errno));
      }
    }
  }

  nlohmann::json request(const nlohmann::json& r) {
    REQUIRE(send(r.dump() + "\n"));
    std::optional<nlohmann::json> answer = reply();
    REQUIRE(answer.has_value());
    return *answer;
  }

 private:
  bool wait_for(short events, Clock::time_point deadline) {
    for (;;) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd_, events, 0};
      int rc = ::poll(&p, 1, static_cast<int>(left));
      if (rc > 0) return true;
      if (rc < 0 && errno != EINTR) return false;
    }
  }

  int fd_ = -1;
  std::string inbox_;
  bool closed_ = false;
};

}  // namespace e2e
