#pragma once
// The decompression-bomb guard shared by gunzip and unzstd: a cap on the decompressed size and on
// the decompressed/compressed ratio, declared as the same two parameters for both.

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "core/result.h"
#include "core/transforms/param_reader.h"

namespace docpipe {

struct DecompressionLimits {
  // The ratio limit applies once the output passes this size: a tiny document that expands a lot
  // (a few hundred bytes of spaces) is harmless, and its ratio says nothing about a bomb.
  static constexpr uint64_t kRatioFloorBytes = 1u << 20;
  static constexpr int64_t kDefaultMaxOutputBytes = int64_t{4} << 30;
  static constexpr int64_t kDefaultMaxRatio = 1000;

  uint64_t max_output_bytes = kDefaultMaxOutputBytes;
  uint64_t max_ratio = kDefaultMaxRatio;

  // Declares max_output_bytes and max_ratio; `ratio_note` says what ratio the format can reach.
  static ParamSchema declare(ParamSchema schema, const std::string& ratio_note) {
    schema
        .integer("max_output_bytes", 1, ParamSchema::kNoMax, kDefaultMaxOutputBytes,
                 "largest decompressed document allowed (default 4 GiB); a guard against "
                 "decompression bombs")
        .integer("max_ratio", 1, ParamSchema::kNoMax, kDefaultMaxRatio,
                 "largest allowed decompressed/compressed size ratio, checked once the output "
                 "passes 1 MiB; " +
                     ratio_note);
    return schema;
  }

  static DecompressionLimits read(ParamReader& reader) {
    return {static_cast<uint64_t>(reader.integer("max_output_bytes")),
            static_cast<uint64_t>(reader.integer("max_ratio"))};
  }

  // An error naming `op` once `produced` bytes from `consumed` compressed ones break a limit.
  Status check(const char* op, uint64_t produced, uint64_t consumed) const {
    if (produced > max_output_bytes) {
      return make_error(ErrorCode::kTooLarge,
                        std::string(op) + ": output exceeds max_output_bytes (" +
                            std::to_string(max_output_bytes) +
                            " bytes); raise max_output_bytes if documents this large are expected");
    }
    // produced > ratio * consumed, without overflow.
    if (produced > kRatioFloorBytes && consumed > 0 && (produced - 1) / max_ratio >= consumed) {
      return make_error(ErrorCode::kTooLarge,
                        std::string(op) + ": output exceeds max_ratio (" +
                            std::to_string(max_ratio) + " times the input): " +
                            std::to_string(produced) + " bytes from " + std::to_string(consumed) +
                            " compressed bytes; raise max_ratio if such data is expected");
    }
    return ok();
  }
};

// Validates a decompressor's parameters (`schema` from declare()) and builds its Step from them.
template <typename Step>
std::shared_ptr<const TransformStep> configure_decompressor(const ParamSchema& schema,
                                                            const nlohmann::json& params,
                                                            FieldErrors& errors) {
  ParamReader reader(schema, params, errors);
  const DecompressionLimits limits = DecompressionLimits::read(reader);
  if (!reader.ok()) return nullptr;
  return std::make_shared<Step>(limits);
}

// At the end of a document: an error unless the compressed input held at least one whole unit
// (`format` "gzip", `unit` "gzip member"; "zstd", "zstd frame") and stopped between units.
inline Status check_complete_input(const char* op, const char* format, const char* unit,
                                   uint64_t consumed, bool ended_between_units) {
  if (consumed == 0) {
    return make_error(ErrorCode::kCorruptInput,
                      std::string(op) + ": empty document: no " + format + " data to decompress");
  }
  if (!ended_between_units) {
    return make_error(ErrorCode::kCorruptInput,
                      std::string(op) + ": truncated " + format + " input (ends after " +
                          std::to_string(consumed) + " bytes, inside a " + unit + ")");
  }
  return ok();
}

}  // namespace docpipe
