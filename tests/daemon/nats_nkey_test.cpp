// NKey seeds: the public key the server knows a user by, derived from the seed the daemon is
// given (cluster.nkey_seed), as the nkeys libraries do.
#include <doctest/doctest.h>

#include "daemon/nats_client.h"

namespace docpipe {

TEST_CASE("nkey: the public key of a seed is the one the nkeys libraries derive") {
  // The example pair of nats-io/nkeys.net's README (an operator key).
  auto pub = nkey_public_key("SOAELH6NJCEK4HST5644G4HK7TOAFZGRRJHNM4EUKUY7PPNDLIKO5IH4JM");
  REQUIRE(pub);
  CHECK(*pub == "ODPWIBQJVIQ42462QAFI2RKJC4RZHCQSIVPRDDHWFCJAP52NRZK6Z2YC");
}

TEST_CASE("nkey: a damaged seed is refused with what is wrong") {
  const std::string good = "SOAELH6NJCEK4HST5644G4HK7TOAFZGRRJHNM4EUKUY7PPNDLIKO5IH4JM";
  std::string flipped = good;
  flipped[20] = flipped[20] == 'A' ? 'B' : 'A';
  auto r = nkey_public_key(flipped);
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "not an NKey seed: checksum mismatch");
  CHECK(nkey_public_key(good.substr(0, 40)).error().message == "not an NKey seed: wrong length");
  CHECK(nkey_public_key("not base32!").error().message == "not an NKey seed: not base32");
  // A public key is not a seed.
  CHECK(nkey_public_key("ODPWIBQJVIQ42462QAFI2RKJC4RZHCQSIVPRDDHWFCJAP52NRZK6Z2YC").error().message ==
        "not an NKey seed: wrong length");
}

}  // namespace docpipe
