#pragma once
// Helpers shared by the AVX2 kernels. Every function that uses AVX2 carries
// EMBER_AVX2 (a per-function target attribute) instead of a global -mavx2, so
// the library still runs on x86-64 CPUs without AVX2: callers check
// cpu_supports_avx2() before entering. Only included on x86-64.

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#define EMBER_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace ember::avx2 {

EMBER_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// One fp16 scale with F16C: exact like quant::fp16_to_f32 for every non-NaN
// value, and branch-free (random subnormal/normal scales would mispredict).
EMBER_AVX2 inline float load_fp16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// The low 8 bytes, unsigned, as 8 floats.
EMBER_AVX2 inline __m256 u8x8_to_ps(__m128i bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)); }

}  // namespace ember::avx2
