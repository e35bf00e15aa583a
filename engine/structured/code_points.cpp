#include "engine/structured/code_points.h"

#include <algorithm>

namespace ember::structured {
namespace {

constexpr uint32_t kSurrogateLo = 0xD800, kSurrogateHi = 0xDFFF;

}  // namespace

int32_t decode_utf8(std::string_view text, size_t& pos) {
  if (pos >= text.size()) return -1;
  const auto b = static_cast<unsigned char>(text[pos]);
  const int len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || pos + static_cast<size_t>(len) > text.size()) return -1;
  uint32_t cp = len == 1 ? b : b & (0x7Fu >> len);
  for (int i = 1; i < len; ++i) {
    const auto c = static_cast<unsigned char>(text[pos + static_cast<size_t>(i)]);
    if ((c & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (c & 0x3Fu);
  }
  static constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMinForLength[len] || cp > kMaxCodePoint || (cp >= kSurrogateLo && cp <= kSurrogateHi)) return -1;
  pos += static_cast<size_t>(len);
  return static_cast<int32_t>(cp);
}

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

CodePointSet normalized(CodePointSet ranges) {
  CodePointSet split;
  for (auto [lo, hi] : ranges) {  // cut the surrogates out
    hi = std::min(hi, kMaxCodePoint);
    if (lo > hi) continue;
    if (lo < kSurrogateLo) split.emplace_back(lo, std::min(hi, kSurrogateLo - 1));
    if (hi > kSurrogateHi) split.emplace_back(std::max(lo, kSurrogateHi + 1), hi);
  }
  std::sort(split.begin(), split.end());
  CodePointSet out;
  for (const auto& r : split) {
    // Ranges that touch across the surrogate gap stay apart: the gap is no code point either way.
    if (!out.empty() && r.first <= out.back().second + 1)
      out.back().second = std::max(out.back().second, r.second);
    else
      out.push_back(r);
  }
  return out;
}

CodePointSet complement(const CodePointSet& set) {
  CodePointSet out;
  uint32_t next = 0;
  for (const auto& [lo, hi] : set) {
    if (lo > next) out.emplace_back(next, lo - 1);
    next = hi + 1;
  }
  if (next <= kMaxCodePoint) out.emplace_back(next, kMaxCodePoint);
  return normalized(std::move(out));
}

CodePointSet intersect(const CodePointSet& a, const CodePointSet& b) {
  CodePointSet out;
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const uint32_t lo = std::max(a[i].first, b[j].first), hi = std::min(a[i].second, b[j].second);
    if (lo <= hi) out.emplace_back(lo, hi);
    if (a[i].second < b[j].second)
      ++i;
    else
      ++j;
  }
  return out;
}

CodePointSet unite(const CodePointSet& a, const CodePointSet& b) {
  CodePointSet all = a;
  all.insert(all.end(), b.begin(), b.end());
  return normalized(std::move(all));
}

bool contains(const CodePointSet& set, uint32_t cp) {
  auto it = std::upper_bound(set.begin(), set.end(), cp, [](uint32_t c, const auto& r) { return c < r.first; });
  return it != set.begin() && cp <= std::prev(it)->second;
}

const CodePointSet& json_string_raw_set() {
  static const CodePointSet s = normalized({{0x20, 0x21}, {0x23, 0x5B}, {0x5D, kMaxCodePoint}});
  return s;
}

std::string gbnf_class(const CodePointSet& set) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  auto put = [](uint32_t cp, std::string& out) {
    if (cp >= 0x20 && cp < 0x7F) {
      if (cp == '\\' || cp == ']' || cp == '[' || cp == '-' || cp == '^' || cp == '"') out += '\\';
      out += static_cast<char>(cp);
      return;
    }
    const int digits = cp <= 0xFF ? 2 : cp <= 0xFFFF ? 4 : 8;
    out += '\\';
    out += digits == 2 ? 'x' : digits == 4 ? 'u' : 'U';
    for (int i = digits - 1; i >= 0; --i) out += kHex[(cp >> (4 * i)) & 15];
  };
  std::string out = "[";
  for (const auto& [lo, hi] : set) {
    put(lo, out);
    if (hi > lo) {
      if (hi > lo + 1) out += '-';
      put(hi, out);
    }
  }
  return out + "]";
}

}  // namespace ember::structured
