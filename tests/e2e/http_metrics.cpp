#include "tests/e2e/http_metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace e2e {

namespace {

std::runtime_error sys_error(const std::string& what, int err) {
  return std::runtime_error(what + ": " + std::strerror(err));
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string dechunk(std::string_view body) {
  std::string out;
  size_t pos = 0;
  for (;;) {
    size_t eol = body.find("\r\n", pos);
    if (eol == std::string_view::npos) throw std::runtime_error("http: truncated chunked body");
    size_t size = std::strtoul(std::string(body.substr(pos, eol - pos)).c_str(), nullptr, 16);
    pos = eol + 2;
    if (size == 0) return out;
    if (pos + size > body.size()) throw std::runtime_error("http: truncated chunk");
    out.append(body.substr(pos, size));
    pos += size + 2;
  }
}

}  // namespace

HttpResponse http_get(const std::string& host_port, const std::string& path,
                      std::chrono::milliseconds timeout) {
  return http_request(host_port, "GET", path, {}, timeout);
}

HttpResponse http_request(const std::string& host_port, const std::string& method,
                          const std::string& path, const std::vector<std::string>& headers,
                          std::chrono::milliseconds timeout) {
  size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("http: bad address " + host_port);
  std::string host = host_port.substr(0, colon);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(host_port.substr(colon + 1))));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    throw std::runtime_error("http: not an IPv4 address: " + host);
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw sys_error("socket", errno);
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    ::close(fd);
    throw sys_error("http: connect " + host_port, err);
  }
  std::string request = method + " " + path + " HTTP/1.0\r\nHost: " + host_port + "\r\n";
  for (const std::string& h : headers) request += h + "\r\n";
  request += "\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    int err = errno;
    ::close(fd);
    throw sys_error("http: send to " + host_port, err);
  }
  std::string raw;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      throw sys_error("http: read from " + host_port, err);
    }
    if (n == 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);

  HttpResponse r;
  size_t split = raw.find("\r\n\r\n");
  if (raw.compare(0, 5, "HTTP/") != 0 || split == std::string::npos) {
    throw std::runtime_error("http: malformed response from " + host_port + ": " +
                             raw.substr(0, 200));
  }
  r.status = std::atoi(raw.c_str() + raw.find(' ') + 1);
  r.headers = raw.substr(0, split);
  r.body = raw.substr(split + 4);
  if (lower(r.headers).find("transfer-encoding: chunked") != std::string::npos) {
    r.body = dechunk(r.body);
  }
  return r;
}

std::vector<MetricSample> parse_prometheus_text(std::string_view text) {
  std::vector<MetricSample> out;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    auto bad = [&](const char* why) {
      return std::runtime_error("metrics line " + std::to_string(line_no) + ": " + why + ": " +
                                std::string(line));
    };
    MetricSample s;
    size_t i = 0;
    auto name_char = [](char c, bool first) {
      return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
             (!first && std::isdigit(static_cast<unsigned char>(c)));
    };
    while (i < line.size() && name_char(line[i], i == 0)) ++i;
    if (i == 0) throw bad("no metric name");
    s.name = std::string(line.substr(0, i));
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t start = i;
        while (i < line.size() && name_char(line[i], i == start)) ++i;
        std::string key(line.substr(start, i - start));
        if (key.empty() || i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') {
          throw bad("bad label");
        }
        i += 2;
        std::string value;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\' && i + 1 < line.size()) {
            ++i;
            value += line[i] == 'n' ? '\n' : line[i];
          } else {
            value += line[i];
          }
          ++i;
        }
        if (i >= line.size()) throw bad("unterminated label value");
        ++i;  // closing quote
        s.labels[key] = value;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) throw bad("unterminated label set");
      ++i;  // '}'
    }
    if (i >= line.size() || line[i] != ' ') throw bad("no value");
    std::string rest(line.substr(i + 1));
    char* end = nullptr;
    s.value = std::strtod(rest.c_str(), &end);
    if (end == rest.c_str() || (*end != '\0' && *end != ' ')) throw bad("bad value");
    out.push_back(std::move(s));
  }
  return out;
}

std::optional<double> metric_value(const std::vector<MetricSample>& samples, std::string_view name,
                                   const std::map<std::string, std::string>& labels) {
  for (const MetricSample& s : samples) {
    if (s.name == name && s.labels == labels) return s.value;
  }
  return std::nullopt;
}

}  // namespace e2e
