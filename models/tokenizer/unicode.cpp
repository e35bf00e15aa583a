#include "models/tokenizer/unicode.h"

#include <array>

#include <unicode/uchar.h>

namespace ember {

char32_t utf8_next(std::string_view s, size_t* pos) {
  const auto b0 = static_cast<uint8_t>(s[*pos]);
  if (b0 < 0x80) {
    *pos += 1;
    return b0;
  }
  const size_t n = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
  char32_t cp = b0 & (0x7F >> n);
  for (size_t i = 1; i < n; ++i) cp = (cp << 6) | (static_cast<uint8_t>(s[*pos + i]) & 0x3F);
  *pos += n;
  return cp;
}

void utf8_append(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

// Table 3-7 of the Unicode standard: the valid range of the second byte
// depends on the lead byte; later continuation bytes are always 80..BF.
// Returns how many bytes starting at pos form a valid prefix (>= 1 when the
// lead byte is a valid lead), and the full length the lead byte announces.
size_t valid_prefix(std::string_view s, size_t pos, size_t* full) {
  const auto b0 = static_cast<uint8_t>(s[pos]);
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 < 0x80) {
    *full = 1;
    return 1;
  } else if (b0 >= 0xC2 && b0 <= 0xDF) {
    *full = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    *full = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    *full = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *full = 1;
    return 0;
  }
  size_t n = 1;
  while (n < *full && pos + n < s.size()) {
    const auto b = static_cast<uint8_t>(s[pos + n]);
    if (b < lo || b > hi) break;
    lo = 0x80;
    hi = 0xBF;
    ++n;
  }
  return n;
}

}  // namespace

size_t utf8_valid_length(std::string_view s, size_t pos) {
  size_t full = 0;
  const size_t n = valid_prefix(s, pos, &full);
  return n == full ? n : 0;
}

bool is_valid_utf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    const size_t n = utf8_valid_length(s, pos);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    size_t full = 0;
    const size_t n = valid_prefix(s, pos, &full);
    if (n == full) {
      out.append(s.substr(pos, n));
      pos += n;
    } else {
      out.append("\xEF\xBF\xBD");  // one U+FFFD per maximal invalid subpart
      pos += n == 0 ? 1 : n;
    }
  }
  return out;
}

bool is_numeric_cp(char32_t cp) {
  const int8_t t = u_charType(static_cast<UChar32>(cp));
  return t == U_DECIMAL_DIGIT_NUMBER || t == U_LETTER_NUMBER || t == U_OTHER_NUMBER;
}

bool is_whitespace_cp(char32_t cp) { return u_isUWhiteSpace(static_cast<UChar32>(cp)); }

bool is_alphanumeric_cp(char32_t cp) {
  return u_isUAlphabetic(static_cast<UChar32>(cp)) || is_numeric_cp(cp);
}

namespace {

struct ByteTables {
  std::array<char32_t, 256> to_cp{};
  std::array<std::string, 256> to_utf8;
  std::array<int16_t, 256 + 68> from_cp{};  // code point -> byte, -1 if unmapped
  ByteTables() {
    from_cp.fill(-1);
    // Printable Latin-1 bytes map to themselves; the other 68 bytes map to
    // U+0100 onwards in byte order (GPT-2's bytes_to_unicode).
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? static_cast<char32_t>(b) : next++;
      utf8_append(to_cp[b], &to_utf8[b]);
      from_cp[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteTables& tables() {
  static const ByteTables t;
  return t;
}

}  // namespace

char32_t byte_to_unicode(uint8_t b) { return tables().to_cp[b]; }

int unicode_to_byte(char32_t cp) {
  return cp < tables().from_cp.size() ? tables().from_cp[cp] : -1;
}

std::string byte_level_encode(std::string_view bytes) {
  const ByteTables& t = tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t.to_utf8[static_cast<uint8_t>(c)];
  return out;
}

bool byte_level_decode(std::string_view text, std::string* out) {
  std::string bytes;
  bytes.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    if (utf8_valid_length(text, pos) == 0) return false;
    const int b = unicode_to_byte(utf8_next(text, &pos));
    if (b < 0) return false;
    bytes.push_back(static_cast<char>(b));
  }
  out->append(bytes);
  return true;
}

}  // namespace ember
