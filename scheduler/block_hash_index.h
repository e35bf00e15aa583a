#pragma once
// Open-addressing map from a cached block's chain key (SHA-256) to its block id, sized
// once for the whole pool (every block holds at most one key, so it never grows).
// Why not std::unordered_map: one node allocation per entry and a pointer chase per probe
// made prefix-cache lookups the largest cost of a scheduler step; here a probe is one
// contiguous slot, the load factor stays <= 0.5, and deletion shifts back (no tombstones).

#include <cstdint>
#include <cstring>
#include <vector>

#include "scheduler/sha256.h"

namespace ember {

class BlockHashIndex {
 public:
  explicit BlockHashIndex(int32_t max_entries) {
    size_t cap = 16;
    while (cap < 2 * static_cast<size_t>(max_entries)) cap *= 2;
    slots_.resize(cap);
    mask_ = cap - 1;
  }

  // Block id cached under `key`, or -1.
  int32_t find(const Sha256Digest& key) const {
    for (size_t i = home(key);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.block < 0) return -1;
      if (s.key == key) return s.block;
    }
  }

  // False (and no change) when `key` is already present.
  bool insert(const Sha256Digest& key, int32_t block) {
    size_t i = home(key);
    for (; slots_[i].block >= 0; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return false;
    }
    slots_[i] = {key, block};
    ++size_;
    return true;
  }

  // Removes `key` if present (backward-shift deletion keeps every probe chain unbroken).
  void erase(const Sha256Digest& key) {
    size_t i = home(key);
    for (; slots_[i].key != key; i = (i + 1) & mask_) {
      if (slots_[i].block < 0) return;
    }
    if (slots_[i].block < 0) return;
    --size_;
    for (size_t j = i;;) {
      slots_[i].block = -1;
      for (;;) {
        j = (j + 1) & mask_;
        if (slots_[j].block < 0) return;
        const size_t k = home(slots_[j].key);
        // Move j back into the hole at i unless its home lies cyclically in (i, j].
        const bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) break;
      }
      slots_[i] = slots_[j];
      i = j;
    }
  }

  size_t size() const { return size_; }

  template <class F>
  void for_each(F&& f) const {
    for (const Slot& s : slots_)
      if (s.block >= 0) f(s.key, s.block);
  }

 private:
  struct Slot {
    Sha256Digest key{};
    int32_t block = -1;
  };
  size_t home(const Sha256Digest& key) const {
    uint64_t v;
    std::memcpy(&v, key.data(), sizeof(v));  // SHA-256 output is uniform already
    return static_cast<size_t>(v) & mask_;
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace ember
