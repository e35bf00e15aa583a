#pragma once
// Persistent stacks of grammar states (internal to engine/structured). A node
// is (state, parent): the top of a stack whose rest is the parent node. Nodes
// are hash-consed, so the same stack is the same id, which is what makes
// expanding calls and returns terminate (a loop through a nullable rule meets
// a node it has seen). The matcher and the mask precomputation share it.

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "engine/structured/grammar.h"

namespace ember::structured {

class StackArena {
 public:
  static constexpr int32_t kBottom = -1;   // below the root rule: returning here ends the text
  static constexpr int32_t kUnknown = -2;  // precomputation: a stack not known yet lies below

  explicit StackArena(const Grammar& grammar) : g_(grammar) {}

  int32_t node(uint32_t state, int32_t parent);
  uint32_t state(int32_t node) const { return nodes_[static_cast<size_t>(node)].state; }

  struct Reach {
    bool can_end = false;      // a stack returned from the root rule
    bool hit_unknown = false;  // a stack returned into kUnknown
  };
  // The stacks reachable from `heads` through calls and returns whose top state
  // consumes bytes (deduplicated) into `frontier`.
  void expand(std::span<const int32_t> heads, std::vector<int32_t>& frontier, Reach& reach);
  // The stacks after consuming `byte` from a frontier into `heads` (cleared first).
  void step(std::span<const int32_t> frontier, uint8_t byte, std::vector<int32_t>& heads);

  // Nodes made after mark() are forgotten by release(mark): scratch work (mask
  // checks, precomputation) leaves the arena as it found it.
  size_t mark() const { return nodes_.size(); }
  void release(size_t mark);
  size_t size() const { return nodes_.size(); }

 private:
  struct Node {
    uint32_t state;
    int32_t parent;
  };
  static uint64_t key(uint32_t state, int32_t parent) {
    return (static_cast<uint64_t>(state) << 32) | static_cast<uint32_t>(parent);
  }
  const Grammar& g_;
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, int32_t> index_;
  std::vector<uint32_t> visited_;  // per node: the expand() call that last saw it
  uint32_t epoch_ = 0;
  std::vector<int32_t> work_;
};

}  // namespace ember::structured
