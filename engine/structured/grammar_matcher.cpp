#include "engine/structured/grammar_matcher.h"

#include <algorithm>

namespace ember::structured {

GrammarMatcher::GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar)
    : grammar_(std::move(grammar)), arena_(std::make_unique<StackArena>(grammar_->grammar())) {
  const Grammar& g = grammar_->grammar();
  history_.push_back({{Head{g.rule_start(g.root_rule()), StackArena::kBottom}}, false});
}

GrammarMatcher::~GrammarMatcher() = default;

bool GrammarMatcher::run(std::string_view bytes, std::vector<Head>* out) {
  if (history_.back().eos) return false;
  heads_ = history_.back().heads;
  StackArena::Reach reach;
  for (char b : bytes) {
    arena_->expand(heads_, frontier_, reach);
    arena_->step(frontier_, static_cast<uint8_t>(b), heads_);
    if (heads_.empty()) return false;
  }
  if (out) *out = heads_;
  return true;
}

bool GrammarMatcher::accepts_bytes(std::string_view bytes) {
  const size_t mark = arena_->mark();
  const bool ok = run(bytes, nullptr);
  arena_->release(mark);
  return ok;
}

bool GrammarMatcher::accept(int32_t token) {
  const Vocabulary& v = grammar_->vocab();
  if (token < 0 || token >= v.size()) return false;
  if (std::find(v.eos_ids().begin(), v.eos_ids().end(), token) != v.eos_ids().end()) {
    if (!can_end()) return false;
    history_.push_back({history_.back().heads, true});
    return true;
  }
  const std::string& bytes = v.bytes(token);
  if (bytes.empty()) return false;
  std::vector<Head> heads;
  if (!run(bytes, &heads)) return false;  // the nodes it made stay: they may be shared by the next position
  history_.push_back({std::move(heads), false});
  return true;
}

void GrammarMatcher::rollback(int32_t n) {
  n = std::min<int32_t>(n, num_accepted());
  history_.resize(history_.size() - static_cast<size_t>(std::max(0, n)));
}

bool GrammarMatcher::can_end() {
  if (history_.back().eos) return false;
  StackArena::Reach reach;
  arena_->expand(history_.back().heads, frontier_, reach);
  return reach.can_end;
}

bool GrammarMatcher::ended() {
  if (history_.back().eos) return true;
  StackArena::Reach reach;
  arena_->expand(history_.back().heads, frontier_, reach);
  return frontier_.empty();
}

void GrammarMatcher::fill_mask(uint32_t* mask) {
  const size_t words = bitmask_words(grammar_->vocab().size());
  const Position& at = history_.back();
  if (at.eos) return compute_mask(mask);
  for (CachedMask& c : mask_cache_) {
    if (c.heads != at.heads) continue;
    c.last_use = ++mask_uses_;
    std::copy(c.mask.begin(), c.mask.end(), mask);
    return;
  }
  compute_mask(mask);
  if (at.heads.size() > kMaxCachedHeads) return;
  if (std::find(seen_.begin(), seen_.end(), at.heads) == seen_.end()) {
    if (seen_.size() < kSeenEntries) {
      seen_.push_back(at.heads);
    } else {
      seen_[next_seen_] = at.heads;
      next_seen_ = (next_seen_ + 1) % kSeenEntries;
    }
    return;
  }
  CachedMask* slot = nullptr;
  if (mask_cache_.size() < kMaskCacheEntries) {
    slot = &mask_cache_.emplace_back();
  } else {
    slot = &*std::min_element(mask_cache_.begin(), mask_cache_.end(),
                              [](const CachedMask& a, const CachedMask& b) { return a.last_use < b.last_use; });
  }
  slot->heads = at.heads;
  slot->mask.assign(mask, mask + words);
  slot->last_use = ++mask_uses_;
}

void GrammarMatcher::compute_mask(uint32_t* mask) {
  const Vocabulary& v = grammar_->vocab();
  const size_t words = bitmask_words(v.size());
  std::fill(mask, mask + words, 0u);
  auto allow_eos = [&] {
    for (int32_t e : v.eos_ids())
      if (e >= 0 && e < v.size()) mask[static_cast<size_t>(e) >> 5] |= 1u << (e & 31);
  };
  if (history_.back().eos) return allow_eos();
  const size_t mark = arena_->mark();
  StackArena::Reach reach;
  arena_->expand(history_.back().heads, frontier_, reach);
  const std::vector<Head> frontier = frontier_;  // check_uncertain reuses frontier_
  bool any = false;
  for (const Head& n : frontier) {
    const StateTokens& t = grammar_->tokens(n.state);
    if (!t.accepted_bits.empty()) {
      for (size_t w = 0; w < words; ++w) mask[w] |= t.accepted_bits[w];
      any = true;
    }
    for (int32_t id : t.accepted) mask[static_cast<size_t>(id) >> 5] |= 1u << (id & 31);
    any = any || !t.accepted.empty();
    check_uncertain(n, t.uncertain, mask);
  }
  arena_->release(mark);
  if (reach.can_end) return allow_eos();
  if (!any) {
    bool set = false;
    for (size_t w = 0; w < words && !set; ++w) set = mask[w] != 0;
    if (!set) allow_eos();
  }
}

// The uncertain tokens come sorted by bytes (trie preorder), so consecutive
// tokens share prefixes: the stacks after each prefix length are kept and a
// token starts from its longest prefix shared with the one before. A prefix
// that died kills every following token that shares it.
void GrammarMatcher::check_uncertain(const Head& n, const std::vector<int32_t>& tokens, uint32_t* mask) {
  if (tokens.empty()) return;
  const Vocabulary& v = grammar_->vocab();
  std::string_view prev;
  size_t alive = 0;  // depth_heads_[0..alive] are valid for prev's prefixes
  if (depth_heads_.empty()) depth_heads_.resize(1);
  depth_heads_[0] = {n};
  StackArena::Reach reach;
  for (int32_t id : tokens) {
    const std::string& s = v.bytes(id);
    size_t common = 0;
    while (common < prev.size() && common < s.size() && prev[common] == s[common]) ++common;
    prev = s;
    if (common > alive) continue;  // shares a prefix that already died
    size_t d = common;
    if (depth_heads_.size() < s.size() + 1) depth_heads_.resize(s.size() + 1);
    for (; d < s.size(); ++d) {
      if (d == 0) {
        frontier_ = depth_heads_[0];  // the frontier node itself: its byte edges only
      } else {
        arena_->expand(depth_heads_[d], frontier_, reach);
      }
      arena_->step(frontier_, static_cast<uint8_t>(s[d]), depth_heads_[d + 1]);
      if (depth_heads_[d + 1].empty()) break;
    }
    alive = d;
    if (d == s.size()) mask[static_cast<size_t>(id) >> 5] |= 1u << (id & 31);
  }
}

}  // namespace ember::structured
