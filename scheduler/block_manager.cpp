#include "scheduler/block_manager.h"

#include <algorithm>
#include <cassert>

namespace ember {

BlockManager::BlockManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching)
    : block_size_(block_size),
      enable_prefix_caching_(enable_prefix_caching),
      ref_count_(num_blocks, 0),
      cached_(num_blocks, 0),
      hash_of_(num_blocks),
      prev_(num_blocks, -1),
      next_(num_blocks, -1),
      cache_(enable_prefix_caching ? num_blocks : 0) {
  assert(num_blocks >= 1 && block_size >= 1);
  for (int32_t b = 0; b < num_blocks; ++b) push_free_back(b);
}

BlockHash BlockManager::hash_block(const BlockHash* parent, std::span<const int32_t> block_tokens,
                                   std::string_view cache_salt) {
  // Domain separation: a tag byte says whether a parent key or the salt follows, and the
  // salt is length-prefixed, so no two (parent, salt, tokens) inputs share an encoding.
  // Only the first block takes the salt: the chain carries it to every later block.
  // Token ids are hashed in host byte order: keys never leave this process.
  Sha256 h;
  if (parent != nullptr) {
    const uint8_t tag = 1;
    h.update(&tag, 1);
    h.update(parent->data(), parent->size());
  } else {
    const uint8_t tag = 0;
    const uint64_t salt_len = cache_salt.size();
    h.update(&tag, 1);
    h.update(&salt_len, sizeof(salt_len));
    h.update(cache_salt);
  }
  h.update(block_tokens.data(), block_tokens.size_bytes());
  return h.finish();
}

PrefixHit BlockManager::find_cached_prefix(std::span<const int32_t> tokens, std::string_view cache_salt,
                                           BlockTable* table) const {
  PrefixHit hit;
  hit.num_queried = static_cast<int32_t>(tokens.size());
  if (!enable_prefix_caching_ || tokens.empty()) return hit;
  // The last token must be computed to produce logits, so at most (n - 1) tokens hit.
  const size_t max_blocks = (tokens.size() - 1) / static_cast<size_t>(block_size_);
  for (size_t i = 0; i < max_blocks; ++i) {
    if (i == table->hashes.size()) {
      table->hashes.push_back(hash_block(i == 0 ? nullptr : &table->hashes[i - 1],
                                         tokens.subspan(i * block_size_, block_size_), cache_salt));
    }
    const int32_t b = cache_.find(table->hashes[i]);
    if (b < 0) break;
    hit.blocks.push_back(b);
  }
  hit.num_tokens = static_cast<int32_t>(hit.blocks.size()) * block_size_;
  return hit;
}

bool BlockManager::allocate_slots(BlockTable* table, int64_t num_tokens, const PrefixHit* hit) {
  assert(hit == nullptr || table->ids.empty());
  const int64_t needed = (num_tokens + block_size_ - 1) / block_size_;
  const int64_t num_hit = hit != nullptr ? static_cast<int64_t>(hit->blocks.size()) : 0;
  const int64_t num_new = std::max<int64_t>(0, needed - static_cast<int64_t>(table->ids.size()) - num_hit);
  int64_t hit_free = 0;  // hit blocks sitting in the free list: taking them shrinks it
  for (int64_t i = 0; i < num_hit; ++i) hit_free += ref_count_[hit->blocks[i]] == 0;
  if (num_new + hit_free > num_free_) return false;

  for (int64_t i = 0; i < num_hit; ++i) {
    const int32_t b = hit->blocks[i];
    if (ref_count_[b]++ == 0) unlink_free(b);
    table->ids.push_back(b);
  }
  for (int64_t i = 0; i < num_new; ++i) {
    const int32_t b = pop_free_front();
    ref_count_[b] = 1;
    table->ids.push_back(b);
  }
  if (hit != nullptr) {
    prefix_queries_ += hit->num_queried;
    prefix_hits_ += hit->num_tokens;
    // Hit blocks are already registered: start offering blocks after them.
    table->num_registered = static_cast<int32_t>(num_hit);
  }
  return true;
}

void BlockManager::cache_full_blocks(BlockTable* table, std::span<const int32_t> tokens,
                                     int64_t num_computed, std::string_view cache_salt) {
  if (!enable_prefix_caching_) return;
  const int64_t computed = std::min<int64_t>(num_computed, static_cast<int64_t>(tokens.size()));
  const int32_t num_full =
      static_cast<int32_t>(std::min<int64_t>(computed / block_size_, static_cast<int64_t>(table->ids.size())));
  for (int32_t i = table->num_registered; i < num_full; ++i) {
    while (static_cast<int32_t>(table->hashes.size()) <= i) {
      const size_t j = table->hashes.size();
      table->hashes.push_back(hash_block(j == 0 ? nullptr : &table->hashes[j - 1],
                                         tokens.subspan(j * block_size_, block_size_), cache_salt));
    }
    const int32_t b = table->ids[i];
    if (cached_[b]) continue;  // shared hit block, registered by whoever computed it
    if (cache_.insert(table->hashes[i], b)) {
      cached_[b] = 1;
      hash_of_[b] = table->hashes[i];
    }
  }
  table->num_registered = std::max(table->num_registered, num_full);
}

void BlockManager::release(int32_t b) {
  assert(ref_count_[b] > 0);
  if (--ref_count_[b] > 0) return;
  if (cached_[b]) {
    push_free_back(b);
  } else {
    push_free_front(b);
  }
}

void BlockManager::free(BlockTable* table) {
  for (auto it = table->ids.rbegin(); it != table->ids.rend(); ++it) release(*it);
  table->ids.clear();
  table->num_registered = 0;
}

void BlockManager::trim(BlockTable* table, int64_t num_tokens) {
  const auto keep = static_cast<size_t>((num_tokens + block_size_ - 1) / block_size_);
  assert(static_cast<size_t>(table->num_registered) <= keep);
  while (table->ids.size() > keep) {
    release(table->ids.back());
    table->ids.pop_back();
  }
}

double BlockManager::usage() const {
  return static_cast<double>(num_blocks() - num_free_) / static_cast<double>(num_blocks());
}

int32_t BlockManager::pop_free_front() {
  const int32_t b = head_;
  assert(b >= 0);
  unlink_free(b);
  if (cached_[b]) {  // evict: its KV is about to be overwritten
    cache_.erase(hash_of_[b]);
    cached_[b] = 0;
  }
  return b;
}

void BlockManager::unlink_free(int32_t b) {
  const int32_t p = prev_[b], n = next_[b];
  (p >= 0 ? next_[p] : head_) = n;
  (n >= 0 ? prev_[n] : tail_) = p;
  prev_[b] = next_[b] = -1;
  --num_free_;
}

void BlockManager::push_free_front(int32_t b) {
  prev_[b] = -1;
  next_[b] = head_;
  (head_ >= 0 ? prev_[head_] : tail_) = b;
  head_ = b;
  ++num_free_;
}

void BlockManager::push_free_back(int32_t b) {
  next_[b] = -1;
  prev_[b] = tail_;
  (tail_ >= 0 ? next_[tail_] : head_) = b;
  tail_ = b;
  ++num_free_;
}

std::string BlockManager::check_invariants(std::span<const BlockTable* const> owners) const {
  const int32_t n = num_blocks();
  std::vector<int32_t> owned(n, 0);
  for (const BlockTable* t : owners) {
    for (size_t i = 0; i < t->ids.size(); ++i) {
      const int32_t b = t->ids[i];
      if (b < 0 || b >= n) return "block id " + std::to_string(b) + " out of range";
      ++owned[b];
      if (static_cast<int32_t>(i) < t->num_registered && cached_[b] &&
          (i >= t->hashes.size() || hash_of_[b] != t->hashes[i])) {
        return "block " + std::to_string(b) + " is cached under another key than its owner's chain";
      }
    }
    if (t->num_registered > static_cast<int32_t>(t->ids.size())) return "num_registered past the table";
  }
  for (int32_t b = 0; b < n; ++b) {
    if (owned[b] != ref_count_[b]) {
      return "block " + std::to_string(b) + " ref_count " + std::to_string(ref_count_[b]) + " but " +
             std::to_string(owned[b]) + " owners";
    }
  }
  std::vector<uint8_t> seen(n, 0);
  int32_t count = 0, prev = -1;
  for (int32_t b = head_; b >= 0; prev = b, b = next_[b]) {
    if (b >= n || seen[b]) return "free list revisits block " + std::to_string(b);
    if (ref_count_[b] != 0) return "free list holds owned block " + std::to_string(b);
    if (prev_[b] != prev) return "free list back link broken at block " + std::to_string(b);
    seen[b] = 1;
    ++count;
  }
  if (prev != tail_) return "free list tail mismatch";
  if (count != num_free_) return "free count " + std::to_string(num_free_) + " but list has " + std::to_string(count);
  for (int32_t b = 0; b < n; ++b) {
    if (ref_count_[b] == 0 && !seen[b]) return "block " + std::to_string(b) + " leaked (no owner, not free)";
  }
  size_t num_cached = 0;
  for (int32_t b = 0; b < n; ++b) {
    if (!cached_[b]) continue;
    ++num_cached;
    if (cache_.find(hash_of_[b]) != b) return "cached block " + std::to_string(b) + " not in the hash table";
  }
  if (num_cached != cache_.size()) return "hash table size differs from the blocks marked cached";
  std::string err;
  cache_.for_each([&](const BlockHash& h, int32_t b) {
    if (err.empty() && (b < 0 || b >= n || !cached_[b] || hash_of_[b] != h)) err = "hash table entry for a block not cached under it";
  });
  if (!err.empty()) return err;
  if (!enable_prefix_caching_ && cache_.size() != 0) return "prefix cache used while disabled";
  return "";
}

}  // namespace ember
