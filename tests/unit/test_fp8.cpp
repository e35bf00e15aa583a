// The host reference of FP8 E4M3 (kernels/quant/fp8.h), which the GPU's
// conversions are checked against bit for bit (tests/gpu/test_fp8_gpu.cpp):
// the format's known values, round trips, ties to even and saturation.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/quant/fp8.h"

namespace ember::quant {
namespace {

TEST(Fp8E4M3, KnownValues) {
  EXPECT_EQ(fp8_e4m3_to_float(0x00), 0.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x38), 1.0f);          // exponent 7 = bias
  EXPECT_EQ(fp8_e4m3_to_float(0x7E), 448.0f);        // largest finite
  EXPECT_EQ(fp8_e4m3_to_float(0x01), 0.001953125f);  // 2^-9, smallest subnormal
  EXPECT_EQ(fp8_e4m3_to_float(0x08), 0.015625f);     // 2^-6, smallest normal
  EXPECT_EQ(fp8_e4m3_to_float(0xB8), -1.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x3C), 1.5f);
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0x7F)));
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0xFF)));
}

TEST(Fp8E4M3, EveryCodeRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7F) == 0x7F) continue;
    const float v = fp8_e4m3_to_float(static_cast<uint8_t>(c));
    if (c == 0x80) {  // -0 keeps its sign
      EXPECT_EQ(fp8_e4m3_from_float(v), 0x80);
      continue;
    }
    EXPECT_EQ(fp8_e4m3_from_float(v), c) << v;
  }
}

TEST(Fp8E4M3, RoundsToNearestTiesToEvenAndSaturates) {
  EXPECT_EQ(fp8_e4m3_from_float(1.0625f), 0x38);  // midpoint of 1 (even) and 1.125: down
  EXPECT_EQ(fp8_e4m3_from_float(1.1875f), 0x3A);  // midpoint of 1.125 (odd) and 1.25: up
  EXPECT_EQ(fp8_e4m3_from_float(std::nextafter(1.0625f, 2.0f)), 0x39);
  EXPECT_EQ(fp8_e4m3_from_float(0.0009765625f), 0x00);   // 2^-10: halfway to the smallest subnormal, to even 0
  EXPECT_EQ(fp8_e4m3_from_float(0.00146484375f), 0x01);  // 1.5 * 2^-10: nearer 2^-9
  EXPECT_EQ(fp8_e4m3_from_float(1000.0f), 0x7E);
  EXPECT_EQ(fp8_e4m3_from_float(-1e30f), 0xFE);
  EXPECT_EQ(fp8_e4m3_from_float(std::numeric_limits<float>::infinity()), 0x7E);
  EXPECT_EQ(fp8_e4m3_from_float(std::nanf("")) & 0x7F, 0x7F);
}

// Against a brute-force nearest search over all codes, on random floats.
TEST(Fp8E4M3, MatchesNearestCodeSearch) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> exp(-12.0f, 10.0f);
  for (int i = 0; i < 20000; ++i) {
    const float v = std::exp2(exp(rng)) * ((rng() & 1) ? -1.0f : 1.0f);
    const uint8_t got = fp8_e4m3_from_float(v);
    double best = INFINITY;
    for (int c = 0; c < 127; ++c) {
      const double d = std::fabs(std::fabs(static_cast<double>(v)) - fp8_e4m3_to_float(static_cast<uint8_t>(c)));
      best = std::min(best, d);
    }
    const double mine = std::fabs(std::fabs(static_cast<double>(v)) - std::fabs(fp8_e4m3_to_float(got)));
    if (std::fabs(v) <= 448.0f) {
      EXPECT_EQ(mine, best) << v;
    }
    EXPECT_EQ(got & 0x80, v < 0 ? 0x80 : 0x00);
  }
}

// fp8_e4m3_from_float works on the float's bits; here the definition instead: the code whose value is nearest,
// ties to the even code, over the table of values, for a dense sweep of float bit patterns across the whole range
// (subnormal codes, every binade, saturation) and every midpoint between neighbouring codes and its neighbours.
uint8_t nearest_code_by_search(float v) {
  const uint8_t sign = std::signbit(v) ? 0x80 : 0x00;
  const double a = std::fabs(static_cast<double>(v));
  if (a >= 448.0) return static_cast<uint8_t>(sign | 126);
  int best = 0;
  for (int c = 1; c < 127; ++c) {
    const double d = std::fabs(a - fp8_e4m3_to_float(static_cast<uint8_t>(c)));
    const double b = std::fabs(a - fp8_e4m3_to_float(static_cast<uint8_t>(best)));
    if (d < b || (d == b && (c & 1) == 0)) best = c;
  }
  return static_cast<uint8_t>(sign | best);
}

TEST(Fp8E4M3, BitArithmeticEqualsTheNearestCodeSearch) {
  auto bits_of = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  };
  auto float_of = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  std::vector<float> values;
  for (uint32_t u = bits_of(1e-4f); u <= bits_of(600.0f); u += 4099) values.push_back(float_of(u));
  for (int c = 0; c < 126; ++c) {
    const float mid = (fp8_e4m3_to_float(static_cast<uint8_t>(c)) + fp8_e4m3_to_float(static_cast<uint8_t>(c + 1))) / 2;
    for (float m : {std::nextafter(mid, 0.0f), mid, std::nextafter(mid, 1e9f)}) values.push_back(m);
  }
  for (float v : {0.0f, 448.0f, 464.0f, 479.0f, 480.0f, 1e10f}) values.push_back(v);
  for (float v : values) {
    ASSERT_EQ(fp8_e4m3_from_float(v), nearest_code_by_search(v)) << v;
    ASSERT_EQ(fp8_e4m3_from_float(-v), nearest_code_by_search(-v)) << -v;
  }
  EXPECT_GT(values.size(), 40000u);
}

TEST(Fp8E4M3, RowScaleIsAmaxOver448) {
  const float row[4] = {0.5f, -3.5f, 1.0f, 0.0f};
  uint8_t q[4];
  const float scale = quantize_row_fp8_e4m3(row, 4, q);
  EXPECT_EQ(scale, 3.5f / 448.0f);
  EXPECT_EQ(fp8_e4m3_to_float(q[1]), -448.0f);
  EXPECT_EQ(q[3], 0x00);
  const float zeros[2] = {0.0f, 0.0f};
  EXPECT_EQ(quantize_row_fp8_e4m3(zeros, 2, q), 1.0f);
}

}  // namespace
}  // namespace ember::quant
