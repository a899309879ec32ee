#include "core/result.h"

#include <cerrno>
#include <cstring>

namespace docpipe {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kPermission:
      return "permission";
    case ErrorCode::kExists:
      return "exists";
    case ErrorCode::kIo:
      return "io";
    case ErrorCode::kCorruptInput:
      return "corrupt_input";
    case ErrorCode::kTooLarge:
      return "too_large";
    case ErrorCode::kCancelled:
      return "cancelled";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kInternal:
      return "internal";
    case ErrorCode::kCommandFailed:
      return "command_failed";
    case ErrorCode::kUnavailable:
      return "unavailable";
  }
  return "unknown";
}

Error make_error(ErrorCode code, std::string message) { return Error{code, std::move(message), 0}; }

Error errno_error(const std::string& what, int err) {
  ErrorCode code = ErrorCode::kIo;
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      code = ErrorCode::kNotFound;
      break;
    case EACCES:
    case EPERM:
    case EROFS:
      code = ErrorCode::kPermission;
      break;
    case EEXIST:
      code = ErrorCode::kExists;
      break;
    case EFBIG:
      code = ErrorCode::kTooLarge;
      break;
    default:
      break;
  }
  return Error{code, what + ": " + std::strerror(err), err};
}

bool is_transient(const Error& error) {
  if (error.code == ErrorCode::kCommandFailed) return true;
  switch (error.sys_errno) {
    case 0:
      return error.code == ErrorCode::kIo;
    case EAGAIN:
    case EINTR:
    case EMFILE:
    case ENFILE:
    case ENOSPC:
    case EDQUOT:
    case EIO:
    case ENOMEM:
    case EBUSY:
    case ETIMEDOUT:
      return true;
    default:
      return false;
  }
}

bool is_resource_shortage(int err) { return err == EMFILE || err == ENFILE || err == ENOMEM; }

}  // namespace docpipe
