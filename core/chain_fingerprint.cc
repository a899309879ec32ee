#include "core/chain_fingerprint.h"

#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include "core/job_spec.h"
#include "core/transform.h"

namespace docpipe {

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  std::string hex;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    return hex;  // cannot happen with the built-in SHA-256; an empty hash matches nothing
  }
  static constexpr char kHex[] = "0123456789abcdef";
  hex.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

nlohmann::json describe_chain_step(const TransformInfo& info, const nlohmann::json& params,
                                   const TransformStep& step) {
  // nlohmann::json (not ordered_json) keeps object keys sorted: the canonical order.
  nlohmann::json effective = nlohmann::json::object();
  for (const ParamSpec& p : info.params) {
    if (p.default_value.empty()) continue;
    nlohmann::json value = nlohmann::json::parse(p.default_value, nullptr, false);
    if (!value.is_discarded()) effective[p.name] = std::move(value);
  }
  if (params.is_object()) {
    for (auto it = params.begin(); it != params.end(); ++it) effective[it.key()] = it.value();
  }
  std::string version = info.version;
  if (info.library_version) version += " (" + info.library_version() + ")";
  nlohmann::json entry{{"op", info.op}, {"params", std::move(effective)}, {"version", version}};
  if (std::string extra = step.fingerprint_extra(); !extra.empty()) {
    entry["extra"] = sha256_hex(extra);
  }
  return entry;
}

ChainFingerprint fingerprint_chain(const nlohmann::json& steps, const OutputSpec& output) {
  nlohmann::json chain{
      {"output",
       {{"extension", output.extension ? nlohmann::json(*output.extension) : nlohmann::json()},
        {"suffix", output.suffix}}},
      {"steps", steps.is_array() ? steps : nlohmann::json::array()}};
  ChainFingerprint fp;
  fp.canonical = chain.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  fp.sha256 = sha256_hex(fp.canonical);
  return fp;
}

}  // namespace docpipe
