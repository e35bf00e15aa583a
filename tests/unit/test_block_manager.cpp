// BlockManager: allocation is all or nothing, ref counts, LRU reuse of freed cached
// blocks, and prefix-cache hits only on exact (chain, tokens, salt) matches.
#include "scheduler/block_manager.h"
#include "scheduler/block_hash_index.h"

#include <gtest/gtest.h>

#include <map>
#include <numeric>
#include <random>
#include <vector>

namespace ember {
namespace {

std::vector<int32_t> iota_tokens(int32_t n, int32_t first = 100) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

void expect_ok(const BlockManager& bm, std::vector<const BlockTable*> owners) {
  EXPECT_EQ(bm.check_invariants(owners), "");
}

// A request that computed all of `tokens` and registered its full blocks.
BlockTable computed(BlockManager& bm, const std::vector<int32_t>& tokens, std::string_view salt = "") {
  BlockTable t;
  PrefixHit hit = bm.find_cached_prefix(tokens, salt, &t);
  EXPECT_TRUE(bm.allocate_slots(&t, static_cast<int64_t>(tokens.size()), &hit));
  bm.cache_full_blocks(&t, tokens, static_cast<int64_t>(tokens.size()), salt);
  return t;
}

TEST(BlockManager, FreshPoolIsWholeAndEmpty) {
  BlockManager bm(8, 16, true);
  EXPECT_EQ(bm.num_free_blocks(), 8);
  EXPECT_EQ(bm.usage(), 0.0);
  EXPECT_EQ(bm.num_cached_blocks(), 0u);
  expect_ok(bm, {});
}

TEST(BlockManager, AllocatesCeilOfTokensAndGrowsInPlace) {
  BlockManager bm(8, 4, false);
  BlockTable t;
  ASSERT_TRUE(bm.allocate_slots(&t, 5));
  EXPECT_EQ(t.ids.size(), 2u);
  ASSERT_TRUE(bm.allocate_slots(&t, 8));  // still fits two blocks
  EXPECT_EQ(t.ids.size(), 2u);
  ASSERT_TRUE(bm.allocate_slots(&t, 9));
  EXPECT_EQ(t.ids.size(), 3u);
  EXPECT_EQ(bm.num_free_blocks(), 5);
  EXPECT_DOUBLE_EQ(bm.usage(), 3.0 / 8.0);
  expect_ok(bm, {&t});
  bm.free(&t);
  EXPECT_TRUE(t.ids.empty());
  EXPECT_EQ(bm.num_free_blocks(), 8);
  expect_ok(bm, {&t});
}

TEST(BlockManager, FailedAllocationChangesNothing) {
  BlockManager bm(3, 4, false);
  BlockTable a, b;
  ASSERT_TRUE(bm.allocate_slots(&a, 8));
  ASSERT_TRUE(bm.allocate_slots(&b, 1));
  const std::vector<int32_t> before = b.ids;
  EXPECT_FALSE(bm.allocate_slots(&b, 9));  // needs 2 more, 0 free
  EXPECT_EQ(b.ids, before);
  EXPECT_EQ(bm.num_free_blocks(), 0);
  expect_ok(bm, {&a, &b});
}

TEST(BlockManager, NoBlockHandedOutTwice) {
  BlockManager bm(16, 2, false);
  std::vector<BlockTable> tables(4);
  for (auto& t : tables) ASSERT_TRUE(bm.allocate_slots(&t, 8));
  std::vector<int> seen(16, 0);
  for (auto& t : tables)
    for (int32_t b : t.ids) ++seen[b];
  for (int s : seen) EXPECT_EQ(s, 1);
  std::vector<const BlockTable*> owners;
  for (auto& t : tables) owners.push_back(&t);
  expect_ok(bm, owners);
}

TEST(BlockManager, HitLeavesTheLastTokenToCompute) {
  BlockManager bm(8, 4, true);
  const auto tokens = iota_tokens(8);  // exactly two full blocks
  BlockTable a = computed(bm, tokens);
  EXPECT_EQ(bm.num_cached_blocks(), 2u);
  BlockTable b;
  PrefixHit hit = bm.find_cached_prefix(tokens, "", &b);
  EXPECT_EQ(hit.num_tokens, 4);  // not 8: the 8th token's logits are needed
  ASSERT_EQ(hit.blocks.size(), 1u);
  EXPECT_EQ(hit.blocks[0], a.ids[0]);
  auto longer = iota_tokens(9);
  BlockTable c;
  EXPECT_EQ(bm.find_cached_prefix(longer, "", &c).num_tokens, 8);
}

TEST(BlockManager, SharedHitBlocksAreRefCounted) {
  BlockManager bm(8, 4, true);
  const auto tokens = iota_tokens(9);
  BlockTable a = computed(bm, tokens);
  BlockTable b;
  PrefixHit hit = bm.find_cached_prefix(tokens, "", &b);
  ASSERT_EQ(hit.num_tokens, 8);
  ASSERT_TRUE(bm.allocate_slots(&b, 9, &hit));
  EXPECT_EQ(b.ids[0], a.ids[0]);
  EXPECT_EQ(b.ids[1], a.ids[1]);
  EXPECT_NE(b.ids[2], a.ids[2]);  // the partial block is never shared
  EXPECT_EQ(bm.ref_count(a.ids[0]), 2);
  EXPECT_EQ(bm.ref_count(a.ids[2]), 1);
  expect_ok(bm, {&a, &b});
  bm.free(&a);
  EXPECT_EQ(bm.ref_count(b.ids[0]), 1);
  expect_ok(bm, {&a, &b});
  bm.free(&b);
  EXPECT_EQ(bm.num_free_blocks(), 8);
  expect_ok(bm, {});
}

TEST(BlockManager, SaltIsolatesTenants) {
  BlockManager bm(8, 4, true);
  const auto tokens = iota_tokens(9);
  BlockTable a = computed(bm, tokens, "tenant-a");
  BlockTable other, same, none;
  EXPECT_EQ(bm.find_cached_prefix(tokens, "tenant-b", &other).num_tokens, 0);
  EXPECT_EQ(bm.find_cached_prefix(tokens, "", &none).num_tokens, 0);
  EXPECT_EQ(bm.find_cached_prefix(tokens, "tenant-a", &same).num_tokens, 8);
}

TEST(BlockManager, ChainMakesALaterBlockDependOnItsPrefix) {
  BlockManager bm(8, 4, true);
  auto tokens = iota_tokens(9);
  BlockTable a = computed(bm, tokens);
  auto changed = tokens;
  changed[0] = 7;  // first block differs, second block's own tokens identical
  BlockTable b;
  EXPECT_EQ(bm.find_cached_prefix(changed, "", &b).num_tokens, 0);
  auto tail_changed = tokens;
  tail_changed[5] = 7;
  BlockTable c;
  EXPECT_EQ(bm.find_cached_prefix(tail_changed, "", &c).num_tokens, 4);
}

TEST(BlockManager, HashSeparatesParentSaltAndTokens) {
  const auto t = iota_tokens(4);
  const BlockHash root = BlockManager::hash_block(nullptr, t, "");
  EXPECT_EQ(root, BlockManager::hash_block(nullptr, t, ""));
  EXPECT_NE(root, BlockManager::hash_block(nullptr, t, "s"));
  EXPECT_NE(root, BlockManager::hash_block(&root, t, ""));
  EXPECT_NE(root, BlockManager::hash_block(nullptr, iota_tokens(4, 101), ""));
}

TEST(BlockManager, FreedCachedBlocksStayHittableUntilEvictedTailFirst) {
  BlockManager bm(4, 4, true);
  const auto tokens = iota_tokens(13);  // 3 full blocks + 1 partial: the whole pool
  BlockTable a = computed(bm, tokens);
  ASSERT_EQ(bm.num_free_blocks(), 0);
  bm.free(&a);
  EXPECT_EQ(bm.num_free_blocks(), 4);
  EXPECT_EQ(bm.num_cached_blocks(), 3u);
  {
    BlockTable probe;
    EXPECT_EQ(bm.find_cached_prefix(tokens, "", &probe).num_tokens, 12);
  }
  // Two fresh blocks: the uncached partial block goes first, then A's tail block.
  BlockTable b;
  ASSERT_TRUE(bm.allocate_slots(&b, 8));
  EXPECT_EQ(bm.num_cached_blocks(), 2u);
  BlockTable probe;
  EXPECT_EQ(bm.find_cached_prefix(tokens, "", &probe).num_tokens, 8);
  expect_ok(bm, {&b});
}

TEST(BlockManager, HitOnFreeBlocksCountsAgainstAvailability) {
  BlockManager bm(3, 4, true);
  const auto tokens = iota_tokens(9);
  BlockTable a = computed(bm, tokens);
  bm.free(&a);
  BlockTable b;
  PrefixHit hit = bm.find_cached_prefix(tokens, "", &b);
  ASSERT_EQ(hit.blocks.size(), 2u);
  ASSERT_TRUE(bm.allocate_slots(&b, 9, &hit));  // 2 revived + 1 new = the whole pool
  EXPECT_EQ(bm.num_free_blocks(), 0);
  BlockTable c;
  EXPECT_FALSE(bm.allocate_slots(&c, 1));
  expect_ok(bm, {&b, &c});

  // Same pool, but the hit would leave too few blocks: all or nothing.
  bm.free(&b);
  BlockTable d;
  ASSERT_TRUE(bm.allocate_slots(&d, 1));  // takes the uncached block
  BlockTable e;
  PrefixHit hit2 = bm.find_cached_prefix(tokens, "", &e);
  ASSERT_EQ(hit2.blocks.size(), 2u);
  EXPECT_FALSE(bm.allocate_slots(&e, 9, &hit2));
  EXPECT_TRUE(e.ids.empty());
  EXPECT_EQ(bm.num_free_blocks(), 2);
  EXPECT_EQ(bm.prefix_hits(), 8);  // only the committed hit counts
  expect_ok(bm, {&d, &e});
}

TEST(BlockManager, CountersTrackQueriesAndHitsInTokens) {
  BlockManager bm(8, 4, true);
  const auto tokens = iota_tokens(9);
  BlockTable a = computed(bm, tokens);  // miss: 9 queried, 0 hit
  BlockTable b = computed(bm, tokens);  // 9 queried, 8 hit
  EXPECT_EQ(bm.prefix_queries(), 18);
  EXPECT_EQ(bm.prefix_hits(), 8);
}

TEST(BlockManager, DuplicateContentComputedTwiceStaysConsistent) {
  BlockManager bm(8, 4, true);
  const auto tokens = iota_tokens(9);
  BlockTable a, b;
  ASSERT_TRUE(bm.allocate_slots(&a, 9));
  ASSERT_TRUE(bm.allocate_slots(&b, 9));  // both before either is cached: no hit
  bm.cache_full_blocks(&a, tokens, 9, "");
  bm.cache_full_blocks(&b, tokens, 9, "");
  EXPECT_EQ(bm.num_cached_blocks(), 2u);
  EXPECT_TRUE(bm.is_cached(a.ids[0]));
  EXPECT_FALSE(bm.is_cached(b.ids[0]));
  expect_ok(bm, {&a, &b});
  bm.free(&a);
  bm.free(&b);
  EXPECT_EQ(bm.num_free_blocks(), 8);
  expect_ok(bm, {});
}

TEST(BlockManager, OnlyComputedFullBlocksAreCached) {
  BlockManager bm(8, 4, true);
  const auto tokens = iota_tokens(12);
  BlockTable a;
  ASSERT_TRUE(bm.allocate_slots(&a, 12));
  bm.cache_full_blocks(&a, tokens, 7, "");  // only block 0 is fully computed
  EXPECT_EQ(bm.num_cached_blocks(), 1u);
  bm.cache_full_blocks(&a, tokens, 12, "");
  EXPECT_EQ(bm.num_cached_blocks(), 3u);
  expect_ok(bm, {&a});
}

TEST(BlockManager, DisabledCachingNeverHits) {
  BlockManager bm(8, 4, false);
  const auto tokens = iota_tokens(9);
  BlockTable a = computed(bm, tokens);
  BlockTable b;
  EXPECT_EQ(bm.find_cached_prefix(tokens, "", &b).num_tokens, 0);
  EXPECT_EQ(bm.num_cached_blocks(), 0u);
  expect_ok(bm, {&a});
}

TEST(BlockManager, InvariantCheckCatchesCorruption) {
  BlockManager bm(4, 4, false);
  BlockTable a;
  ASSERT_TRUE(bm.allocate_slots(&a, 4));
  BlockTable forged;
  forged.ids = {a.ids[0]};  // claims a block it never got
  EXPECT_NE(bm.check_invariants(std::vector<const BlockTable*>{&a, &forged}), "");
  EXPECT_NE(bm.check_invariants(std::vector<const BlockTable*>{}), "");  // a's block looks leaked
  BlockTable wild;
  wild.ids = {99};
  EXPECT_NE(bm.check_invariants(std::vector<const BlockTable*>{&a, &wild}), "");
}

// The open-addressing index against std::map, with keys forced onto few home slots so that
// probe chains wrap around and backward-shift deletion has real work to do.
TEST(BlockHashIndex, MatchesAReferenceMapUnderHeavyCollisions) {
  BlockHashIndex index(8);  // 16 slots
  std::map<BlockHash, int32_t> ref;
  std::mt19937 rng(7);
  auto key = [](uint32_t n) {
    BlockHash k{};
    k[0] = static_cast<uint8_t>(n % 3 == 0 ? 15 : n % 4);  // homes 0..3 and 15 (wraps)
    k[9] = static_cast<uint8_t>(n);
    return k;
  };
  for (int i = 0; i < 20000; ++i) {
    const uint32_t n = rng() % 24;
    const BlockHash k = key(n);
    if (rng() % 2 == 0 && ref.size() < 8) {
      const bool inserted = index.insert(k, static_cast<int32_t>(n));
      ASSERT_EQ(inserted, ref.emplace(k, static_cast<int32_t>(n)).second);
    } else {
      index.erase(k);
      ref.erase(k);
    }
    ASSERT_EQ(index.size(), ref.size());
    for (uint32_t m = 0; m < 24; ++m) {
      auto it = ref.find(key(m));
      ASSERT_EQ(index.find(key(m)), it == ref.end() ? -1 : it->second) << "step " << i << " key " << m;
    }
  }
}

}  // namespace
}  // namespace ember
