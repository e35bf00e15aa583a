#include "engine/structured/stack_arena.h"

#include <algorithm>

namespace ember::structured {

int32_t StackArena::node(uint32_t state, int32_t parent) {
  auto [it, fresh] = index_.try_emplace(key(state, parent), static_cast<int32_t>(nodes_.size()));
  if (fresh) nodes_.push_back({state, parent});
  return it->second;
}

void StackArena::release(size_t mark) {
  for (size_t i = mark; i < nodes_.size(); ++i) index_.erase(key(nodes_[i].state, nodes_[i].parent));
  nodes_.resize(mark);
}

void StackArena::expand(std::span<const int32_t> heads, std::vector<int32_t>& frontier, Reach& reach) {
  frontier.clear();
  if (++epoch_ == 0) std::fill(visited_.begin(), visited_.end(), 0), epoch_ = 1;
  work_.assign(heads.begin(), heads.end());
  while (!work_.empty()) {
    const int32_t n = work_.back();
    work_.pop_back();
    if (visited_.size() < nodes_.size()) visited_.resize(nodes_.size() * 2, 0);
    if (visited_[static_cast<size_t>(n)] == epoch_) continue;
    visited_[static_cast<size_t>(n)] = epoch_;
    const Node cur = nodes_[static_cast<size_t>(n)];
    const Grammar::State& st = g_.states()[cur.state];
    if (!st.bytes.empty()) frontier.push_back(n);
    for (const Grammar::CallEdge& c : st.calls) {
      const int32_t ret = node(c.ret, cur.parent);
      work_.push_back(node(g_.rule_start(c.rule), ret));
    }
    if (st.final) {
      if (cur.parent == kBottom)
        reach.can_end = true;
      else if (cur.parent == kUnknown)
        reach.hit_unknown = true;
      else
        work_.push_back(cur.parent);
    }
  }
}

void StackArena::step(std::span<const int32_t> frontier, uint8_t byte, std::vector<int32_t>& heads) {
  heads.clear();
  for (int32_t n : frontier) {
    const int64_t to = g_.next(nodes_[static_cast<size_t>(n)].state, byte);
    if (to < 0) continue;
    const int32_t h = node(static_cast<uint32_t>(to), nodes_[static_cast<size_t>(n)].parent);
    if (std::find(heads.begin(), heads.end(), h) == heads.end()) heads.push_back(h);
  }
}

}  // namespace ember::structured
