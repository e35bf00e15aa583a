// The per-state token tables (token_masks.h): for each automaton state with
// byte edges, a depth-first walk of the vocabulary trie from a stack holding
// only that state over an unknown rest. A token whose bytes all run inside
// what the walk knows is accepted or rejected for good; one that can only go
// on by returning into the unknown rest is left for the matcher to check.

#include "engine/structured/token_masks.h"

#include <algorithm>

#include <unordered_map>
#include <numeric>

#include "engine/structured/stack_arena.h"

namespace ember::structured {

Vocabulary::Vocabulary(std::vector<std::string> token_bytes, std::vector<int32_t> eos_ids)
    : bytes_(std::move(token_bytes)), eos_(std::move(eos_ids)) {
  for (const std::string& b : bytes_) max_bytes_ = std::max(max_bytes_, b.size());
  std::vector<int32_t> order(bytes_.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return bytes_[a] < bytes_[b]; });
  // Insert in sorted order: the trie comes out in preorder with children sorted by byte.
  trie_.push_back({});
  std::vector<uint32_t> path{0};  // path[d]: the node at depth d on the current branch
  std::string prev;
  for (int32_t id : order) {
    const std::string& s = bytes_[static_cast<size_t>(id)];
    if (s.empty()) continue;  // special tokens: never grammar text
    if (s == prev && trie_.size() > 1) {
      duplicates_.emplace_back(trie_[path.back()].token, id);
      continue;
    }
    size_t common = 0;
    while (common < prev.size() && common < s.size() && prev[common] == s[common]) ++common;
    path.resize(common + 1);
    for (size_t d = common; d < s.size(); ++d) {
      const auto node = static_cast<uint32_t>(trie_.size());
      TrieNode& parent = trie_[path.back()];
      if (parent.num_children++ == 0) parent.first_child = node;
      TrieNode child;
      child.byte = static_cast<uint8_t>(s[d]);
      trie_.push_back(child);
      path.push_back(node);
    }
    trie_[path.back()].token = id;
    prev = s;
  }
  // subtree_end: preorder, so a node's descendants are the following nodes up to the next sibling's start.
  for (size_t i = trie_.size(); i-- > 0;) {
    uint32_t end = static_cast<uint32_t>(i + 1);
    if (trie_[i].num_children > 0) {
      uint32_t c = trie_[i].first_child;
      for (uint32_t k = 1; k < trie_[i].num_children; ++k) c = trie_[c].subtree_end;
      end = trie_[c].subtree_end;
    }
    trie_[i].subtree_end = end;
  }
}

namespace {

class TablesBuilder {
 public:
  TablesBuilder(const Grammar& g, const Vocabulary& v, int64_t max_work)
      : v_(v), arena_(g), max_work_(max_work), scratch_(v.max_token_bytes() + 1) {}

  // Past the bound the walks stop where they are and the tables are not to be used.
  bool over_budget() const { return arena_.work() > max_work_; }

  StateTokens build(uint32_t state) {
    accepted_.clear(), uncertain_.clear();
    const size_t mark = arena_.mark();
    const auto& trie = v_.trie();
    // The first byte comes from the state itself (its calls and return are other frontier entries).
    const std::vector<Head> frontier{{state, StackArena::kUnknown}};
    std::vector<Head> heads;
    for (uint32_t k = 0, c = trie[0].first_child; k < trie[0].num_children; ++k, c = trie[c].subtree_end) {
      arena_.step(frontier, trie[c].byte, heads);
      if (!heads.empty()) walk(c, heads, 1);
    }
    arena_.release(mark);
    for (const auto& [first, dup] : v_.duplicates()) {  // a duplicate shares its first's fate
      if (std::find(accepted_.begin(), accepted_.end(), first) != accepted_.end()) accepted_.push_back(dup);
      auto u = std::find(uncertain_.begin(), uncertain_.end(), first);
      if (u != uncertain_.end()) uncertain_.insert(u + 1, dup);
    }
    StateTokens out;
    std::sort(accepted_.begin(), accepted_.end());
    if (accepted_.size() * 32 > static_cast<size_t>(v_.size())) {
      out.accepted_bits.assign(bitmask_words(v_.size()), 0);
      for (int32_t t : accepted_) out.accepted_bits[static_cast<size_t>(t) >> 5] |= 1u << (t & 31);
    } else {
      out.accepted = accepted_;
    }
    out.uncertain = uncertain_;  // trie preorder: sorted by bytes, which the matcher's walk relies on
    return out;
  }

 private:
  // `heads`: the stacks after the bytes of trie node `u`. A token is accepted
  // when a stack that never returned into the unknown rest survives it, and
  // uncertain when only stacks over an assumed caller do (the matcher decides
  // with the real stack); with no stack left every longer token is rejected.
  // `depth`: the bytes of `u`; the walk below it works in scratch_[depth] (no allocation per trie node).
  void walk(uint32_t u, const std::vector<Head>& heads, size_t depth) {
    const auto& trie = v_.trie();
    if (over_budget()) return;
    if (trie[u].token >= 0) {
      const bool certain = std::any_of(heads.begin(), heads.end(), [&](const Head& h) { return !arena_.assumed(h); });
      (certain ? accepted_ : uncertain_).push_back(trie[u].token);
    }
    if (trie[u].num_children == 0) return;
    auto& [frontier, next] = scratch_[depth];
    StackArena::Reach reach;
    arena_.expand(heads, frontier, reach);
    for (uint32_t k = 0, c = trie[u].first_child; k < trie[u].num_children; ++k, c = trie[c].subtree_end) {
      arena_.step(frontier, trie[c].byte, next);
      if (!next.empty()) walk(c, next, depth + 1);
    }
  }

  const Vocabulary& v_;
  StackArena arena_;
  int64_t max_work_;
  std::vector<int32_t> accepted_, uncertain_;
  std::vector<std::pair<std::vector<Head>, std::vector<Head>>> scratch_;  // per trie depth: (frontier, next)
};

// Which states may share a table. In a rule without calls every edge
// consumes one byte, so two of its states whose runs agree on every byte
// string of up to `depth` bytes (the same bytes alive, the same points where
// the rule may end) classify every token of up to `depth` bytes alike: a
// return leads into the same callers either way. Moore's partition refinement,
// `depth` rounds, finds them. This is what keeps a counted repetition cheap:
// the states of [a-z]{0,1000} more than one token's length from either end
// all share one table.
struct KeyHash {
  size_t operator()(const std::vector<uint32_t>& v) const {
    uint64_t h = 1469598103934665603ull;
    for (uint32_t x : v) h = (h ^ x) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};

std::vector<uint32_t> share_tables(const Grammar& g, size_t depth) {
  const auto& states = g.states();
  std::vector<char> has_calls(g.num_rules(), 0);
  for (const auto& st : states) has_calls[st.rule] = has_calls[st.rule] || !st.calls.empty();
  // Start: one class per (rule, final) among call-free rules; every other state is its own class.
  std::vector<uint32_t> cls(states.size());
  std::unordered_map<std::vector<uint32_t>, uint32_t, KeyHash> ids;
  for (uint32_t s = 0; s < states.size(); ++s) {
    const std::vector<uint32_t> key = has_calls[states[s].rule]
                                          ? std::vector<uint32_t>{1, s}
                                          : std::vector<uint32_t>{0, states[s].rule, states[s].final};
    cls[s] = ids.try_emplace(key, static_cast<uint32_t>(ids.size())).first->second;
  }
  size_t count = ids.size();
  for (size_t round = 0; round < depth; ++round) {
    ids.clear();
    std::vector<uint32_t> next(states.size());
    for (uint32_t s = 0; s < states.size(); ++s) {
      std::vector<uint32_t> key{cls[s]};
      if (!has_calls[states[s].rule]) {
        // Byte ranges with their targets' classes, adjacent ranges of one class merged: a canonical form.
        for (const auto& e : states[s].bytes) {
          const size_t n = key.size();
          if (n >= 4 && key[n - 1] == cls[e.to] && key[n - 2] + 1 == e.lo)
            key[n - 2] = e.hi;
          else
            key.insert(key.end(), {e.lo, e.hi, cls[e.to]});
        }
      }
      next[s] = ids.try_emplace(std::move(key), static_cast<uint32_t>(ids.size())).first->second;
    }
    cls = std::move(next);
    if (ids.size() == count) break;  // stable: further rounds split nothing
    count = ids.size();
  }
  return cls;
}

}  // namespace

Result<std::shared_ptr<const CompiledGrammar>> CompiledGrammar::compile(std::shared_ptr<const Grammar> grammar,
                                                                        std::shared_ptr<const Vocabulary> vocab,
                                                                        const GrammarLimits& limits) {
  auto out = std::make_shared<CompiledGrammar>();
  TablesBuilder builder(*grammar, *vocab, limits.max_precompute_steps);
  const std::vector<uint32_t> cls = share_tables(*grammar, vocab->max_token_bytes());
  std::unordered_map<uint32_t, uint32_t> table_of_class;
  out->table_of_.assign(grammar->states().size(), 0);
  out->tables_.emplace_back();
  for (uint32_t s = 0; s < grammar->states().size(); ++s) {
    if (grammar->states()[s].bytes.empty()) continue;
    auto [it, fresh] = table_of_class.try_emplace(cls[s], static_cast<uint32_t>(out->tables_.size()));
    out->table_of_[s] = it->second;
    if (!fresh) continue;
    out->tables_.push_back(builder.build(s));
    if (builder.over_budget())
      return Error{"the grammar is too expensive to compile against this vocabulary (" +
                   std::to_string(grammar->states().size()) + " automaton states; long bounded repetitions of "
                   "rules that call others cost the most: write them with * or +)"};
  }
  out->grammar_ = std::move(grammar);
  out->vocab_ = std::move(vocab);
  return std::shared_ptr<const CompiledGrammar>(std::move(out));
}

size_t CompiledGrammar::memory_bytes() const {
  size_t n = table_of_.size() * sizeof(uint32_t) + grammar_->states().size() * sizeof(Grammar::State);
  for (const StateTokens& t : tables_)
    n += sizeof(StateTokens) + (t.accepted_bits.size() + t.accepted.size() + t.uncertain.size()) * sizeof(uint32_t);
  for (const Grammar::State& st : grammar_->states())
    n += st.bytes.size() * sizeof(Grammar::ByteEdge) + st.calls.size() * sizeof(Grammar::CallEdge);
  return n;
}

GrammarCache::GrammarCache(std::shared_ptr<const Vocabulary> vocab, size_t capacity, GrammarLimits limits,
                           size_t max_bytes)
    : vocab_(std::move(vocab)), capacity_(capacity), limits_(limits), max_bytes_(max_bytes) {}

GrammarCache::Compiled GrammarCache::get(const std::string& gbnf) {
  std::promise<Compiled> done;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (auto it = index_.find(gbnf); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
    if (auto it = compiling_.find(gbnf); it != compiling_.end()) {
      std::shared_future<Compiled> pending = it->second;
      lock.unlock();
      return pending.get();
    }
    compiling_.emplace(gbnf, done.get_future().share());
    ++compiles_;
  }
  // Compiled outside the lock: one slow grammar does not hold up the others.
  Compiled compiled = [&]() -> Compiled {
    auto grammar = Grammar::parse(gbnf, limits_);
    if (!grammar.ok()) return grammar.error();
    return CompiledGrammar::compile(std::move(*grammar), vocab_, limits_);
  }();
  {
    std::lock_guard<std::mutex> lock(mu_);
    compiling_.erase(gbnf);  // an error is not kept: the next request tries again
    if (compiled.ok()) {
      lru_.emplace_front(gbnf, *compiled);
      index_[gbnf] = lru_.begin();
      bytes_ += (*compiled)->memory_bytes();
      // Requests still running keep their grammar alive (shared_ptr); the cache only lets go of it.
      while (lru_.size() > 1 && (lru_.size() > capacity_ || bytes_ > max_bytes_)) {
        bytes_ -= lru_.back().second->memory_bytes();
        index_.erase(lru_.back().first);
        lru_.pop_back();
      }
    }
  }
  done.set_value(compiled);
  return compiled;
}

int64_t GrammarCache::num_compiles() const {
  std::lock_guard<std::mutex> lock(mu_);
  return compiles_;
}

}  // namespace ember::structured
