#pragma once
// The chain fingerprint of a job (docs/design.md "Redo only what changed"): what decides the
// bytes of its outputs besides the inputs, as one SHA-256. It is the hash of a canonical JSON
// text:
//
//   {"output":{"extension":EXT|null,"suffix":SUFFIX},
//    "steps":[{"extra":SHA256|absent,"op":OP,"params":{...},"version":VERSION}, ...]}
//
// - keys sorted at every level and no spaces (nlohmann's dump of a std::map object), so the
//   order in which a job lists a step's parameters does not matter;
// - `params` with every default of the transform's schema filled in, so {"op":"gzip"} and
//   {"op":"gzip","level":6} are one chain;
// - `version`: TransformInfo::version, plus TransformInfo::library_version() when the transform
//   has one ("1 (zstd 1.5.4)"): bumping either redoes the documents;
// - `extra`: the SHA-256 of TransformStep::fingerprint_extra() (a template file's text, an exec
//   command's argv), when not empty;
// - steps that pass their input through (identity) are left out, as the chain leaves them out.
//
// Built once per job when it is parsed; nothing here is on the per-document path.

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

namespace docpipe {

struct OutputSpec;
struct TransformInfo;
class TransformStep;

// One step's entry: {"extra"?, "op", "params", "version"} (params as given, minus "op").
nlohmann::json describe_chain_step(const TransformInfo& info, const nlohmann::json& params,
                                   const TransformStep& step);

struct ChainFingerprint {
  std::string canonical;  // the canonical JSON text above
  std::string sha256;     // lower-case hex of its SHA-256
};

// `steps`: an array of describe_chain_step() entries, in chain order.
ChainFingerprint fingerprint_chain(const nlohmann::json& steps, const OutputSpec& output);

// Lower-case hex SHA-256 of `data` (one shot).
std::string sha256_hex(std::string_view data);

}  // namespace docpipe
