#include "kernels/quant/fp8.h"

#include <array>
#include <cmath>

namespace ember::quant {
namespace {

// The 127 non-negative finite codes' values, ascending with the code.
const std::array<float, 127>& positive_values() {
  static const std::array<float, 127> table = [] {
    std::array<float, 127> t{};
    for (int c = 0; c < 127; ++c) {
      const int exp = c >> 3, man = c & 7;
      t[static_cast<size_t>(c)] = exp == 0 ? std::ldexp(static_cast<float>(man), -9)  // subnormal: man/8 * 2^-6
                                           : std::ldexp(1.0f + static_cast<float>(man) / 8.0f, exp - 7);
    }
    return t;
  }();
  return table;
}

}  // namespace

float fp8_e4m3_to_float(uint8_t code) {
  const float sign = (code & 0x80) ? -1.0f : 1.0f;
  const int mag = code & 0x7F;
  if (mag == 0x7F) return std::nanf("");
  return sign * positive_values()[static_cast<size_t>(mag)];
}

const float* fp8_e4m3_values() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int c = 0; c < 256; ++c) t[static_cast<size_t>(c)] = fp8_e4m3_to_float(static_cast<uint8_t>(c));
    return t;
  }();
  return table.data();
}

uint8_t fp8_e4m3_from_float(float v) {
  const uint8_t sign = std::signbit(v) ? 0x80 : 0x00;
  if (std::isnan(v)) return static_cast<uint8_t>(sign | 0x7F);
  const float a = std::fabs(v);
  const auto& t = positive_values();
  if (a >= kFp8E4M3Max) return static_cast<uint8_t>(sign | 126);
  // The largest code not above a, then the nearer of it and the next (ties:
  // the even code). Midpoints of neighbouring codes are exact in float.
  int lo = 0, hi = 126;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (t[static_cast<size_t>(mid)] <= a) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  int code = lo;
  if (code < 126) {
    const float below = t[static_cast<size_t>(code)], above = t[static_cast<size_t>(code + 1)];
    const float half = below + (above - below) / 2.0f;
    if (a > half || (a == half && (code & 1) != 0)) ++code;
  }
  return static_cast<uint8_t>(sign | code);
}

float quantize_row_fp8_e4m3(const float* v, int64_t n, uint8_t* q) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(v[i]));
  const float scale = amax > 0.0f ? amax / kFp8E4M3Max : 1.0f;
  for (int64_t i = 0; i < n; ++i) q[i] = fp8_e4m3_from_float(v[i] / scale);
  return scale;
}

}  // namespace ember::quant
