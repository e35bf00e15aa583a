#pragma once
// Character-boundary helpers for streaming UTF-8. Repair itself is
// sanitize_utf8 (models/tokenizer/unicode.h): one U+FFFD per maximal invalid subpart,
// like Python's errors="replace" and Rust's from_utf8_lossy. That policy is
// prefix-stable: repairing a byte string in pieces, cut only where
// utf8_incomplete_suffix() is 0, gives the same text as repairing it whole —
// the property IncrementalDetokenizer relies on.

#include <cstddef>
#include <string_view>

namespace ember {

// Length of the well-formed character at the start of `s` (> 0); or the
// negated length of the maximal invalid subpart there (< 0, to be replaced by
// one U+FFFD); or 0 when `s` is a proper prefix of a well-formed character
// that more bytes could complete. `s` must be non-empty.
int utf8_char_length(std::string_view s);

// How many bytes at the end of `s` form an incomplete but so far valid
// character (0 to 3): the bytes a streaming decoder must hold back.
size_t utf8_incomplete_suffix(std::string_view s);

}  // namespace ember
