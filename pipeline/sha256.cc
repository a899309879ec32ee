#include "pipeline/sha256.h"

#include <openssl/evp.h>

namespace docpipe {

namespace {

// Fetched once: in OpenSSL 3 an implicit EVP_sha256() lookup on every init costs a provider
// search per document. Never freed, like any process-wide table.
const EVP_MD* sha256_md() {
  static const EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

Error digest_error(const char* what) {
  return make_error(ErrorCode::kInternal, std::string("sha256: ") + what + " failed");
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

Status Sha256::reset() {
  const EVP_MD* md = sha256_md();
  if (ctx_ == nullptr || md == nullptr || EVP_DigestInit_ex(ctx_, md, nullptr) != 1) {
    return digest_error("init");
  }
  return ok();
}

Status Sha256::update(std::string_view data) {
  if (data.empty()) return ok();
  if (EVP_DigestUpdate(ctx_, data.data(), data.size()) != 1) return digest_error("update");
  return ok();
}

Result<std::string> Sha256::hex_digest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_, digest, &len) != 1) return digest_error("final");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(size_t{len} * 2, '\0');
  for (unsigned int i = 0; i < len; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 0xf];
  }
  return out;
}

}  // namespace docpipe
