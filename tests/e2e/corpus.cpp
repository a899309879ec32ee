#include "tests/e2e/corpus.h"

namespace e2e {

namespace {

const char* const kWords[] = {
    "invoice",   "shipment",  "customer", "account", "balance", "quarterly", "report",
    "delivery",  "warehouse", "contract", "renewal", "payment", "overdue",   "schedule",
    "meeting",   "project",   "status",   "update",  "review",  "approved",  "pending",
    "received",  "the",       "and",      "for",     "with",    "please",    "contact",
    "regarding", "order",     "number",   "card",    "email",   "address",   "reference",
    "summary",   "details",   "attached", "team",    "office"};

const char* const kDomains[] = {"example.com", "mail.example.org", "corp.example.net",
                                "example.co.uk"};

// The digit that makes payload + digit pass the Luhn check.
char luhn_check_digit(std::string_view payload) {
  int sum = 0;
  for (size_t i = 0; i < payload.size(); ++i) {
    int d = payload[payload.size() - 1 - i] - '0';
    if (i % 2 == 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return static_cast<char>('0' + (10 - sum % 10) % 10);
}

}  // namespace

bool luhn_valid(std::string_view digits) {
  if (digits.empty()) return false;
  return luhn_check_digit(digits.substr(0, digits.size() - 1)) == digits.back();
}

std::string CorpusGenerator::digits(size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += static_cast<char>('0' + below(10));
  return out;
}

std::string CorpusGenerator::word() { return kWords[below(std::size(kWords))]; }

std::string CorpusGenerator::email() {
  std::string local = word();
  switch (below(4)) {
    case 0:
      local += "." + word();
      break;
    case 1:
      local += "_" + word() + std::to_string(below(100));
      break;
    case 2:
      local += "+" + word();
      break;
    default:
      break;
  }
  return local + "@" + kDomains[below(std::size(kDomains))];
}

std::string CorpusGenerator::card() {
  // Visa-like (4...) or Mastercard-like (51..55...), 16 digits.
  std::string payload =
      below(2) == 0 ? "4" + digits(14) : "5" + std::to_string(1 + below(5)) + digits(13);
  return payload + luhn_check_digit(payload);
}

std::string CorpusGenerator::luhn_invalid_run() {
  std::string payload = "4" + digits(14);
  char good = luhn_check_digit(payload);
  char bad = static_cast<char>('0' + (good - '0' + 1 + below(9)) % 10);
  return payload + bad;
}

std::string CorpusGenerator::short_number() { return std::to_string(1000 + below(99999000)); }

SensitiveDocument CorpusGenerator::document(size_t approx_bytes, std::string_view replacement) {
  SensitiveDocument doc;
  std::string redacted_word(replacement);
  bool last_numeric = true;  // no number as the very first token
  size_t tokens_on_line = 0;
  auto add = [&](const std::string& original, const std::string& redacted, bool numeric) {
    if (!doc.text.empty()) {
      char sep = tokens_on_line >= 8 + below(6) ? '\n' : ' ';
      tokens_on_line = sep == '\n' ? 0 : tokens_on_line;
      doc.text += sep;
      doc.redacted += sep;
    }
    doc.text += original;
    doc.redacted += redacted;
    last_numeric = numeric;
    ++tokens_on_line;
  };
  auto add_word = [&] {
    std::string w = word();
    add(w, w, false);
  };
  // Two digit runs are never adjacent, so no reading of separators can join them into one number.
  auto add_numeric = [&](const std::string& original, const std::string& redacted) {
    if (last_numeric) add_word();
    add(original, redacted, true);
  };

  add_word();
  add(email(), redacted_word, false);
  ++doc.emails;
  add_numeric(card(), redacted_word);
  ++doc.cards;
  std::string first_decoy = luhn_invalid_run();
  add_numeric(first_decoy, first_decoy);
  ++doc.decoys;
  while (doc.text.size() < approx_bytes) {
    uint64_t roll = below(100);
    if (roll < 3) {
      add(email(), redacted_word, false);
      ++doc.emails;
    } else if (roll < 5) {
      add_numeric(card(), redacted_word);
      ++doc.cards;
    } else if (roll < 7) {
      std::string run = below(2) == 0 ? luhn_invalid_run() : short_number();
      add_numeric(run, run);
      ++doc.decoys;
    } else {
      add_word();
    }
  }
  doc.text += '\n';
  doc.redacted += '\n';
  return doc;
}

}  // namespace e2e
