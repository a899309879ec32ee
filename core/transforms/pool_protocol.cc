#include "core/transforms/pool_protocol.h"

#include <algorithm>
#include <cstdio>

namespace docpipe::pool_protocol {
namespace {

Error violation(std::string what) {
  return make_error(ErrorCode::kInternal, "protocol violation: " + std::move(what));
}

std::string describe_type(char type) {
  const auto byte = static_cast<unsigned char>(type);
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02x", byte);
  std::string s = std::string("frame type ") + hex;
  if (byte >= 0x21 && byte < 0x7f) s += std::string(" ('") + type + "')";
  return s;
}

}  // namespace

void append_header(std::string& out, char type, uint32_t length) {
  out.push_back(type);
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((length >> shift) & 0xff));
  }
}

Status FrameDecoder::begin_frame() {
  type_ = header_[0];
  uint32_t length = 0;
  for (size_t i = 1; i < kHeaderBytes; ++i) {
    length = (length << 8) | static_cast<unsigned char>(header_[i]);
  }
  size_t max = 0;
  switch (type_) {
    case kData:
      max = kMaxDataPayload;
      break;
    case kFailed:
      max = kMaxFailurePayload;
      break;
    case kPing:
      max = kMaxPingPayload;
      break;
    case kReady:
      max = kReadyText.size();
      break;
    case kDone:
      max = 0;
      break;
    default:
      return violation("unknown " + describe_type(type_));
  }
  if (length > max) {
    return violation(describe_type(type_) + " with " + std::to_string(length) +
                     " payload bytes (at most " + std::to_string(max) + ")");
  }
  in_frame_ = true;
  left_ = length;
  control_.clear();
  return ok();
}

Status FrameDecoder::feed(std::string_view bytes, Sink& sink) {
  if (!failed_.empty()) return make_error(ErrorCode::kInternal, failed_);
  auto fail = [this](Error e) -> Status {
    failed_ = e.message;
    return e;
  };
  while (!bytes.empty() || (in_frame_ && left_ == 0)) {
    if (!in_frame_) {
      const size_t take = std::min(bytes.size(), kHeaderBytes - header_got_);
      std::copy_n(bytes.data(), take, header_ + header_got_);
      header_got_ += take;
      bytes.remove_prefix(take);
      if (header_got_ < kHeaderBytes) break;
      header_got_ = 0;
      Status st = begin_frame();
      if (!st) return fail(st.error());
      continue;
    }
    const size_t take = std::min(bytes.size(), left_);
    if (type_ == kData) {
      if (take > 0) {
        Status st = sink.data(bytes.substr(0, take));
        if (!st) return fail(st.error());
      }
    } else {
      control_.append(bytes.data(), take);
    }
    bytes.remove_prefix(take);
    left_ -= take;
    if (left_ > 0) break;
    in_frame_ = false;
    if (type_ != kData) {
      Status st = sink.control(type_, control_);
      if (!st) return fail(st.error());
    }
  }
  return ok();
}

}  // namespace docpipe::pool_protocol
