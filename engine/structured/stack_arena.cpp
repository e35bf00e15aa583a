#include "engine/structured/stack_arena.h"

#include <algorithm>

namespace ember::structured {

StackArena::StackArena(const Grammar& grammar) : g_(grammar), returns_(grammar.num_rules()) {
  for (const Grammar::State& st : g_.states())
    for (const Grammar::CallEdge& c : st.calls) returns_[c.rule].push_back(c.ret);
  for (auto& r : returns_) {
    std::sort(r.begin(), r.end());
    r.erase(std::unique(r.begin(), r.end()), r.end());
  }
}

int32_t StackArena::node(uint32_t state, int32_t parent) {
  auto [it, fresh] = index_.try_emplace(key(state, parent), static_cast<int32_t>(nodes_.size()));
  if (fresh) {
    const bool assumed = parent == kAssumed || (parent >= 0 && nodes_[static_cast<size_t>(parent)].assumed);
    nodes_.push_back({state, parent, assumed});
  }
  return it->second;
}

void StackArena::release(size_t mark) {
  for (size_t i = mark; i < nodes_.size(); ++i) index_.erase(key(nodes_[i].state, nodes_[i].parent));
  nodes_.resize(mark);
}

void StackArena::expand(std::span<const Head> heads, std::vector<Head>& frontier, Reach& reach) {
  frontier.clear();
  seen_.clear();
  work_.assign(heads.begin(), heads.end());
  while (!work_.empty()) {
    const Head h = work_.back();
    work_.pop_back();
    work_done_ += 1 + static_cast<int64_t>(seen_.size());  // the scan below is the cost when stacks are many
    if (std::find(seen_.begin(), seen_.end(), h) != seen_.end()) continue;
    seen_.push_back(h);
    const Grammar::State& st = g_.states()[h.state];
    if (!st.bytes.empty()) frontier.push_back(h);
    for (const Grammar::CallEdge& c : st.calls) work_.push_back({g_.rule_start(c.rule), node(c.ret, h.parent)});
    if (!st.final) continue;
    if (h.parent == kBottom) {
      reach.can_end = true;
    } else if (h.parent == kUnknown || h.parent == kAssumed) {
      for (uint32_t ret : returns_[st.rule]) work_.push_back({ret, kAssumed});
    } else {
      const Node& p = nodes_[static_cast<size_t>(h.parent)];
      work_.push_back({p.state, p.parent});
    }
  }
}

void StackArena::step(std::span<const Head> frontier, uint8_t byte, std::vector<Head>& heads) const {
  heads.clear();
  work_done_ += static_cast<int64_t>(frontier.size());
  for (const Head& h : frontier) {
    const int64_t to = g_.next(h.state, byte);
    if (to < 0) continue;
    const Head next{static_cast<uint32_t>(to), h.parent};
    work_done_ += static_cast<int64_t>(heads.size());
    if (std::find(heads.begin(), heads.end(), next) == heads.end()) heads.push_back(next);
  }
}

}  // namespace ember::structured
