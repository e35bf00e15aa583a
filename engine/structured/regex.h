#pragma once
// Regular expressions (the common ECMAScript / Python subset that JSON Schema's
// `pattern` and vLLM's `structured_outputs.regex` use) compiled to GBNF rules.
// Supported: literals and escapes, `.`, classes `[...]` with ranges and
// negation, `\d \w \s \D \W \S`, groups `(...)`, `(?:...)`, alternation,
// `* + ? {m} {m,} {m,n}` (lazy forms `*?` etc. match the same language), and
// anchors `^`/`$` at the ends only. Backreferences, lookaround and anchors in
// the middle are an Error naming the construct and its offset.
// The whole output must match the whole regex (as vLLM's regex does).
// Semantics are ECMAScript's (JSON Schema's dialect), over code points: `\d`
// is [0-9], `\w` [A-Za-z0-9_], `\s` ECMAScript's white space, `.` anything but
// \n \r U+2028 U+2029. Python's `re` reads those four differently past ASCII
// (its `\d \w \s` take other Unicode digits, letters, spaces), and its `.` takes \r.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ember::structured {

// The largest count a repetition may name ({m}, {m,}, {m,n}: m and n), here and in json_schema.h's
// minItems/maxItems/minLength/maxLength: each unit of a count is a copy of its operand in the automaton.
inline constexpr int64_t kMaxRepetition = 1000;

// Where the matched text goes: as is, or between the quotes of a JSON string, where the regex
// matches the decoded text and `"`, `\` and control characters appear as their shortest JSON escapes.
enum class RegexEmbedding { kRaw, kJsonString };

// Appends rules to `out` and returns the name of the one that matches the
// regex: `prefix` itself (the rules it calls are prefix-1, prefix-2, ...), so
// several regexes can live in one grammar.
Result<std::string> regex_to_gbnf(std::string_view regex, const std::string& prefix, std::string& out,
                                  RegexEmbedding embedding = RegexEmbedding::kRaw);

// A whole grammar whose root matches exactly the regex.
Result<std::string> regex_grammar(std::string_view regex);

}  // namespace ember::structured
