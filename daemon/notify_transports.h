#pragma once
// The real receivers of completion notifications (daemon/notifier.h):
//
// - WebhookTransport: one HTTP POST of the report JSON per attempt, through libcurl: http and
//   https only (also for redirects, which are never followed), no proxy from the environment, the
//   URL read by libcurl checked against what validation allowed (host and port) before it
//   connects, a timeout for the whole attempt, and the receiver's answer kept only up to
//   kMaxAnswerBytes (for the error message), the rest read and dropped.
// - CommandTransport: the allow-listed command run as exec runs it (core/transforms/
//   subprocess.h: no shell, its own process group, a clean environment, its timeout_ms, killed
//   with its descendants), the report JSON on its stdin; exit 0 is delivered.
//
// Both return kAborted soon after the notifier's stop flag is set.

#include "daemon/notifier.h"

namespace docpipe {

// How much of a receiver's answer an error message quotes.
inline constexpr size_t kMaxAnswerBytes = 256;

// Sets libcurl up once for the process (curl_global_init is not thread-safe before 7.84 with
// every TLS backend): called by the daemon at start, before any thread sends.
void init_webhook_transport();

class WebhookTransport : public NotifyTransport {
 public:
  DeliveryOutcome deliver(const NotifyAttempt& attempt, const std::atomic<bool>& stop) override;
};

class CommandTransport : public NotifyTransport {
 public:
  DeliveryOutcome deliver(const NotifyAttempt& attempt, const std::atomic<bool>& stop) override;
};

}  // namespace docpipe
