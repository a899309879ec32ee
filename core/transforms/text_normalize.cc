// text.normalize: UTF-8 validation (or repair), BOM strip, CRLF and lone CR to LF, optional
// trailing-whitespace trim and final newline; streaming, and the output does not depend on how the
// document is cut into chunks (a sequence, a CRLF or a run of spaces may straddle two).

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/transforms/param_reader.h"

namespace docpipe {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

struct NormalizeOptions {
  bool replace_invalid = false;
  bool trim_trailing_whitespace = false;
  bool final_newline = false;
};

std::string hex_byte(uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", b);
  return buf;
}

class TextNormalizeTransform : public DocumentTransform {
 public:
  explicit TextNormalizeTransform(NormalizeOptions options) : options_(options) {}

  Status update(std::string_view in, std::string& out) override {
    const auto* p = reinterpret_cast<const uint8_t*>(in.data());
    const size_t n = in.size();
    size_t i = 0;
    while (i < n) {
      const uint8_t b = p[i];
      if (need_ > 0) {
        if (b >= lo_ && b <= hi_) {
          seq_[seq_len_++] = b;
          lo_ = 0x80;
          hi_ = 0xBF;
          ++i;
          if (--need_ == 0) emit_sequence(out);
          continue;
        }
        // A maximal subpart ends here; `b` is looked at again as the start of what follows.
        need_ = 0;
        Status st = invalid("byte " + hex_byte(b) + " cannot follow " + sequence_text(), out);
        if (!st) return st;
        continue;
      }
      if (b < 0x80 && !is_special(b)) {
        // The common case: a run of plain ASCII copied in one go.
        size_t end = i + 1;
        while (end < n && p[end] < 0x80 && !is_special(p[end])) ++end;
        flush_whitespace(out);
        out.append(in.data() + i, end - i);
        note_output(p[end - 1]);
        at_start_ = false;
        after_cr_ = false;
        i = end;
        continue;
      }
      seq_start_ = consumed_ + i;
      ++i;
      if (b < 0x80) {
        ascii(static_cast<char>(b), out);
        continue;
      }
      seq_[0] = b;
      seq_len_ = 1;
      lo_ = 0x80;
      hi_ = 0xBF;
      if (b >= 0xC2 && b <= 0xDF) {
        need_ = 1;
      } else if (b >= 0xE0 && b <= 0xEF) {
        need_ = 2;
        if (b == 0xE0) lo_ = 0xA0;  // no overlong forms
        if (b == 0xED) hi_ = 0x9F;  // no surrogates
      } else if (b >= 0xF0 && b <= 0xF4) {
        need_ = 3;
        if (b == 0xF0) lo_ = 0x90;  // no overlong forms
        if (b == 0xF4) hi_ = 0x8F;  // nothing above U+10FFFF
      } else {
        Status st = invalid(b < 0xC0 ? "unexpected continuation byte " + hex_byte(b)
                                     : "byte " + hex_byte(b) + " never appears in UTF-8",
                            out);
        if (!st) return st;
      }
    }
    consumed_ += n;
    return ok();
  }

  Status finish(std::string& out) override {
    if (need_ > 0) {
      need_ = 0;
      Status st = invalid("input ends inside the sequence " + sequence_text(), out);
      if (!st) return st;
    }
    // Whitespace still held back is at the end of the document: trimmed.
    runs_.clear();
    if (options_.final_newline && wrote_any_ && last_ != '\n') out.push_back('\n');
    return ok();
  }

 private:
  // Bytes the fast path must not copy blindly.
  bool is_special(uint8_t b) const {
    return b == '\r' || b == '\n' || (options_.trim_trailing_whitespace && (b == ' ' || b == '\t'));
  }

  void ascii(char c, std::string& out) {
    const bool after_cr = after_cr_;
    after_cr_ = false;
    at_start_ = false;
    switch (c) {
      case '\n':
        if (!after_cr) newline(out);  // the LF of a CRLF was written for its CR
        return;
      case '\r':
        newline(out);
        after_cr_ = true;
        return;
      case ' ':
      case '\t':
        if (options_.trim_trailing_whitespace) {
          hold_whitespace(c, out);
          return;
        }
        break;
      default:
        break;
    }
    flush_whitespace(out);
    out.push_back(c);
    note_output(static_cast<uint8_t>(c));
  }

  void newline(std::string& out) {
    runs_.clear();  // trailing whitespace: trimmed (only ever held when trimming)
    out.push_back('\n');
    note_output('\n');
    ++line_;
  }

  // A complete, valid multi-byte sequence.
  void emit_sequence(std::string& out) {
    const bool first = at_start_;
    at_start_ = false;
    after_cr_ = false;
    if (first && seq_len_ == 3 && seq_[0] == 0xEF && seq_[1] == 0xBB && seq_[2] == 0xBF) return;
    flush_whitespace(out);
    out.append(reinterpret_cast<const char*>(seq_), seq_len_);
    note_output(seq_[seq_len_ - 1]);
  }

  Status invalid(const std::string& what, std::string& out) {
    at_start_ = false;
    after_cr_ = false;
    if (!options_.replace_invalid) {
      return make_error(ErrorCode::kCorruptInput, "text.normalize: invalid UTF-8 at byte " +
                                                      std::to_string(seq_start_) + " (line " +
                                                      std::to_string(line_) + "): " + what);
    }
    flush_whitespace(out);
    out.append(kReplacement);
    note_output(static_cast<uint8_t>(kReplacement.back()));
    return ok();
  }

  // Spaces and tabs are held until something other than a line end follows them. They are kept
  // as runs, so a long run costs a few bytes however long it is. Alternating spaces and tabs
  // would make a run of each byte: past kMaxHeldRuns the held ones are written out untrimmed,
  // which bounds memory (only such pathological whitespace keeps part of its tail).
  void hold_whitespace(char c, std::string& out) {
    if (!runs_.empty() && runs_.back().c == c) {
      ++runs_.back().count;
      return;
    }
    if (runs_.size() >= kMaxHeldRuns) flush_whitespace(out);
    runs_.push_back(Run{c, 1});
  }

  void flush_whitespace(std::string& out) {
    if (runs_.empty()) return;
    for (const Run& r : runs_) out.append(r.count, r.c);
    note_output(static_cast<uint8_t>(runs_.back().c));
    runs_.clear();
  }

  void note_output(uint8_t last) {
    wrote_any_ = true;
    last_ = static_cast<char>(last);
  }

  std::string sequence_text() const {
    std::string s;
    for (size_t k = 0; k < seq_len_; ++k) s += (k ? " " : "") + hex_byte(seq_[k]);
    return s;
  }

  struct Run {
    char c;
    uint64_t count;
  };
  static constexpr size_t kMaxHeldRuns = 1u << 16;  // 1 MiB of Run

  NormalizeOptions options_;
  // The sequence being decoded: its bytes so far, how many more it needs and the range allowed
  // for the next one (narrower than 0x80..0xBF right after some lead bytes).
  uint8_t seq_[4] = {};
  size_t seq_len_ = 0;
  int need_ = 0;
  uint8_t lo_ = 0x80;
  uint8_t hi_ = 0xBF;
  uint64_t seq_start_ = 0;  // input offset of the sequence's first byte
  uint64_t consumed_ = 0;   // input bytes in earlier calls
  uint64_t line_ = 1;
  bool at_start_ = true;  // nothing decoded yet: a BOM here is dropped
  bool after_cr_ = false;
  std::vector<Run> runs_;  // whitespace held back (trim_trailing_whitespace only)
  bool wrote_any_ = false;
  char last_ = 0;  // the last byte written
};

class TextNormalizeStep : public TransformStep {
 public:
  explicit TextNormalizeStep(NormalizeOptions options) : options_(options) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext&) const override {
    return std::make_unique<TextNormalizeTransform>(options_);
  }

 private:
  NormalizeOptions options_;
};

const ParamSchema& schema() {
  static const ParamSchema s =
      ParamSchema()
          .string_choice("invalid", {"fail", "replace"}, "fail",
                         "what to do with bytes that are not UTF-8: fail the document, or replace "
                         "each maximal invalid subpart with U+FFFD (as Unicode and WHATWG "
                         "recommend)")
          .boolean("trim_trailing_whitespace", false,
                   "remove spaces and tabs at the end of each line and of the document")
          .boolean("final_newline", false,
                   "make a non-empty document end with a line feed (one is added if missing; "
                   "an empty document stays empty)");
  return s;
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "text.normalize",
    .description =
        "validates UTF-8 (or repairs it), strips a leading byte order mark and turns CRLF and lone "
        "CR into LF",
    .streaming = true,
    .params = schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      ParamReader reader(schema(), params, errors);
      NormalizeOptions options;
      options.replace_invalid = reader.string("invalid") == "replace";
      options.trim_trailing_whitespace = reader.boolean("trim_trailing_whitespace");
      options.final_newline = reader.boolean("final_newline");
      if (!reader.ok()) return nullptr;
      return std::make_shared<TextNormalizeStep>(options);
    }});

}  // namespace
}  // namespace docpipe
