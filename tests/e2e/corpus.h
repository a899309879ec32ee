#pragma once
// Deterministic test documents with personal data in them: e-mail addresses, Luhn-valid card
// numbers that redact must replace, and look-alikes (Luhn-invalid 16-digit runs, short order
// numbers) that it must leave alone. The generator builds the expected redacted text from what it
// inserted, independently of the daemon's patterns.

#include <cstdint>
#include <random>
#include <string>
#include <string_view>

namespace e2e {

bool luhn_valid(std::string_view digits);

struct SensitiveDocument {
  std::string text;      // what goes into the input file
  std::string redacted;  // text with every e-mail and card replaced by the replacement
  int emails = 0;
  int cards = 0;
  int decoys = 0;  // Luhn-invalid digit runs and short numbers, which must stay
};

class CorpusGenerator {
 public:
  explicit CorpusGenerator(uint64_t seed) : rng_(seed) {}

  // About `approx_bytes` of text in lines of words; at least one e-mail, one card and one decoy.
  SensitiveDocument document(size_t approx_bytes, std::string_view replacement = "[REDACTED]");

  std::string word();
  std::string email();
  std::string card();              // 16 digits, Luhn-valid
  std::string luhn_invalid_run();  // 16 digits that fail the Luhn check
  std::string short_number();      // 4 to 8 digits

  // A uniform pick in [0, n); std::mt19937_64 keeps the corpus identical everywhere.
  uint64_t below(uint64_t n) { return rng_() % n; }

 private:
  std::string digits(size_t n);

  std::mt19937_64 rng_;
};

}  // namespace e2e
