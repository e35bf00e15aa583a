#pragma once
// GBNF for JSON's own pieces, for json_schema.cpp: the rules every JSON grammar
// shares (whitespace, any value, strings, numbers), integers within bounds, and
// the string formats. Internal to engine/structured.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ember::structured {

// Integers, and the integer part of numbers, carry at most 18 digits (so a number always ends);
// bounds past that are clamped to it.
inline constexpr int64_t kMaxIntegerMagnitude = 999'999'999'999'999'999;

// The shared rules: ws value object array string char number integer boolean null. use() adds one (and
// the rules it calls) to the grammar and returns its name; text() is their "name ::= body" lines.
class JsonBaseRules {
 public:
  explicit JsonBaseRules(bool compact) : compact_(compact) {}

  std::string use(std::string_view name);
  std::string text() const;

 private:
  bool compact_;
  std::vector<std::string> used_;  // in first-use order
};

// An expression matching the decimal integers in [lo, hi] and nothing else (no "-0", no leading zeros).
// Needs lo <= hi and both within kMaxIntegerMagnitude.
std::string integer_range_gbnf(int64_t lo, int64_t hi);

// An expression matching a JSON string (quotes included) in `format` (json_schema.cpp lists them), or ""
// when the format is not one of them.
std::string string_format_gbnf(std::string_view format);

}  // namespace ember::structured
