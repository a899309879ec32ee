#include "daemon/notify_transports.h"

#include <curl/curl.h>
#include <sys/wait.h>

#include <chrono>
#include <memory>
#include <mutex>

#include "core/transforms/subprocess.h"
#include "daemon/retry_after.h"

#ifndef DOCPIPE_VERSION
#define DOCPIPE_VERSION "dev"
#endif

namespace docpipe {
namespace {

using Kind = DeliveryOutcome::Kind;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

// Printable ASCII of the answer's first bytes, for one log field and the report.
std::string quote_answer(const std::string& answer, bool truncated) {
  std::string out;
  for (char c : answer) {
    const auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  if (truncated) out += "...";
  return out;
}

struct Answer {
  std::string head;  // at most kMaxAnswerBytes
  bool truncated = false;
  // Retry-After of the last response (an interim 100's is dropped), at most kMaxRetryAfterBytes
  // of it and a mark: whatever a receiver sends, this stays under 80 bytes.
  std::string retry_after;
  bool retry_after_seen = false;
  bool retry_after_repeated = false;
};

bool iequals_prefix(std::string_view line, std::string_view name) {
  if (line.size() < name.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = line[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != name[i]) return false;
  }
  return true;
}

// libcurl hands each header line of each response (status line first, CRLF included).
size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<Answer*>(user);
  const size_t bytes = size * n;
  std::string_view line(data, bytes);
  if (iequals_prefix(line, "http/")) {  // a new response: what an interim one said is void
    a->retry_after.clear();
    a->retry_after_seen = false;
    a->retry_after_repeated = false;
    return bytes;
  }
  constexpr std::string_view kName = "retry-after:";
  if (!iequals_prefix(line, kName)) return bytes;
  std::string_view value = line.substr(kName.size());
  // The field's value without the whitespace around it (and the line's CRLF).
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() &&
         std::string_view(" \t\r\n").find(value.back()) != std::string_view::npos) {
    value.remove_suffix(1);
  }
  if (a->retry_after_seen) {
    // Two fields: joined as HTTP combines them, which reads as no value; more add nothing.
    if (!a->retry_after_repeated) a->retry_after += ", ...";
    a->retry_after_repeated = true;
    return bytes;
  }
  a->retry_after_seen = true;
  a->retry_after = value.substr(0, kMaxRetryAfterBytes);
  if (value.size() > kMaxRetryAfterBytes) a->retry_after += "...";  // too long to be valid
  return bytes;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<Answer*>(user);
  const size_t bytes = size * n;
  const size_t room = kMaxAnswerBytes - std::min(kMaxAnswerBytes, a->head.size());
  a->head.append(data, std::min(room, bytes));
  if (bytes > room) a->truncated = true;
  return bytes;  // the rest is read and dropped: the connection ends cleanly
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<const std::atomic<bool>*>(user)->load() ? 1 : 0;  // 1 aborts the transfer
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

std::string lower(std::string s) {
  for (char& c : s) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  return s;
}

// The host and port libcurl will connect to, which must be those validation allowed: a URL
// two parsers read differently must not reach another host than the allow-list let through.
std::string check_curl_url(CURLU* u, const WebhookUrl& ours) {
  char* host = nullptr;
  char* port = nullptr;
  std::string problem;
  if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
    problem = "libcurl finds no host or port in the URL";
  } else {
    std::string h = lower(host);
    if (!h.empty() && h.front() != '[' && h.find(':') != std::string::npos) h = "[" + h + "]";
    if (h != ours.host || std::string(port) != std::to_string(ours.port)) {
      problem = "libcurl reads the URL's host as " + h + ":" + port + ", not " + ours.authority() +
                "; refused";
    }
  }
  curl_free(host);
  curl_free(port);
  return problem;
}

}  // namespace

void init_webhook_transport() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

DeliveryOutcome WebhookTransport::deliver(const NotifyAttempt& attempt,
                                          const std::atomic<bool>& stop) {
  init_webhook_transport();
  std::string problem;
  std::optional<WebhookUrl> url = parse_webhook_url(attempt.target, problem);
  if (!url) return {.kind = Kind::kFailed, .error = "invalid webhook URL: " + problem};
  std::unique_ptr<CURLU, CurlDeleter> u(curl_url());
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!u || !curl) {
    return {.kind = Kind::kRetry,
            .error = "libcurl could not set up a request (out of memory)",
            .failure = CommandFailure::kCannotStart};
  }
  if (curl_url_set(u.get(), CURLUPART_URL, attempt.target.c_str(), 0) != CURLUE_OK) {
    return {.kind = Kind::kFailed, .error = "libcurl cannot read the webhook URL"};
  }
  problem = check_curl_url(u.get(), *url);
  if (!problem.empty()) return {.kind = Kind::kFailed, .error = problem};

  std::unique_ptr<curl_slist, CurlDeleter> headers;
  for (const std::string& h :
       {std::string("Content-Type: application/json"),
        std::string("User-Agent: docpipe/") + DOCPIPE_VERSION, "X-Docpipe-Job: " + attempt.job_id,
        "X-Docpipe-Attempt: " + std::to_string(attempt.attempt),
        // No "Expect: 100-continue" round trip (curl waits up to 1 s for it on larger bodies).
        std::string("Expect:")}) {
    curl_slist* next = curl_slist_append(headers.get(), h.c_str());
    if (next == nullptr) {
      return {.kind = Kind::kRetry,
              .error = "libcurl could not set up a request (out of memory)",
              .failure = CommandFailure::kCannotStart};
    }
    (void)headers.release();
    headers.reset(next);
  }
  Answer answer;
  char error[CURL_ERROR_SIZE] = {0};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_CURLU, u.get());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_PROXY, "");  // never a proxy from the environment
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(attempt.timeout_ms));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(attempt.timeout_ms));
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &answer);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, attempt.body->data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(attempt.body->size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &stop);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);

  const CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_ABORTED_BY_CALLBACK && stop.load()) return {.kind = Kind::kAborted};
  if (rc != CURLE_OK) {
    std::string what = error[0] != 0 ? error : curl_easy_strerror(rc);
    const bool timeout = rc == CURLE_OPERATION_TIMEDOUT;
    return {.kind = Kind::kRetry,
            .error = (timeout ? "no answer within " + std::to_string(attempt.timeout_ms) + " ms: "
                              : std::string("cannot send: ")) +
                     what,
            .failure = timeout ? CommandFailure::kTimedOut : CommandFailure::kCannotStart};
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  DeliveryOutcome out;
  out.http_status = static_cast<int>(status);
  if (answer.retry_after_seen) out.retry_after = answer.retry_after;
  if (status >= 200 && status < 300) {
    out.kind = Kind::kDelivered;
    return out;
  }
  std::string said = quote_answer(answer.head, answer.truncated);
  out.error = "HTTP " + std::to_string(status) + (said.empty() ? "" : "; answer: " + said);
  if (status >= 300 && status < 400) {
    out.kind = Kind::kFailed;
    out.error += " (a redirect; docpipe sends only to the URL the job names)";
  } else if (status >= 500 || status == 408 || status == 429) {
    out.kind = Kind::kRetry;
    out.failure = CommandFailure::kErrorAnswer;
  } else {
    out.kind = Kind::kFailed;  // 4xx: the request is wrong for this receiver; resending is no use
  }
  return out;
}

DeliveryOutcome CommandTransport::deliver(const NotifyAttempt& attempt,
                                          const std::atomic<bool>& stop) {
  const std::string name = "command \"" + attempt.target + "\"";
  Result<std::unique_ptr<Subprocess>> started = Subprocess::start(attempt.command.argv);
  if (!started) {
    return {.kind = Kind::kRetry,
            .error = name + ": " + started.error().message,
            .failure = CommandFailure::kCannotStart};
  }
  Subprocess& proc = **started;
  const SteadyClock::time_point deadline =
      SteadyClock::now() + milliseconds(attempt.command.timeout_ms);
  std::string_view input = *attempt.body;
  std::string out;  // what the command prints is not kept
  for (;;) {
    if (stop.load()) {
      proc.kill_and_reap();
      return {.kind = Kind::kAborted};
    }
    if (input.empty() && proc.stdin_open()) proc.close_stdin();
    if (proc.done()) break;
    const SteadyClock::time_point now = SteadyClock::now();
    if (now >= deadline) {
      proc.kill_and_reap();
      std::string tail = proc.stderr_tail();
      return {.kind = Kind::kRetry,
              .error = name + " timed out after " + std::to_string(attempt.command.timeout_ms) +
                       " ms and was killed" + (tail.empty() ? "" : "; stderr: " + tail),
              .failure = CommandFailure::kTimedOut};
    }
    const auto left = std::chrono::ceil<milliseconds>(deadline - now);
    Status st = proc.pump(input, out, std::min(milliseconds(50), left));
    out.clear();
    if (!st) {
      proc.kill_and_reap();
      return {.kind = Kind::kRetry,
              .error = name + ": " + st.error().message,
              .failure = CommandFailure::kCrashed};
    }
  }
  Result<int> status = proc.reap();
  if (!status) {
    return {.kind = Kind::kRetry,
            .error = name + ": " + status.error().message,
            .failure = CommandFailure::kCrashed};
  }
  if (WIFEXITED(*status) && WEXITSTATUS(*status) == 0) return {.kind = Kind::kDelivered};
  std::string tail = proc.stderr_tail();
  return {.kind = Kind::kRetry,
          .error = name + " " + describe_wait_status(*status) +
                   (tail.empty() ? "" : "; stderr: " + tail),
          .failure = WIFEXITED(*status) ? CommandFailure::kExited : CommandFailure::kCrashed};
}

}  // namespace docpipe
