#pragma once
// The framing an `exec` pool process speaks on its stdin and stdout (docs/design.md "exec pools
// (issue 13)", which has the byte layout and an example converter in deploy/examples/).
//
// Every frame is a 5-byte header, one ASCII type byte then the payload length as a 4-byte
// big-endian unsigned integer, followed by the payload. Documents travel as any number of data
// frames and one end frame, so that neither side ever needs a document whole:
//
//   daemon -> process   'D' data (1..1 MiB)   'E' end of document (0)   'P' ping (0..64)
//   process -> daemon   'R' ready (the text "docpipe-pool 1", once, at start)
//                       'D' data (0..1 MiB)   'O' document done (0)
//                       'F' document failed (0..4096: a UTF-8 message; the process lives on)
//                       'P' pong (the ping's payload, echoed)
//
// A process answers a document with its data frames then exactly one 'O' or 'F'. It may answer
// before it has read the whole document (it needs no more of it); the daemon then finishes the
// data frame it is writing, sends 'E' at once, and the process skips data frames up to that 'E'.
// EOF on its stdin asks it to exit.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace docpipe::pool_protocol {

inline constexpr size_t kHeaderBytes = 5;
inline constexpr size_t kMaxDataPayload = size_t{1} << 20;
inline constexpr size_t kMaxFailurePayload = 4096;
inline constexpr size_t kMaxPingPayload = 64;
// The daemon's data frames carry at most this much, so that what it holds unwritten is bounded.
inline constexpr size_t kSendPayload = size_t{64} << 10;
inline constexpr std::string_view kReadyText = "docpipe-pool 1";

inline constexpr char kData = 'D';
inline constexpr char kEnd = 'E';
inline constexpr char kPing = 'P';
inline constexpr char kReady = 'R';
inline constexpr char kDone = 'O';
inline constexpr char kFailed = 'F';

// Appends a frame header for `type` and `length` payload bytes.
void append_header(std::string& out, char type, uint32_t length);

// Reads the process's side of the stream in whatever pieces it arrives. Data payloads are handed
// on as they come, without waiting for a whole frame; the other frames (at most 4096 bytes) are
// collected whole. Any frame type the process may not send, or an oversized length, is a
// protocol violation, and the decoder stays failed.
class FrameDecoder {
 public:
  struct Sink {
    virtual ~Sink() = default;
    // Returning an error stops decoding with it.
    virtual Status data(std::string_view piece) = 0;
    virtual Status control(char type, std::string_view payload) = 0;
  };

  // Decodes all of `bytes`; stops at the first violation (returned, with kInternal).
  Status feed(std::string_view bytes, Sink& sink);
  // Between frames: no partial header or payload is pending.
  bool at_boundary() const { return header_got_ == 0 && !in_frame_; }

 private:
  Status begin_frame();

  char header_[kHeaderBytes] = {};
  size_t header_got_ = 0;
  bool in_frame_ = false;
  char type_ = 0;
  size_t left_ = 0;      // payload bytes of the current frame still to come
  std::string control_;  // the current non-data frame's payload so far
  std::string failed_;   // set once a violation was seen
};

}  // namespace docpipe::pool_protocol
