#pragma once
// Code points for the grammar generators (regex.h, json_schema.h): UTF-8
// decoding, and sets of Unicode scalar values as sorted ranges, written out as
// GBNF character classes. Internal to engine/structured.
//
// Invariant of a CodePointSet: ranges sorted, disjoint, not adjacent, and no
// surrogate (U+D800..U+DFFF) inside one, so equal sets have equal vectors.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ember::structured {

inline constexpr uint32_t kMaxCodePoint = 0x10FFFF;

using CodePointSet = std::vector<std::pair<uint32_t, uint32_t>>;  // inclusive ranges

// The code point at `pos`, advancing past it; -1 (pos unchanged) for bytes that are not
// shortest-form UTF-8 of a scalar value.
int32_t decode_utf8(std::string_view text, size_t& pos);
void append_utf8(uint32_t cp, std::string& out);

// Any ranges (in any order, overlapping, spanning surrogates) as a CodePointSet.
CodePointSet normalized(CodePointSet ranges);
CodePointSet complement(const CodePointSet& set);
CodePointSet intersect(const CodePointSet& a, const CodePointSet& b);
CodePointSet unite(const CodePointSet& a, const CodePointSet& b);
bool contains(const CodePointSet& set, uint32_t cp);

// The code points a JSON string holds as themselves (RFC 8259: all but '"', '\' and U+0000..U+001F).
const CodePointSet& json_string_raw_set();

// "[...]" matching one code point of `set` (empty: "[]", which matches nothing). Printable ASCII
// stands for itself; anything else is written \xHH, \uHHHH or \UHHHHHHHH.
std::string gbnf_class(const CodePointSet& set);

}  // namespace ember::structured
