#pragma once
// Incremental SHA-256 (OpenSSL EVP) of a document's output as it is written. One per work item,
// reset between documents, so the digest context is allocated once and not per document.

#include <string>
#include <string_view>

#include "core/result.h"

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace docpipe {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  // Starts a new digest; must be called before the first update().
  Status reset();
  Status update(std::string_view data);
  // Lower-case hex of the digest; the context must be reset() before it is used again.
  Result<std::string> hex_digest();

 private:
  EVP_MD_CTX* ctx_;
};

}  // namespace docpipe
