#pragma once
// The x86 int8 linear kernels' body, compiled twice: by linear_int8_avx2.cpp
// (maddubs + madd) and by linear_int8_vnni.cpp (vpdpbusd), each defining
// EMBER_INT8_TARGET (the functions' target attribute), EMBER_INT8_VNNI (0/1)
// and EMBER_INT8_NS (a namespace of its own) before including it. A target
// attribute cannot be a template parameter, hence the include; nothing else
// should include this file.
//
// Shape: one weight row against C <= 4 rows of x at a time, 4 blocks per
// step. Each weight block is unpacked to 32 unsigned bytes once per step and
// dotted with the C rows' int8 blocks; the 4 blocks' int32 vectors of one row
// reduce to one int32x4 (hadd tree), whose lanes are the blocks' exact sums,
// scaled and accumulated by FMA in the order linear_int8.h defines.

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/linear_int8.h"
#include "kernels/cpu/linear_kernels.h"

namespace ember::EMBER_INT8_NS {

// sum over each 4 bytes of u (unsigned) * q (signed), as int32x8. Exact: maddubs'
// int16 pairs stay below 2 * 128 * 127 < 2^15 for every format here.
EMBER_INT8_TARGET inline __m256i dot_u8s8(__m256i u, __m256i q) {
#if EMBER_INT8_VNNI
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, q);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), _mm256_set1_epi16(1));
#endif
}

// Lane i = the sum of p[i]'s eight int32s.
EMBER_INT8_TARGET inline __m128i reduce4(const __m256i p[4]) {
  const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

EMBER_INT8_TARGET inline __m256i nibbles(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), mask), _mm_and_si128(raw, mask));
}

inline uint16_t u16_at(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// The fp16 scale at offset 0 of `count` blocks `stride` bytes apart, as floats (0 past count).
EMBER_INT8_TARGET inline __m128 scales4(const uint8_t* b, int64_t stride, int count) {
  uint16_t h[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < count; ++i) h[i] = u16_at(b + i * stride);
  return _mm_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
}

// A weight format: kBytes per block; unpack() the 32 unsigned bytes that meet
// x's int8 block; Scales of 4 blocks; term() adds 4 blocks' v_j (linear_int8.h).
// The x side of 4 blocks: d, ds and sum of one row.
struct XBlocks {
  __m128 d, ds;
  __m128i sum;
};

struct Q8_0 {
  static constexpr int64_t kBytes = 34;
  struct Scales {
    __m128 d;
  };
  EMBER_INT8_TARGET static __m256i unpack(const uint8_t* b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));  // signed: dot() takes |w|
  }
  EMBER_INT8_TARGET static __m256i dot(__m256i w, __m256i q) {
    return dot_u8s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(q, w));  // |w| * (q * sign w)
  }
  EMBER_INT8_TARGET static Scales scales(const uint8_t* b, int count) { return {scales4(b, kBytes, count)}; }
  EMBER_INT8_TARGET static __m128 term(__m128 acc, __m128i dot, const Scales& s, const XBlocks& x) {
    return _mm_fmadd_ps(_mm_cvtepi32_ps(dot), _mm_mul_ps(s.d, x.d), acc);
  }
};

struct Q4_0 {
  static constexpr int64_t kBytes = 18;
  struct Scales {
    __m128 d;
  };
  EMBER_INT8_TARGET static __m256i unpack(const uint8_t* b) { return nibbles(b + 2); }
  EMBER_INT8_TARGET static __m256i dot(__m256i u, __m256i q) { return dot_u8s8(u, q); }
  EMBER_INT8_TARGET static Scales scales(const uint8_t* b, int count) { return {scales4(b, kBytes, count)}; }
  EMBER_INT8_TARGET static __m128 term(__m128 acc, __m128i dot, const Scales& s, const XBlocks& x) {
    const __m128i centred = _mm_sub_epi32(dot, _mm_slli_epi32(x.sum, 3));  // sum (u - 8) q
    return _mm_fmadd_ps(_mm_cvtepi32_ps(centred), _mm_mul_ps(s.d, x.d), acc);
  }
};

struct Q4_1 {
  static constexpr int64_t kBytes = 20;
  struct Scales {
    __m128 d, m;
  };
  EMBER_INT8_TARGET static __m256i unpack(const uint8_t* b) { return nibbles(b + 4); }
  EMBER_INT8_TARGET static __m256i dot(__m256i u, __m256i q) { return dot_u8s8(u, q); }
  EMBER_INT8_TARGET static Scales scales(const uint8_t* b, int count) {
    uint32_t dm[4] = {0, 0, 0, 0};  // d | m of each block, fp16
    for (int i = 0; i < count; ++i) std::memcpy(&dm[i], b + i * kBytes, 4);
    const __m256 f = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(dm)));
    const __m128 lo = _mm256_castps256_ps128(f), hi = _mm256_extractf128_ps(f, 1);
    return {_mm_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)), _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))};
  }
  EMBER_INT8_TARGET static __m128 term(__m128 acc, __m128i dot, const Scales& s, const XBlocks& x) {
    acc = _mm_fmadd_ps(_mm_cvtepi32_ps(dot), _mm_mul_ps(s.d, x.d), acc);
    return _mm_fmadd_ps(s.m, x.ds, acc);
  }
};

// Blocks [j0, j0 + count) of x row r (count < 4: zeros past the row's end).
EMBER_INT8_TARGET inline XBlocks x_blocks(const Q8Rows& x, int64_t r, int64_t j0, int count) {
  const int64_t at = r * (x.k / kQ8Block) + j0;
  if (count == 4)
    return {_mm_loadu_ps(x.d + at), _mm_loadu_ps(x.ds + at),
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.sum + at))};
  float d[4] = {0, 0, 0, 0}, ds[4] = {0, 0, 0, 0};
  int32_t sum[4] = {0, 0, 0, 0};
  for (int i = 0; i < count; ++i) d[i] = x.d[at + i], ds[i] = x.ds[at + i], sum[i] = x.sum[at + i];
  return {_mm_loadu_ps(d), _mm_loadu_ps(ds), _mm_loadu_si128(reinterpret_cast<const __m128i*>(sum))};
}

// Blocks [j0, j0 + count) of one weight row against rows m0 .. m0 + C - 1 of x.
template <class F, int C>
EMBER_INT8_TARGET inline void step(const Q8Rows& x, const uint8_t* wrow, int64_t m0, int64_t j0, int count,
                                   __m128 acc[C]) {
  const uint8_t* b = wrow + j0 * F::kBytes;
  __m256i w[4];
  for (int i = 0; i < 4; ++i) w[i] = i < count ? F::unpack(b + i * F::kBytes) : _mm256_setzero_si256();
  const typename F::Scales s = F::scales(b, count);
  for (int c = 0; c < C; ++c) {
    const int8_t* q = x.q + (m0 + c) * x.k + j0 * kQ8Block;
    __m256i p[4];
    for (int i = 0; i < 4; ++i)
      p[i] = i < count ? F::dot(w[i], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i * kQ8Block)))
                       : _mm256_setzero_si256();
    acc[c] = F::term(acc[c], reduce4(p), s, x_blocks(x, m0 + c, j0, count));
  }
}

// out[c] = dot(weight row, x row m0 + c) for c < C, without the bias.
template <class F, int C>
EMBER_INT8_TARGET void row_dot(const Q8Rows& x, const uint8_t* wrow, int64_t m0, float* out) {
  __m128 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm_setzero_ps();
  const int64_t blocks = x.k / kQ8Block, full = blocks / 4 * 4;
  for (int64_t j0 = 0; j0 < full; j0 += 4) step<F, C>(x, wrow, m0, j0, 4, acc);
  if (full < blocks) step<F, C>(x, wrow, m0, full, static_cast<int>(blocks - full), acc);
  for (int c = 0; c < C; ++c) {
    const __m128 pairs = _mm_add_ps(acc[c], _mm_movehl_ps(acc[c], acc[c]));  // acc0 + acc2, acc1 + acc3
    out[c] = _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)));
  }
}

constexpr int kMaxRows = 4;
using RowDotFn = void (*)(const Q8Rows&, const uint8_t*, int64_t, float*);

template <class F>
EMBER_INT8_TARGET void run(const Int8LinearArgs& a, int64_t n_begin, int64_t n_end) {
  static constexpr RowDotFn kDots[kMaxRows] = {row_dot<F, 1>, row_dot<F, 2>, row_dot<F, 3>, row_dot<F, 4>};
  const Q8Rows& x = *a.x;
  const int64_t row_bytes = x.k / kQ8Block * F::kBytes;
  const auto* w = static_cast<const uint8_t*>(a.w);
  float out[kMaxRows];
  // A group of weight rows stays in L1 while every row of x passes by.
  for (int64_t g = n_begin; g < n_end; g += kLinearRowGroup) {
    const int64_t g_end = std::min(g + kLinearRowGroup, n_end);
    for (int64_t m0 = 0; m0 < x.m; m0 += kMaxRows) {
      const int64_t c = std::min<int64_t>(kMaxRows, x.m - m0);
      for (int64_t n = g; n < g_end; ++n) {
        kDots[c - 1](x, w + n * row_bytes, m0, out);
        const float bias = a.bias ? a.bias[n] : 0.0f;
        for (int64_t i = 0; i < c; ++i) a.y[(m0 + i) * a.n + n] = out[i] + bias;
      }
    }
  }
}

EMBER_INT8_TARGET inline void linear_int8_rows(const Int8LinearArgs& a, int64_t n_begin, int64_t n_end) {
  switch (a.w_dtype) {
    case DType::kQ8_0:
      return run<Q8_0>(a, n_begin, n_end);
    case DType::kQ4_0:
      return run<Q4_0>(a, n_begin, n_end);
    default:
      return run<Q4_1>(a, n_begin, n_end);
  }
}

}  // namespace ember::EMBER_INT8_NS
