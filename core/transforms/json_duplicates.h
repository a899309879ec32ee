#pragma once
// Pass 2 of json.pretty / json.minify (json_format.h): which object members repeat an earlier key
// of their object, found by text offset in JSON text already validated. Sorting each object's key
// offsets (rather than hashing) keeps an object of n keys at O(n log n) whatever the keys; memory
// is 4 bytes per key of the objects open at one time, and a bit per input byte once a duplicate
// is seen.

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace docpipe {

// What the rewrite does differently where a key repeats: "for a duplicate key the last value
// wins, at the place of the first" (the behaviour of nlohmann's ordered_json, kept).
struct Duplicates {
  std::vector<bool> dropped_key;  // by offset: this member repeats an earlier key; left out
  // first value's offset -> the last duplicate's value's offset, sorted by the first (each first
  // value appears once: the key's duplicates are all found when its object closes).
  std::vector<std::pair<uint32_t, uint32_t>> replaced;

  bool is_dropped(size_t key) const { return !dropped_key.empty() && dropped_key[key]; }
  size_t replacement(size_t value) const {
    auto it = std::lower_bound(replaced.begin(), replaced.end(),
                               std::pair<uint32_t, uint32_t>{static_cast<uint32_t>(value), 0});
    return it != replaced.end() && it->first == value ? it->second : value;
  }
};

// Finds the duplicates of every object in `t` (valid JSON, offsets below 2^32).
Duplicates find_duplicates(std::string_view t);

}  // namespace docpipe
