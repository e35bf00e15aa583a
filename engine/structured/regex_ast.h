#pragma once
// The parsed form of a regex (regex.h): what regex.cpp writes out as GBNF.
// Internal to engine/structured.

#include <cstdint>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "engine/structured/code_points.h"

namespace ember::structured {

struct RegexNode {
  enum class Kind { kSet, kSequence, kAlternatives, kRepeat };
  Kind kind = Kind::kSequence;
  CodePointSet set;              // kSet: one code point of these (a literal is a set of one)
  std::vector<RegexNode> items;  // sequence / alternatives / the repeated item (one)
  int64_t min = 0, max = 0;      // kRepeat; max -1: unbounded
};

// Errors read "regex: <what> at offset <byte offset>".
Result<RegexNode> parse_regex(std::string_view regex);

}  // namespace ember::structured
