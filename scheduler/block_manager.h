#pragma once
// BlockManager: the fixed pool of paged KV-cache blocks and the automatic prefix cache.
//
// Guarantees (checked by check_invariants() and the property test):
//  - a block is either free (ref_count 0, in the free list exactly once) or owned
//    (ref_count == number of BlockTables that list it); never handed out twice;
//  - a block is hittable through the prefix cache only if it is FULL and its KV was
//    computed for exactly the same token ids, the same predecessors (hash chain) and
//    the same cache salt;
//  - freeing every table returns the pool to num_blocks free blocks.
//
// Prefix cache. A full block's key is SHA-256(parent key || [salt, first block only] ||
// its block_size token ids); chaining makes the key identify the whole prefix. Freed
// cached blocks stay in the hash table and in an LRU-ordered free list: they are reused
// by a later hit (ref_count 0 -> 1, removed from the free list) or evicted only when a
// fresh block is needed and they reach the front of the list. Uncached free blocks go to
// the front (worthless, reuse them first); cached ones to the back.
//
// Not thread safe: the engine thread owns it (DESIGN.md).

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "scheduler/block_hash_index.h"
#include "scheduler/sha256.h"

namespace ember {

using BlockHash = Sha256Digest;

// The KV blocks one request holds, owned by the caller (the scheduler keeps it in
// SchedRequest). ids[i] stores the KV of token positions [i*block_size, (i+1)*block_size).
// hashes[i] is the chain key of the request's i-th full block of tokens; it depends only
// on the tokens, so it survives preemption (hashes may be longer than ids) and is never
// recomputed.
struct BlockTable {
  std::vector<int32_t> ids;
  std::vector<BlockHash> hashes;
  // Leading ids already offered to the prefix cache (keeps cache_full_blocks O(new blocks)).
  int32_t num_registered = 0;
};

// Result of a prefix lookup. Nothing is reserved until allocate_slots() commits it, so a
// lookup for a request that then does not fit has no effect (and is not counted).
struct PrefixHit {
  std::vector<int32_t> blocks;  // cached blocks covering tokens [0, num_tokens)
  int32_t num_tokens = 0;       // always a multiple of block_size, < the tokens queried
  int32_t num_queried = 0;      // tokens of the request at lookup (for the hit rate)
};

class BlockManager {
 public:
  // num_blocks >= 1, block_size >= 1 (validated by the caller: SchedulerConfig).
  BlockManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching);

  // Longest run of cached full blocks that prefixes `tokens`, capped so that at least the
  // last token is left to compute (its logits are needed). Extends table->hashes as far
  // as it looks. Returns an empty hit when prefix caching is off.
  PrefixHit find_cached_prefix(std::span<const int32_t> tokens, std::string_view cache_salt,
                               BlockTable* table) const;

  // Grows `table` so that it covers `num_tokens` token positions. With a hit (only for a
  // table that holds no blocks yet) the hit blocks come first and are shared (ref_count++).
  // All or nothing: returns false and changes nothing when the free blocks (after the hit
  // claimed its free ones) do not suffice. Commits the hit to the query/hit counters.
  bool allocate_slots(BlockTable* table, int64_t num_tokens, const PrefixHit* hit = nullptr);

  // Registers the table's full blocks whose KV is computed (positions < num_computed) in
  // the prefix cache. Call after the step that computed them (Scheduler::update), so a
  // cache hit never points at KV that is not written yet. A block whose key is already
  // cached (same content computed twice concurrently) simply stays uncached.
  void cache_full_blocks(BlockTable* table, std::span<const int32_t> tokens, int64_t num_computed,
                         std::string_view cache_salt);

  // Releases the table's blocks, tail first, so that under LRU a request's tail blocks are
  // evicted before its head (the head is the most shareable prefix). Clears table->ids,
  // keeps table->hashes.
  void free(BlockTable* table);
  // Frees the table's blocks past the first ceil(num_tokens / block_size) (speculative
  // rollback: blocks taken for rejected lookahead). Registered (cached) blocks hold
  // computed tokens only, so they are never past the cut.
  void trim(BlockTable* table, int64_t num_tokens);

  int32_t num_blocks() const { return static_cast<int32_t>(ref_count_.size()); }
  int32_t block_size() const { return block_size_; }
  int32_t num_free_blocks() const { return num_free_; }
  // Fraction of blocks owned by some request (cached-but-free blocks count as free).
  double usage() const;
  bool prefix_caching_enabled() const { return enable_prefix_caching_; }

  // Counters in tokens, committed by allocate_slots (vLLM's prefix cache queries/hits).
  int64_t prefix_queries() const { return prefix_queries_; }
  int64_t prefix_hits() const { return prefix_hits_; }

  // Introspection for tests.
  int32_t ref_count(int32_t block) const { return ref_count_[block]; }
  bool is_cached(int32_t block) const { return cached_[block]; }
  const BlockHash& block_hash(int32_t block) const { return hash_of_[block]; }
  size_t num_cached_blocks() const { return cache_.size(); }

  // Full consistency check against the complete set of live tables: ref counts equal the
  // number of owning tables, free list well formed (each free block exactly once, count
  // right), hash table <-> block cached flags consistent. Returns "" when all hold, else
  // a description of the first violation.
  std::string check_invariants(std::span<const BlockTable* const> owners) const;

  // Chain key of one full block (exposed for tests and the property test's shadow map).
  static BlockHash hash_block(const BlockHash* parent, std::span<const int32_t> block_tokens,
                              std::string_view cache_salt);

 private:
  int32_t pop_free_front();  // evicts from the prefix cache if the block was cached
  // Drops one reference; at zero the block joins the free list: an uncached one
  // at the front (reused first), a cached one at the back (its prefix stays
  // findable longest).
  void release(int32_t block);
  void unlink_free(int32_t block);
  void push_free_front(int32_t block);
  void push_free_back(int32_t block);

  int32_t block_size_;
  bool enable_prefix_caching_;
  std::vector<int32_t> ref_count_;
  std::vector<uint8_t> cached_;     // block is in cache_ (its hash_of_ is valid)
  std::vector<BlockHash> hash_of_;
  // Intrusive doubly linked free list; -1 ends it. Front = next to be reused.
  std::vector<int32_t> prev_, next_;
  int32_t head_ = -1, tail_ = -1, num_free_ = 0;
  BlockHashIndex cache_;
  int64_t prefix_queries_ = 0, prefix_hits_ = 0;
};

}  // namespace ember
