#pragma once
// Persistent stacks of grammar states (internal to engine/structured). A stack
// is a Head: its top state and the id of the node holding the rest, a node
// being (return state, parent id). Nodes are interned, so the same stack is
// the same Head, which is what makes expanding calls and returns terminate (a
// loop through a rule that may match nothing meets a Head it has seen).
// Stepping over a byte changes only the top state, so it makes no node; only
// calls make them. The matcher and the mask precomputation share this.

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "engine/structured/grammar.h"

namespace ember::structured {

struct Head {
  uint32_t state;
  int32_t parent;  // a node id, or one of StackArena's bottoms
  bool operator==(const Head&) const = default;
};

class StackArena {
 public:
  static constexpr int32_t kBottom = -1;   // below the root rule: returning here ends the text
  static constexpr int32_t kUnknown = -2;  // precomputation: the real stack below is not known
  static constexpr int32_t kAssumed = -3;  // precomputation: below a return assumed into some caller of the rule

  explicit StackArena(const Grammar& grammar);

  int32_t node(uint32_t state, int32_t parent);

  struct Reach {
    bool can_end = false;  // a stack returned from the root rule
  };
  // The stacks reachable from `heads` through calls and returns whose top
  // state consumes bytes, deduplicated, into `frontier`. A return into
  // kUnknown or kAssumed continues in every state that follows a call of the
  // rule anywhere in the grammar (as a Head over kAssumed): a superset of what
  // the real stack allows.
  void expand(std::span<const Head> heads, std::vector<Head>& frontier, Reach& reach);
  // The stacks after consuming `byte` from a frontier into `heads` (cleared first).
  void step(std::span<const Head> frontier, uint8_t byte, std::vector<Head>& heads) const;
  // Whether the stack's bottom is an assumed return (precomputation).
  bool assumed(const Head& h) const {
    return h.parent == kAssumed || (h.parent >= 0 && nodes_[static_cast<size_t>(h.parent)].assumed);
  }

  // Nodes made after mark() are forgotten by release(mark): scratch work (mask
  // checks, precomputation) leaves the arena as it found it.
  size_t mark() const { return nodes_.size(); }
  void release(size_t mark);
  size_t size() const { return nodes_.size(); }
  // Stack operations so far (heads expanded and stepped, and the comparisons that deduplicate them): the
  // precomputation's work, which its bound counts.
  int64_t work() const { return work_done_; }

 private:
  struct Node {
    uint32_t state;
    int32_t parent;
    bool assumed;
  };
  static uint64_t key(uint32_t state, int32_t parent) {
    return (static_cast<uint64_t>(state) << 32) | static_cast<uint32_t>(parent);
  }
  const Grammar& g_;
  std::vector<std::vector<uint32_t>> returns_;  // per rule: the states that follow its calls
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, int32_t> index_;
  std::vector<Head> work_, seen_;
  mutable int64_t work_done_ = 0;
};

}  // namespace ember::structured
