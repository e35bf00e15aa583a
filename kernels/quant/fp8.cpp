#include "kernels/quant/fp8.h"

#include <array>
#include <cmath>
#include <cstring>

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
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  const uint8_t sign = (bits >> 24) & 0x80;
  if (std::isnan(v)) return static_cast<uint8_t>(sign | 0x7F);
  const float a = std::fabs(v);
  if (a >= kFp8E4M3Max) return static_cast<uint8_t>(sign | 126);
  if (a < 0.015625f) {
    // Subnormal codes are multiples of 2^-9: a * 2^9 is exact, and nearbyint rounds it to the nearest, ties to
    // even (the default rounding mode). 8 is the smallest normal code, 2^-6.
    return static_cast<uint8_t>(sign | static_cast<int>(std::nearbyint(a * 512.0f)));
  }
  // Normal: the float's exponent rebiased (7 instead of 127), its 23 mantissa bits rounded to 3, nearest even; a
  // carry out of the mantissa moves to the next exponent, which the bit layout does by itself. Below 448, the
  // largest result is 448 itself (code 126).
  const uint32_t magnitude = bits & 0x7FFFFFFF;
  const uint32_t rest = magnitude & 0xFFFFF, kept = magnitude >> 20;  // kept: exponent and 3 mantissa bits
  uint32_t code = kept - ((127 - 7) << 3);
  if (rest > 0x80000 || (rest == 0x80000 && (code & 1) != 0)) ++code;
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
