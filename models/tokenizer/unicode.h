#pragma once
// UTF-8 helpers and the GPT-2 byte <-> unicode table used by byte-level BPE.
// Invalid UTF-8 is replaced with U+FFFD one "maximal subpart" at a time (the
// Unicode recommendation, which Python's errors="replace" and Rust's
// from_utf8_lossy both follow), so ember and HF see the same text.

#include <cstdint>
#include <string>
#include <string_view>

namespace ember {

// Decodes one code point of valid UTF-8 at s[*pos] and advances *pos.
// Precondition: s is valid UTF-8 (run sanitize_utf8 first).
char32_t utf8_next(std::string_view s, size_t* pos);
void utf8_append(char32_t cp, std::string* out);

// Length of the well-formed UTF-8 sequence starting at s[pos], or 0 when the
// bytes there are not a complete valid sequence.
size_t utf8_valid_length(std::string_view s, size_t pos);
bool is_valid_utf8(std::string_view s);
// Copy of s with each maximal invalid subpart replaced by U+FFFD.
std::string sanitize_utf8(std::string_view s);

// Unicode properties as Rust's char methods define them (HF tokenizers is Rust).
bool is_numeric_cp(char32_t cp);     // general category Nd, Nl or No
bool is_whitespace_cp(char32_t cp);  // White_Space property
bool is_alphanumeric_cp(char32_t cp);

// GPT-2's reversible map of the 256 byte values to printable code points.
char32_t byte_to_unicode(uint8_t b);
// -1 when cp is not one of the 256 mapped code points.
int unicode_to_byte(char32_t cp);
// The UTF-8 of the mapped code points of each byte of `bytes`.
std::string byte_level_encode(std::string_view bytes);
// Inverse of byte_level_encode. Returns false (and leaves *out untouched) when
// a code point is not in the table: callers then keep the string as is, like
// HF's ByteLevel decoder does for such tokens.
bool byte_level_decode(std::string_view text, std::string* out);

}  // namespace ember
