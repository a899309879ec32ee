// text.chunk: splits UTF-8 text into chunks for embedding and search, as JSON Lines:
//
//   {"source":"2026/q1.pdf","chunk":0,"start":0,"end":1873,"page":1,"text":"..."}
//
// - `unit` "characters" (code points) or "tokens" (an approximation of what embedding models'
//   tokenizers count: a run of letters and digits is one token per 4 bytes, at least 1; any
//   other visible character is one token; white space is free);
// - each chunk holds at most `size` units and ends at the best edge the last half of its window
//   offers: a paragraph break, else the end of a sentence, else a line break, else a space, else
//   (one long word) wherever `size` runs out, never inside a UTF-8 sequence;
// - consecutive chunks share about `overlap` units (at most half of `size`), starting at a word;
// - `start`/`end` are byte offsets of the chunk's text in the document, `page` is 1 plus the form
//   feeds before it (pdf.text separates pages with them), the text is trimmed of the white space
//   around it, and invalid UTF-8 becomes U+FFFD in the JSON.
//
// Streaming: a document is read through a window of one chunk plus its look-ahead, so memory does
// not grow with the document; the output does not depend on how the document is cut into pieces.

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/transforms/param_reader.h"

namespace docpipe {
namespace {

enum class Unit { kCharacters, kTokens };

struct ChunkOptions {
  Unit unit = Unit::kCharacters;
  size_t size = 1000;
  size_t overlap = 100;
};

bool is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }
bool is_word_byte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

class ChunkTransform : public DocumentTransform {
 public:
  ChunkTransform(const ChunkOptions& options, std::string_view source)
      : options_(options), source_(source) {}

  Status update(std::string_view in, std::string& out) override {
    buf_.append(in);
    if (buf_.size() < retry_at_) return ok();
    // Emit while the window holds a full chunk and enough look-ahead to judge its end.
    while (emit_one(out, /*at_end=*/false)) {
    }
    return ok();
  }

  Status finish(std::string& out) override {
    while (emit_one(out, /*at_end=*/true)) {
    }
    return ok();
  }

 private:
  // Units of the text from buf_[from] on, up to `limit` units: returns the byte position where
  // `limit` units end (or buf_.size()), and the units counted.
  std::pair<size_t, size_t> advance(size_t from, size_t limit,
                                    size_t stop = std::string::npos) const {
    const auto* p = reinterpret_cast<const unsigned char*>(buf_.data());
    const size_t n = std::min(stop, buf_.size());
    size_t i = from, units = 0;
    while (i < n) {
      const unsigned char c = p[i];
      size_t next = i + 1;
      size_t cost = 1;
      if (options_.unit == Unit::kCharacters) {
        while (next < n && is_continuation(p[next])) ++next;
      } else if (is_space(c)) {
        cost = 0;
      } else if (is_word_byte(c)) {
        // A word: one token per 4 bytes. Scanned no further than the tokens left can hold; a
        // word that goes on past them is cut there, on a character boundary.
        const size_t room = (limit - units) * 4;
        size_t end = next;
        while (end < n && is_word_byte(p[end]) && end - i <= room) ++end;
        if (end - i > room) {
          next = i + room;
          while (next < n && is_continuation(p[next])) ++next;
          if (next == i) break;
          return {next, limit};
        }
        next = end;
        cost = (end - i + 3) / 4;
      } else {
        while (next < n && is_continuation(p[next])) ++next;
      }
      if (units + cost > limit) break;
      units += cost;
      i = next;
    }
    return {i, units};
  }

  // The best place to end a chunk that may end anywhere in (lo, hi]: after a paragraph break,
  // a sentence end, a line break or a space (in that order), else hi.
  size_t best_end(size_t lo, size_t hi) const {
    const std::string_view t(buf_);
    auto search = [&](auto&& is_edge) -> size_t {
      for (size_t i = hi; i > lo; --i) {
        if (is_edge(i)) return i;
      }
      return 0;
    };
    if (size_t at =
            search([&](size_t i) { return i >= 2 && t[i - 1] == '\n' && t[i - 2] == '\n'; }))
      return at;
    if (size_t at = search([&](size_t i) {
          return i >= 2 && i < t.size() && is_space(static_cast<unsigned char>(t[i])) &&
                 (t[i - 1] == '.' || t[i - 1] == '!' || t[i - 1] == '?');
        }))
      return at;
    if (size_t at = search([&](size_t i) { return t[i - 1] == '\n' || t[i - 1] == '\f'; }))
      return at;
    if (size_t at = search([&](size_t i) { return i < t.size() && t[i] == ' '; })) return at;
    return hi;
  }

  // Writes the next chunk if it can be decided now; false when more input is needed or all is
  // written.
  bool emit_one(std::string& out, bool at_end) {
    // Skip white space at the start (form feeds are counted when the chunk is written).
    while (start_ < buf_.size() && is_space(static_cast<unsigned char>(buf_[start_]))) ++start_;
    if (start_ >= buf_.size()) {
      if (at_end) return false;
      compact();
      return false;
    }
    // White space costs no tokens, so a window also ends at max_window_bytes(): the buffer cannot
    // grow without end on a document of blanks. What is decided depends only on the bytes up to
    // there (and whether more follow), never on how the document was cut into pieces.
    const size_t cap = start_ + max_window_bytes();
    auto [limit_end, units] = advance(start_, options_.size, cap);
    bool full = units >= options_.size;
    if (!full && limit_end >= cap && cap < buf_.size()) {
      full = true;
      while (limit_end > start_ && is_continuation(static_cast<unsigned char>(buf_[limit_end]))) {
        --limit_end;
      }
    }
    // Without the document's end, a chunk is decided only once a full window (and one byte
    // past it, to see whether a word goes on) is here.
    if (!at_end && (!full || limit_end >= buf_.size())) {
      // Look again once the waiting part has doubled (or the window can be full): a document
      // arriving in small pieces is then scanned a few times, not once per piece.
      retry_at_ = std::min(buf_.size() + (buf_.size() - start_), cap + 1);
      compact();
      return false;
    }
    retry_at_ = 0;
    size_t end = limit_end;
    if (limit_end < buf_.size()) {
      // Not the document's last piece: end at the best edge in the window's second half.
      const size_t half = advance(start_, options_.size / 2, limit_end).first;
      end = best_end(std::max(half, start_), limit_end);
    }
    if (end <= start_) end = std::max(limit_end, start_ + 1);
    write_chunk(out, start_, end);
    if (end >= buf_.size() && at_end) {
      start_ = buf_.size();
      return false;
    }
    start_ = next_start(end);
    return true;
  }

  // Where the next chunk starts: `overlap` units before `end`, moved on to a word's start, but
  // always after this chunk's start.
  size_t next_start(size_t end) {
    if (options_.overlap == 0) return end;
    marks_.clear();  // where each unit of the chunk starts
    for (size_t pos = start_; pos < end;) {
      marks_.push_back(pos);
      const size_t next = advance(pos, 1).first;
      if (next <= pos) break;
      pos = next;
    }
    if (marks_.size() <= options_.overlap) return end;
    size_t s = marks_[marks_.size() - options_.overlap];
    // Start at a word: after the next white space, if there is one before end.
    if (!is_space(static_cast<unsigned char>(buf_[s - 1]))) {
      while (s < end && !is_space(static_cast<unsigned char>(buf_[s]))) ++s;
    }
    while (s < end && is_space(static_cast<unsigned char>(buf_[s]))) ++s;
    if (s >= end || s <= start_) return end;
    return s;
  }

  void write_chunk(std::string& out, size_t from, size_t to) {
    size_t a = from, b = to;
    while (b > a && is_space(static_cast<unsigned char>(buf_[b - 1]))) --b;
    if (b <= a) return;
    // Pages: form feeds between the last chunk's start and this one's.
    for (size_t i = counted_; i < a; ++i) {
      if (buf_[i] == '\f') ++page_;
    }
    counted_ = std::max(counted_, a);
    nlohmann::ordered_json j;
    j["source"] = source_;
    j["chunk"] = index_++;
    j["start"] = base_ + a;
    j["end"] = base_ + b;
    j["page"] = page_;
    j["text"] = std::string_view(buf_).substr(a, b - a);
    out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    out += '\n';
  }

  size_t max_window_bytes() const { return options_.size * 64 + (64u << 10); }

  // Drops what no chunk can need again (before start_).
  void compact() {
    if (start_ < (64u << 10) || start_ < buf_.size() / 2) return;
    for (size_t i = counted_; i < start_; ++i) {
      if (buf_[i] == '\f') ++page_;
    }
    buf_.erase(0, start_);
    base_ += start_;
    retry_at_ = retry_at_ > start_ ? retry_at_ - start_ : 0;
    counted_ = 0;
    start_ = 0;
  }

  const ChunkOptions options_;
  const std::string source_;
  std::string buf_;
  size_t base_ = 0;     // document offset of buf_[0]
  size_t start_ = 0;    // the next chunk starts at or after buf_[start_]
  size_t counted_ = 0;  // form feeds before buf_[counted_] are in page_
  int64_t page_ = 1;
  int64_t index_ = 0;
  size_t retry_at_ = 0;  // update() looks for a chunk again once buf_ holds this much
  std::vector<size_t> marks_;
};

class ChunkStep : public TransformStep {
 public:
  explicit ChunkStep(ChunkOptions options) : options_(options) {}
  std::unique_ptr<DocumentTransform> begin(const DocumentContext& doc) const override {
    return std::make_unique<ChunkTransform>(options_, doc.relative_path);
  }

 private:
  ChunkOptions options_;
};

const ParamSchema& schema() {
  static const ParamSchema s =
      ParamSchema()
          .string_choice("unit", {"characters", "tokens"}, "characters",
                         "what size and overlap count: Unicode characters, or approximate tokens "
                         "(a word is one token per 4 bytes, other visible characters one each)")
          .integer("size", 16, 100000, 1000, "the most units in a chunk")
          .integer("overlap", 0, 50000, 100,
                   "units that consecutive chunks share, at most half of size");
  return s;
}

const TransformRegistration kRegistration(TransformInfo{
    .op = "text.chunk",
    .description = "splits text into chunks for embedding as JSON Lines (source, chunk, start, "
                   "end, page, text), by characters or approximate tokens, with overlap, at "
                   "paragraph, sentence or word edges",
    .streaming = true,
    .params = schema().specs(),
    .configure = [](const nlohmann::json& params, const TransformEnv&,
                    FieldErrors& errors) -> std::shared_ptr<const TransformStep> {
      ParamReader reader(schema(), params, errors);
      ChunkOptions options;
      options.unit = reader.string("unit") == "tokens" ? Unit::kTokens : Unit::kCharacters;
      options.size = static_cast<size_t>(reader.integer("size"));
      options.overlap = static_cast<size_t>(reader.integer("overlap"));
      if (reader.ok() && options.overlap * 2 > options.size) {
        reader.error("overlap", "must be at most half of size (" +
                                    std::to_string(options.size / 2) +
                                    "), or every chunk would repeat most of the one before");
      }
      if (!reader.ok()) return nullptr;
      return std::make_shared<ChunkStep>(options);
    }});

}  // namespace
}  // namespace docpipe
