#pragma once
// One sequence's position in a compiled grammar. The position is a set of
// stacks (the automaton is deterministic per rule, but alternatives that call
// different rules on the same bytes run side by side), kept as persistent
// linked stacks in the matcher's own arena, so advancing and rolling back copy
// nothing but a few node ids.

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/structured/stack_arena.h"
#include "engine/structured/token_masks.h"

namespace ember::structured {

class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar);
  ~GrammarMatcher();

  // Bit t of `mask` (bitmask_words(vocab) words) set iff token t keeps the
  // output in the grammar's language; the EOS ids are set iff the grammar may
  // end here (only they, once it has ended). A dead end (no token fits, as when
  // the vocabulary lacks a byte the grammar needs) allows EOS too, so a
  // sequence stops rather than runs on unconstrained.
  void fill_mask(uint32_t* mask);
  // Advances over one sampled token; false (and no change) if the grammar rejects it.
  // An EOS id is accepted where the grammar may end, and ends it.
  bool accept(int32_t token);
  // Whether the bytes keep the output in the language (no change).
  bool accepts_bytes(std::string_view bytes);
  // Undoes the last `n` accepted tokens (speculative tokens the target rejected).
  void rollback(int32_t n);
  // The output so far is a whole sentence of the grammar.
  bool can_end();
  // EOS was accepted, or no byte may follow.
  bool ended();
  int32_t num_accepted() const { return static_cast<int32_t>(history_.size()) - 1; }
  const CompiledGrammar& grammar() const { return *grammar_; }

 private:
  struct Position {
    std::vector<Head> heads;  // stacks after the last byte, not expanded
    bool eos = false;            // EOS accepted
  };
  // A position's mask depends on its stacks alone (heads of persistent nodes: the same stack, the same Head), and
  // a sequence inside a string or a repeated class meets the same stacks token after token: the masks of a few
  // positions met more than once are kept, the least recently used replaced (a position met once costs only its
  // key in a ring of recent ones). Positions with many stacks are not kept.
  static constexpr size_t kMaskCacheEntries = 8, kSeenEntries = 16, kMaxCachedHeads = 16;
  struct CachedMask {
    std::vector<Head> heads;
    TokenBitmask mask;
    uint64_t last_use = 0;
  };
  // Runs `bytes` from the current position; the stacks after them into `out` when given.
  bool run(std::string_view bytes, std::vector<Head>* out);
  void compute_mask(uint32_t* mask);
  // Sets the bits of the uncertain tokens of frontier stack `h` that the real stack accepts.
  void check_uncertain(const Head& h, const std::vector<int32_t>& tokens, uint32_t* mask);

  std::shared_ptr<const CompiledGrammar> grammar_;
  std::unique_ptr<StackArena> arena_;
  std::vector<Position> history_;  // history_[0]: the start; one more per accepted token
  std::vector<Head> frontier_, heads_;
  std::vector<std::vector<Head>> depth_heads_;  // check_uncertain's walk: stacks per byte depth
  std::vector<CachedMask> mask_cache_;
  std::vector<std::vector<Head>> seen_;  // a ring: the stacks of recent positions not in mask_cache_
  size_t next_seen_ = 0;
  uint64_t mask_uses_ = 0;
};

}  // namespace ember::structured
