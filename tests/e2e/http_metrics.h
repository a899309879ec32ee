#pragma once
// The scraping side of the end-to-end tests: a minimal HTTP/1.0 client for GET /metrics and a
// parser for the Prometheus text exposition format, written independently of prometheus-cpp so
// that the tests check what a real scraper would see.

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace e2e {

// HTTP/1.0 GET over a loopback TCP connection (enough for /metrics).
struct HttpResponse {
  int status = 0;
  std::string headers;
  std::string body;
};
HttpResponse http_get(const std::string& host_port, const std::string& path,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
// Any method, with extra header lines ("Authorization: Bearer ...", without CRLF).
HttpResponse http_request(const std::string& host_port, const std::string& method,
                          const std::string& path, const std::vector<std::string>& headers,
                          std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

// One sample of the Prometheus text exposition format: name{label="value",...} value.
struct MetricSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses the exposition text; throws naming the line on a malformed one.
std::vector<MetricSample> parse_prometheus_text(std::string_view text);

// The value of the sample with exactly these labels, if present.
std::optional<double> metric_value(const std::vector<MetricSample>& samples, std::string_view name,
                                   const std::map<std::string, std::string>& labels = {});

}  // namespace e2e
