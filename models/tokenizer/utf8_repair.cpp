#include "models/tokenizer/utf8_repair.h"

namespace ember {

namespace {

// Valid range of the second byte for a lead byte (Unicode Table 3-7); the
// narrower ranges exclude overlongs, surrogates and code points past U+10FFFF.
bool second_byte_ok(unsigned char lead, unsigned char b) {
  switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return b >= 0x80 && b <= 0xBF;
  }
}

int sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return -1;  // continuation byte, C0/C1 or F5..FF: never starts a character
}

}  // namespace

int utf8_char_length(std::string_view s) {
  const auto lead = static_cast<unsigned char>(s[0]);
  const int need = sequence_length(lead);
  if (need < 0) return -1;
  for (int i = 1; i < need; ++i) {
    if (static_cast<size_t>(i) >= s.size()) return 0;  // valid so far, truncated
    const auto b = static_cast<unsigned char>(s[i]);
    const bool ok = i == 1 ? second_byte_ok(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return -i;  // the i bytes before `b` are the maximal subpart
  }
  return need;
}

size_t utf8_incomplete_suffix(std::string_view s) {
  // A character is at most 4 bytes, so only the last 3 can be pending.
  const size_t lo = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t start = s.size(); start-- > lo;) {
    const auto b = static_cast<unsigned char>(s[start]);
    if (b >= 0x80 && b <= 0xBF) continue;  // continuation: the lead is further left
    return utf8_char_length(s.substr(start)) == 0 ? s.size() - start : 0;
  }
  return 0;
}

}  // namespace ember
