#include "core/transforms/json_duplicates.h"

#include <functional>
#include <string>

#include "core/transforms/json_scan.h"

namespace docpipe {
namespace {

using json_scan::decoded_key;
using json_scan::member_value;
using json_scan::scalar_end;
using json_scan::skip_ws;
using json_scan::string_end;

// Orders key offsets by decoded key, then by position. Sorting (rather than hashing) keeps an
// object of n keys at O(n log n) whatever the keys: no hash flooding.
class KeyOrder {
 public:
  explicit KeyOrder(std::string_view t) : t_(t) {}
  bool operator()(uint32_t a, uint32_t b) {
    const int c = compare(a, b);
    return c != 0 ? c < 0 : a < b;
  }
  bool same(uint32_t a, uint32_t b) { return compare(a, b) == 0; }

 private:
  int compare(uint32_t a, uint32_t b) {
    return decoded_key(t_, a, scratch_a_).compare(decoded_key(t_, b, scratch_b_));
  }
  std::string_view t_;
  std::string scratch_a_, scratch_b_;
};

// Records the duplicates among one object's keys (their offsets, in any order).
void note_duplicates(std::string_view t, std::vector<uint32_t>& keys, Duplicates& d) {
  if (keys.size() < 2) return;
  KeyOrder order(t);
  std::sort(keys.begin(), keys.end(), std::ref(order));
  for (size_t i = 0; i < keys.size();) {
    size_t j = i + 1;
    while (j < keys.size() && order.same(keys[i], keys[j])) ++j;
    if (j - i > 1) {
      if (d.dropped_key.empty()) d.dropped_key.resize(t.size());
      for (size_t k = i + 1; k < j; ++k) d.dropped_key[keys[k]] = true;
      d.replaced.emplace_back(static_cast<uint32_t>(member_value(t, keys[i])),
                              static_cast<uint32_t>(member_value(t, keys[j - 1])));
    }
    i = j;
  }
}

}  // namespace

Duplicates find_duplicates(std::string_view t) {
  Duplicates d;
  struct Frame {
    bool object = false;
    bool expect_key = false;
    std::vector<uint32_t> keys;  // offsets of the object's keys so far: 4 bytes each
  };
  std::vector<Frame> stack;  // reused from one container to the next
  size_t depth = 0;
  for (size_t p = skip_ws(t, 0); p < t.size(); p = skip_ws(t, p)) {
    const char c = t[p];
    if (c == '{' || c == '[') {
      if (depth == stack.size()) stack.emplace_back();
      Frame& f = stack[depth++];
      f.object = c == '{';
      f.expect_key = f.object;
      f.keys.clear();
      ++p;
    } else if (c == '}' || c == ']') {
      Frame& f = stack[--depth];
      if (f.object) note_duplicates(t, f.keys, d);
      if (f.keys.capacity() > 1024) std::vector<uint32_t>().swap(f.keys);  // a wide one's memory
      ++p;
    } else if (c == ',') {
      if (stack[depth - 1].object) stack[depth - 1].expect_key = true;
      ++p;
    } else if (c == ':') {
      ++p;
    } else if (c == '"') {
      if (depth > 0 && stack[depth - 1].expect_key) {
        stack[depth - 1].expect_key = false;
        stack[depth - 1].keys.push_back(static_cast<uint32_t>(p));
      }
      p = string_end(t, p);
    } else {
      p = scalar_end(t, p);
    }
  }
  // One entry per duplicated key of each object; looked up by the first value's offset.
  std::sort(d.replaced.begin(), d.replaced.end());
  return d;
}

}  // namespace docpipe
