#pragma once
// The parsed form of GBNF text (grammar.h turns it into automata). Internal to engine/structured.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace ember::structured {

struct GbnfExpr {
  enum class Kind { kSequence, kAlternatives, kLiteral, kClass, kRule, kRepeat };
  Kind kind = Kind::kSequence;
  std::vector<GbnfExpr> items;                       // sequence / alternatives / the repeated item (one)
  std::string literal;                               // UTF-8 bytes
  std::vector<std::pair<uint32_t, uint32_t>> ranges;  // class: code point ranges, inclusive, already negated
  std::string rule;                                  // a rule reference
  int64_t min = 0, max = 0;                          // repeat; max -1: unbounded
  int line = 0, column = 0;                          // where it starts, for errors
};

struct GbnfRule {
  std::string name;
  GbnfExpr body;
  int line = 0;
};

// Errors say "line L, column C: ...".
Result<std::vector<GbnfRule>> parse_gbnf_rules(std::string_view text);

}  // namespace ember::structured
