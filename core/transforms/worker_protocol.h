#pragma once
// The frames a daemon and an isolated transform worker exchange over the worker's stdin and
// stdout (see isolated_worker.h). Both ends are the same binary, so integers go in host order.
//
//   worker -> daemon, once at start:  Hello   (the sandbox is in place; serving)
//   daemon -> worker, per document:   Request, its JSON header, then Chunk frames with the
//                                     document's bytes, ended by a Chunk of length 0
//   worker -> daemon, per document:   Response, then `metadata_bytes` bytes (the transform's
//                                     metadata(), code 0 only), then `length` bytes: the output,
//                                     or the error message when code != 0

#include <cstdint>

namespace docpipe::worker_protocol {

inline constexpr uint32_t kMagic = 0x31575044;  // "DPW1"

struct Hello {
  uint32_t magic = kMagic;
  uint32_t pid = 0;
};

struct Request {
  uint32_t magic = kMagic;
  uint32_t header_bytes = 0;  // {"params": {...}, "path": "a/b.md", "name": "b.md"}
};

struct Chunk {
  uint32_t length = 0;  // 0 ends the document
};

struct Response {
  uint32_t magic = kMagic;
  uint32_t code = 0;      // 0: the output follows; else 1 + ErrorCode, the message follows
  uint64_t cpu_usec = 0;  // CPU time the worker has used in its life, for retiring it
  uint64_t length = 0;
  uint32_t metadata_bytes = 0;
  uint32_t reserved = 0;
};

// A request header or a chunk larger than this is a protocol error.
inline constexpr uint32_t kMaxHeaderBytes = 1u << 20;
inline constexpr uint32_t kMaxChunkBytes = 1u << 20;
// An error message is cut to this length.
inline constexpr uint64_t kMaxErrorBytes = 64u << 10;
// Metadata longer than this is dropped by the worker (and a protocol error from it).
inline constexpr uint32_t kMaxMetadataBytes = 64u << 10;

// Exit statuses through which a worker says why it stopped.
inline constexpr int kExitOutOfMemory = 86;  // an allocation failed: its RLIMIT_AS was reached
inline constexpr int kExitProtocol = 87;     // the daemon sent something it cannot read
inline constexpr int kExitSetup = 88;        // it could not put its sandbox in place

}  // namespace docpipe::worker_protocol
