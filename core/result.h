#pragma once
// Result<T>: a value or an Error, the data-path error type (GCC 12 has no std::expected).
// Data-path code returns Result/Status; exceptions are kept for start-up and config parsing.

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace docpipe {

// What kind of failure an Error is; the pipeline uses it to decide whether to retry.
enum class ErrorCode {
  kInvalidArgument,  // bad parameter or request
  kNotFound,         // ENOENT and friends
  kPermission,       // EACCES, EPERM, or outside an allowed root
  kExists,           // output exists and if_exists says fail
  kIo,               // other I/O failure (errno set)
  kCorruptInput,     // a decoder or parser refused the document
  kTooLarge,         // a size limit was hit
  kCancelled,
  kTimeout,
  kInternal,
  // An external command failed (crashed, exited non-zero, timed out, could not start) while its
  // circuit breaker watched it: worth another attempt, which waits while the breaker is open.
  kCommandFailed,
  // A command's circuit breaker is open (or its half-open probe runs): the document was not run
  // and waits for it. The pipeline never reports it as an outcome and charges no attempt.
  kUnavailable,
};

const char* error_code_name(ErrorCode code);

// An error with a message that names the file or thing and the cause.
struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  int sys_errno = 0;  // the errno behind it, 0 if none
};

Error make_error(ErrorCode code, std::string message);
// "what: strerror(err)", with the code derived from err.
Error errno_error(const std::string& what, int err);

// Worth another attempt: resource exhaustion or a passing I/O fault (EAGAIN, EINTR, EMFILE,
// ENFILE, ENOSPC, EDQUOT, EIO, ENOMEM, EBUSY, ETIMEDOUT), or a kIo error without an errno.
// Missing files, permissions, corrupt input and transform errors are permanent, but for
// kCommandFailed (a command that a circuit breaker watches), which is transient.
bool is_transient(const Error& error);

// The daemon itself ran short (EMFILE, ENFILE, ENOMEM): not the fault of what it was working on,
// so whatever failed is tried again later rather than refused.
bool is_resource_shortage(int err);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit like std::expected
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & {
    assert(has_value());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const {
    assert(!has_value());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const {
    assert(!ok_);
    return error_;
  }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status ok() { return Status(); }

}  // namespace docpipe
