#pragma once
// A grammar in ember's GBNF dialect (README.md), compiled to one deterministic
// automaton per rule over bytes and rule calls: a recursive transition network,
// which a stack of return states runs as a pushdown automaton. Terminals are
// Unicode code points, expanded to UTF-8 byte sequences, so a token that ends
// inside a multi-byte character simply stops part-way through it.
//
// Invariants a reader relies on: state ids are global (all rules share one
// table); every call edge's return state belongs to the calling rule; no rule
// can call itself before consuming a byte (left recursion is a compile error),
// so expanding calls always terminates.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ember::structured {

// Bounds on what one grammar may cost; past one, parse() is an Error saying which.
struct GrammarLimits {
  size_t max_text_bytes = 1 << 20;
  int64_t max_nfa_nodes = 1'000'000;   // after expanding {m,n} repetitions
  int64_t max_states = 100'000;        // automaton states over all rules
  // Stack operations to precompute the token tables (token_masks.h), counted as they happen: about
  // half a millisecond of one core per million (the bound: seconds). Long bounded repetitions of rules
  // that call others are what costs.
  int64_t max_precompute_steps = 10'000'000'000;
};

class Grammar {
 public:
  struct ByteEdge {
    uint8_t lo, hi;  // inclusive byte range
    uint32_t to;
  };
  struct CallEdge {
    uint32_t rule;
    uint32_t ret;  // state of this rule to continue in once the called rule ends
  };
  struct State {
    uint32_t rule = 0;
    bool final = false;             // the rule may end here
    std::vector<ByteEdge> bytes;    // disjoint, sorted by lo
    std::vector<CallEdge> calls;
  };

  // Errors name the line and column of the text, or the rule.
  static Result<std::shared_ptr<const Grammar>> parse(std::string_view gbnf, const GrammarLimits& limits = {});

  const std::vector<State>& states() const { return states_; }
  uint32_t rule_start(uint32_t rule) const { return rule_starts_[rule]; }
  uint32_t root_rule() const { return root_; }
  const std::string& rule_name(uint32_t rule) const { return rule_names_[rule]; }
  size_t num_rules() const { return rule_starts_.size(); }
  // The state a byte leads to from `state`, or -1.
  int64_t next(uint32_t state, uint8_t byte) const;

  // Whether the whole of `text` is in the language (for tests and tools).
  bool matches(std::string_view text) const;

 private:
  friend class GrammarBuilder;
  std::vector<State> states_;
  std::vector<uint32_t> rule_starts_;
  std::vector<std::string> rule_names_;
  uint32_t root_ = 0;
};

// GBNF text for a string literal (quotes and escapes included): what every
// generator of grammar text uses to embed arbitrary bytes.
std::string gbnf_literal(std::string_view text);

}  // namespace ember::structured
