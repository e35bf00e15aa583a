#pragma once
// The x86 int8 linear kernels' body, compiled twice: by linear_int8_avx2.cpp
// (maddubs + madd) and by linear_int8_vnni.cpp (vpdpbusd), each defining
// EMBER_INT8_TARGET (the functions' target attribute), EMBER_INT8_VNNI (0/1)
// and EMBER_INT8_NS (a namespace of its own) before including it. A target
// attribute cannot be a template parameter, hence the include; nothing else
// should include this file.
//
// Two shapes compute the same bits (the order of linear_int8.h):
//  - row_dot (decode, M < kPanelMinRows): one weight row against
//    C <= 4 rows of x, 4 blocks a step. Each block's codes are unpacked once
//    for the C rows; a row's 4 int32x8 dot vectors reduce to the 4 blocks'
//    exact sums (an hadd tree), scaled into lanes j % 4 by FMA. At M = 1,
//    row_dot2 takes two Q4_x weight rows at once, one per 128-bit half.
//  - panel (prefill and batches): 8 weight rows' codes transposed so that
//    dword t of a 32-byte vector holds elements 4t..4t+3 of each row; one x
//    dword broadcast against it gives 8 rows' partial dots per instruction,
//    so a block's exact sums need no horizontal step and the scaling is one
//    FMA per block for 8 outputs. About 2 ops per 32 multiply-adds for Q4_x
//    (1 with VNNI; Q8_0's signs cost 2 more on AVX2), against 4 FMAs for the
//    float kernels.

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/linear_int8.h"
#include "kernels/cpu/linear_kernels.h"

#define EMBER_INT8_INLINE EMBER_INT8_TARGET inline __attribute__((always_inline))

namespace ember::EMBER_INT8_NS {

// Lane l = sum over bytes 4l .. 4l + 3 of u (unsigned) * q (signed), added to acc.
// Exact: maddubs' int16 pairs stay below 2 * 128 * 127 < 2^15 for every format here.
EMBER_INT8_INLINE __m256i dot_u8s8(__m256i acc, __m256i u, __m256i q) {
#if EMBER_INT8_VNNI
  return _mm256_dpbusd_epi32(acc, u, q);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), _mm256_set1_epi16(1)));
#endif
}

// Lane i = the sum of p[i]'s eight int32s.
EMBER_INT8_INLINE __m128i reduce4(const __m256i p[4]) {
  const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

// Q4_x: 16 bytes -> the 32 nibbles in element order (low nibbles, then high).
EMBER_INT8_INLINE __m256i nibbles(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

EMBER_INT8_INLINE int32_t u16_at(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

EMBER_INT8_INLINE int32_t u32_at(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// fp16 at p, p + stride, ... (`count` of them, 0.0 past count) as floats.
template <int N>
EMBER_INT8_INLINE __m128 fp16x4(const uint8_t* p, int64_t stride, int count) {
  static_assert(N == 4);
  const __m128i h =
      _mm_setr_epi16(static_cast<int16_t>(u16_at(p)), count > 1 ? static_cast<int16_t>(u16_at(p + stride)) : 0,
                     count > 2 ? static_cast<int16_t>(u16_at(p + 2 * stride)) : 0,
                     count > 3 ? static_cast<int16_t>(u16_at(p + 3 * stride)) : 0, 0, 0, 0, 0);
  return _mm_cvtph_ps(h);
}

// The x side of 4 blocks of one row: d, ds and sum (zeros past count).
struct XBlocks {
  __m128 d, ds;
  __m128i sum;
};

EMBER_INT8_INLINE XBlocks x_blocks(const float* d, const float* ds, const int32_t* sum, int count) {
  if (count == 4) return {_mm_loadu_ps(d), _mm_loadu_ps(ds), _mm_loadu_si128(reinterpret_cast<const __m128i*>(sum))};
  alignas(16) float dd[4] = {0, 0, 0, 0}, ss[4] = {0, 0, 0, 0};
  alignas(16) int32_t su[4] = {0, 0, 0, 0};
  for (int i = 0; i < count; ++i) dd[i] = d[i], ss[i] = ds[i], su[i] = sum[i];
  return {_mm_load_ps(dd), _mm_load_ps(ss), _mm_load_si128(reinterpret_cast<const __m128i*>(su))};
}

// A weight format: kBytes per block; codes() of one block as the 32 bytes
// that meet x's block; dot() adds their products to acc; scales() of 4
// blocks; term() folds 4 blocks' exact sums into the lanes j % 4.
// Panel flags: kSigned (codes are int8: |w| meets x with w's sign), kCentred (Q4_0: sum (u - 8) q), kMin (Q4_1).
struct Q8_0 {
  static constexpr int64_t kBytes = 34, kQs = 2;
  static constexpr bool kSigned = true, kCentred = false, kMin = false;
  struct Scales {
    __m128 d;
  };
  EMBER_INT8_INLINE static __m256i codes(const uint8_t* b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
  }
  EMBER_INT8_INLINE static __m256i dot(__m256i acc, __m256i w, __m256i q) {
    return dot_u8s8(acc, _mm256_sign_epi8(w, w), _mm256_sign_epi8(q, w));  // |w| * (q with w's sign)
  }
  EMBER_INT8_INLINE static Scales scales(const uint8_t* b, int count) { return {fp16x4<4>(b, kBytes, count)}; }
  EMBER_INT8_INLINE static __m128 term(__m128 acc, __m128i dot, const Scales& s, const XBlocks& x) {
    return _mm_fmadd_ps(_mm_cvtepi32_ps(dot), _mm_mul_ps(s.d, x.d), acc);
  }
};

struct Q4_0 {
  static constexpr int64_t kBytes = 18, kQs = 2;
  static constexpr bool kSigned = false, kCentred = true, kMin = false;
  struct Scales {
    __m128 d;
  };
  EMBER_INT8_INLINE static __m256i codes(const uint8_t* b) { return nibbles(b + kQs); }
  EMBER_INT8_INLINE static __m256i dot(__m256i acc, __m256i u, __m256i q) { return dot_u8s8(acc, u, q); }
  EMBER_INT8_INLINE static Scales scales(const uint8_t* b, int count) { return {fp16x4<4>(b, kBytes, count)}; }
  EMBER_INT8_INLINE static __m128 term(__m128 acc, __m128i dot, const Scales& s, const XBlocks& x) {
    const __m128i centred = _mm_sub_epi32(dot, _mm_slli_epi32(x.sum, 3));  // sum (u - 8) q
    return _mm_fmadd_ps(_mm_cvtepi32_ps(centred), _mm_mul_ps(s.d, x.d), acc);
  }
};

struct Q4_1 {
  static constexpr int64_t kBytes = 20, kQs = 4;
  static constexpr bool kSigned = false, kCentred = false, kMin = true;
  struct Scales {
    __m128 d, m;
  };
  EMBER_INT8_INLINE static __m256i codes(const uint8_t* b) { return nibbles(b + kQs); }
  EMBER_INT8_INLINE static __m256i dot(__m256i acc, __m256i u, __m256i q) { return dot_u8s8(acc, u, q); }
  EMBER_INT8_INLINE static Scales scales(const uint8_t* b, int count) {
    const __m128i dm = _mm_setr_epi32(u32_at(b), count > 1 ? u32_at(b + kBytes) : 0,
                                      count > 2 ? u32_at(b + 2 * kBytes) : 0, count > 3 ? u32_at(b + 3 * kBytes) : 0);
    const __m256 f = _mm256_cvtph_ps(dm);  // d0 m0 d1 m1 | d2 m2 d3 m3
    const __m128 lo = _mm256_castps256_ps128(f), hi = _mm256_extractf128_ps(f, 1);
    return {_mm_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)), _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))};
  }
  EMBER_INT8_INLINE static __m128 term(__m128 acc, __m128i dot, const Scales& s, const XBlocks& x) {
    acc = _mm_fmadd_ps(_mm_cvtepi32_ps(dot), _mm_mul_ps(s.d, x.d), acc);
    return _mm_fmadd_ps(s.m, x.ds, acc);
  }
};

// ((a0 + a2) + (a1 + a3))
EMBER_INT8_INLINE float lanes_sum(__m128 a) {
  const __m128 pairs = _mm_add_ps(a, _mm_movehl_ps(a, a));
  return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)));
}

// Decode streams the weights once, row after row: the hardware prefetcher alone left a core at about half the
// machine's read bandwidth (cpu_linear_bench head_q8_0/1: 5 -> 7-9 GB/s with this on a loaded 2-core Zen 2), so
// each step of 4 blocks asks for the bytes kPrefetchBytes further on (past a range's end: harmless, unused).
constexpr int64_t kPrefetchBytes = 4096;

template <class F>
EMBER_INT8_INLINE void prefetch_ahead(const uint8_t* b) {
  for (int64_t o = 0; o < 4 * F::kBytes; o += 64)
    _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(b) + kPrefetchBytes + o), _MM_HINT_T0);
}

// Blocks [j0, j0 + count) of one weight row against rows m0 .. m0 + C - 1 of x.
template <class F, int C>
EMBER_INT8_INLINE void step(const Q8Rows& x, const uint8_t* b, int64_t m0, int64_t j0, int count, __m128* acc) {
  const int64_t blocks = x.k / kQ8Block;
  prefetch_ahead<F>(b);
  __m256i w[4];
  for (int i = 0; i < 4; ++i) w[i] = i < count ? F::codes(b + i * F::kBytes) : _mm256_setzero_si256();
  const typename F::Scales s = F::scales(b, count);
  for (int c = 0; c < C; ++c) {
    const int8_t* q = x.q + (m0 + c) * x.k + j0 * kQ8Block;
    __m256i p[4];
    for (int i = 0; i < 4; ++i)
      p[i] = i < count ? F::dot(_mm256_setzero_si256(), w[i],
                                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i * kQ8Block)))
                       : _mm256_setzero_si256();
    const int64_t at = (m0 + c) * blocks + j0;
    acc[c] = F::term(acc[c], reduce4(p), s, x_blocks(x.d + at, x.ds + at, x.sum + at, count));
  }
}

// out[c] = dot(weight row, x row m0 + c) for c < C, without the bias.
template <class F, int C>
EMBER_INT8_TARGET void row_dot(const Q8Rows& x, const uint8_t* wrow, int64_t m0, float* out) {
  __m128 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm_setzero_ps();
  const int64_t blocks = x.k / kQ8Block, full = blocks / 4 * 4;
  for (int64_t j0 = 0; j0 < full; j0 += 4) step<F, C>(x, wrow + j0 * F::kBytes, m0, j0, 4, acc);
  if (full < blocks) step<F, C>(x, wrow + full * F::kBytes, m0, full, static_cast<int>(blocks - full), acc);
  for (int c = 0; c < C; ++c) out[c] = lanes_sum(acc[c]);
}

// Decode (M = 1): two weight rows at once, row a's four lanes in the low half of a 256-bit vector and row b's in
// the high half, so x's blocks are loaded once for both and the reduction and scaling run 8 lanes wide. Each lane
// takes the ops of row_dot's lane in the same order: the same bits.
struct Scales2 {
  __m256 d, m;
};

template <class F>
EMBER_INT8_INLINE Scales2 scales2(const uint8_t* a, const uint8_t* b, int count) {
  const typename F::Scales sa = F::scales(a, count), sb = F::scales(b, count);
  Scales2 s{_mm256_set_m128(sb.d, sa.d), _mm256_setzero_ps()};
  if constexpr (F::kMin) s.m = _mm256_set_m128(sb.m, sa.m);
  return s;
}

// F::term of both rows (see the formats above).
template <class F>
EMBER_INT8_INLINE __m256 term2(__m256 acc, __m256i dot, const Scales2& s, const XBlocks& x) {
  if constexpr (F::kCentred) {
    const __m128i eight_sum = _mm_slli_epi32(x.sum, 3);
    dot = _mm256_sub_epi32(dot, _mm256_set_m128i(eight_sum, eight_sum));
  }
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(s.d, _mm256_set_m128(x.d, x.d)), acc);
  if constexpr (F::kMin) acc = _mm256_fmadd_ps(s.m, _mm256_set_m128(x.ds, x.ds), acc);
  return acc;
}

template <class F>
EMBER_INT8_INLINE void step2(const Q8Rows& x, const uint8_t* a, const uint8_t* b, int64_t j0, int count, __m256& acc) {
  const int8_t* q = x.q + j0 * kQ8Block;
  prefetch_ahead<F>(a);
  prefetch_ahead<F>(b);
  __m256i pa[4], pb[4];
  for (int i = 0; i < 4; ++i) {
    if (i < count) {
      const __m256i qi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i * kQ8Block));
      pa[i] = F::dot(_mm256_setzero_si256(), F::codes(a + i * F::kBytes), qi);
      pb[i] = F::dot(_mm256_setzero_si256(), F::codes(b + i * F::kBytes), qi);
    } else {
      pa[i] = pb[i] = _mm256_setzero_si256();
    }
  }
  const __m256i ha = _mm256_hadd_epi32(_mm256_hadd_epi32(pa[0], pa[1]), _mm256_hadd_epi32(pa[2], pa[3]));
  const __m256i hb = _mm256_hadd_epi32(_mm256_hadd_epi32(pb[0], pb[1]), _mm256_hadd_epi32(pb[2], pb[3]));
  const __m256i sums =
      _mm256_add_epi32(_mm256_permute2x128_si256(ha, hb, 0x20), _mm256_permute2x128_si256(ha, hb, 0x31));
  acc = term2<F>(acc, sums, scales2<F>(a, b, count), x_blocks(x.d + j0, x.ds + j0, x.sum + j0, count));
}

// out[0] = dot(row a, x row 0), out[1] = dot(row b, x row 0), without the bias.
template <class F>
EMBER_INT8_TARGET void row_dot2(const Q8Rows& x, const uint8_t* a, const uint8_t* b, float out[2]) {
  __m256 acc = _mm256_setzero_ps();
  const int64_t blocks = x.k / kQ8Block, full = blocks / 4 * 4;
  for (int64_t j0 = 0; j0 < full; j0 += 4) step2<F>(x, a + j0 * F::kBytes, b + j0 * F::kBytes, j0, 4, acc);
  if (full < blocks)
    step2<F>(x, a + full * F::kBytes, b + full * F::kBytes, full, static_cast<int>(blocks - full), acc);
  out[0] = lanes_sum(_mm256_castps256_ps128(acc));
  out[1] = lanes_sum(_mm256_extractf128_ps(acc, 1));
}

constexpr int kMaxRows = 4;
using RowDotFn = void (*)(const Q8Rows&, const uint8_t*, int64_t, float*);

template <class F>
EMBER_INT8_TARGET void run_rows(const Int8LinearArgs& a, int64_t n_begin, int64_t n_end) {
  static constexpr RowDotFn kDots[kMaxRows] = {row_dot<F, 1>, row_dot<F, 2>, row_dot<F, 3>, row_dot<F, 4>};
  const Q8Rows& x = *a.x;
  const int64_t row_bytes = x.k / kQ8Block * F::kBytes;
  const auto* w = static_cast<const uint8_t*>(a.w);
  float out[kMaxRows];
  // (Q8_0 stays on row_dot: its codes need twice the registers and two rows at once measured ~8% slower)
  if (x.m == 1 && !F::kSigned) {
    int64_t n = n_begin;
    for (; n + 2 <= n_end; n += 2) {
      row_dot2<F>(x, w + n * row_bytes, w + (n + 1) * row_bytes, out);
      a.y[n] = out[0] + (a.bias ? a.bias[n] : 0.0f);
      a.y[n + 1] = out[1] + (a.bias ? a.bias[n + 1] : 0.0f);
    }
    if (n < n_end) {
      row_dot<F, 1>(x, w + n * row_bytes, 0, out);
      a.y[n] = out[0] + (a.bias ? a.bias[n] : 0.0f);
    }
    return;
  }
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

// ---- the panel kernel ---------------------------------------------------------

constexpr int kPanel = 8;            // weight rows per panel: one per int32 lane
constexpr int64_t kPanelXRows = 64;  // rows of x per pass over the panels (their q stays in L2)

// Block j of a panel: codes[t] (t < 8) = dword t of each row's 32 codes, row r in lane r
// (Q8_0: also their magnitudes); d and m (Q4_1) of each row.
template <class F>
struct PanelBlock {
  __m256i codes[8];
  __m256i abs[F::kSigned ? 8 : 1];
  __m256 d, m;
};

// 8 x 8 transpose of dwords: out[t] lane r = in[r] lane t.
EMBER_INT8_INLINE void transpose8(const __m256i in[8], __m256i out[8]) {
  __m256i a[8], b[8];
  for (int i = 0; i < 4; ++i) {
    a[2 * i] = _mm256_unpacklo_epi32(in[2 * i], in[2 * i + 1]);
    a[2 * i + 1] = _mm256_unpackhi_epi32(in[2 * i], in[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    b[4 * i + 0] = _mm256_unpacklo_epi64(a[4 * i + 0], a[4 * i + 2]);
    b[4 * i + 1] = _mm256_unpackhi_epi64(a[4 * i + 0], a[4 * i + 2]);
    b[4 * i + 2] = _mm256_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
    b[4 * i + 3] = _mm256_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
  }
  // b[0..3]: rows 0-3, dwords (0, 4), (1, 5), (2, 6), (3, 7) per 128-bit half; b[4..7] rows 4-7.
  for (int t = 0; t < 4; ++t) {
    out[t] = _mm256_permute2x128_si256(b[t], b[4 + t], 0x20);
    out[t + 4] = _mm256_permute2x128_si256(b[t], b[4 + t], 0x31);
  }
}

// Packs blocks of rows n0 .. n0 + rows - 1 (rows <= 8; missing rows repeat the last).
template <class F>
EMBER_INT8_TARGET void pack_panel(const uint8_t* w, int64_t row_bytes, int64_t blocks, int rows, PanelBlock<F>* out) {
  const uint8_t* row[kPanel];
  for (int r = 0; r < kPanel; ++r) row[r] = w + std::min(r, rows - 1) * row_bytes;
  for (int64_t j = 0; j < blocks; ++j) {
    __m256i u[kPanel];
    alignas(16) uint16_t d[kPanel], m[kPanel];
    for (int r = 0; r < kPanel; ++r) {
      const uint8_t* b = row[r] + j * F::kBytes;
      u[r] = F::codes(b);
      d[r] = static_cast<uint16_t>(u16_at(b));
      m[r] = static_cast<uint16_t>(F::kMin ? u16_at(b + 2) : 0);
    }
    transpose8(u, out[j].codes);
    if constexpr (F::kSigned)
      for (int t = 0; t < 8; ++t) out[j].abs[t] = _mm256_sign_epi8(out[j].codes[t], out[j].codes[t]);
    out[j].d = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(d)));
    out[j].m = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(m)));
  }
}

// y[r, n0 + lane] for rows r of x in [m_begin, m_end), C at a time: lanes j % 4 per row.
template <class F, int C>
EMBER_INT8_TARGET void panel_rows(const Q8Rows& x, const PanelBlock<F>* p, int64_t m0, __m256 out[C]) {
  const int64_t blocks = x.k / kQ8Block;
  __m256 acc[C][4];
  for (int c = 0; c < C; ++c)
    for (int l = 0; l < 4; ++l) acc[c][l] = _mm256_setzero_ps();
  for (int64_t j = 0; j < blocks; ++j) {
    const PanelBlock<F>& b = p[j];
    for (int c = 0; c < C; ++c) {
      const int8_t* q = x.q + (m0 + c) * x.k + j * kQ8Block;
      const int64_t at = (m0 + c) * blocks + j;
      __m256i s;
      if constexpr (F::kSigned) {  // |w| * (x with w's sign): int16 pairs up to 2 * 128 * 127, widened every chunk
        s = _mm256_setzero_si256();
        for (int t = 0; t < 8; ++t) {
          const __m256i xs =
              _mm256_sign_epi8(_mm256_set1_epi32(u32_at(reinterpret_cast<const uint8_t*>(q + 4 * t))), b.codes[t]);
          s = dot_u8s8(s, b.abs[t], xs);
        }
      } else {
#if EMBER_INT8_VNNI
        s = _mm256_setzero_si256();
        for (int t = 0; t < 8; ++t)
          s = _mm256_dpbusd_epi32(s, b.codes[t],
                                  _mm256_set1_epi32(u32_at(reinterpret_cast<const uint8_t*>(q + 4 * t))));
#else
        // int16 lanes: 8 maddubs results of |.| <= 2 * 15 * 127 sum to < 2^15, so no step saturates.
        __m256i s16 = _mm256_setzero_si256();
        for (int t = 0; t < 8; ++t)
          s16 = _mm256_add_epi16(
              s16,
              _mm256_maddubs_epi16(b.codes[t], _mm256_set1_epi32(u32_at(reinterpret_cast<const uint8_t*>(q + 4 * t)))));
        s = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
#endif
      }
      if constexpr (F::kCentred) s = _mm256_sub_epi32(s, _mm256_set1_epi32(8 * x.sum[at]));  // sum (u - 8) q
      __m256& lane = acc[c][j % 4];
      lane = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(b.d, _mm256_set1_ps(x.d[at])), lane);
      if constexpr (F::kMin) lane = _mm256_fmadd_ps(b.m, _mm256_set1_ps(x.ds[at]), lane);
    }
  }
  for (int c = 0; c < C; ++c)
    out[c] = _mm256_add_ps(_mm256_add_ps(acc[c][0], acc[c][2]), _mm256_add_ps(acc[c][1], acc[c][3]));
}

constexpr int kPanelCols = 2;  // rows of x per panel_rows call (4 accumulators each)

template <class F>
EMBER_INT8_TARGET void run_panels(const Int8LinearArgs& a, int64_t n_begin, int64_t n_end) {
  const Q8Rows& x = *a.x;
  const int64_t blocks = x.k / kQ8Block, row_bytes = blocks * F::kBytes;
  // (bytes, aligned by hand: std::vector of an over-aligned type is not, inside target("avx2") code)
  thread_local std::vector<uint8_t> storage;
  using Block = PanelBlock<F>;
  const size_t need = static_cast<size_t>(blocks) * sizeof(Block) + alignof(Block);
  if (storage.size() < need) storage.resize(need);
  const uintptr_t at = reinterpret_cast<uintptr_t>(storage.data());
  Block* panel = reinterpret_cast<Block*>((at + alignof(Block) - 1) & ~(alignof(Block) - 1));
  const auto* w = static_cast<const uint8_t*>(a.w);
  for (int64_t mb = 0; mb < x.m; mb += kPanelXRows) {
    const int64_t me = std::min(x.m, mb + kPanelXRows);
    for (int64_t n0 = n_begin; n0 < n_end; n0 += kPanel) {
      const int rows = static_cast<int>(std::min<int64_t>(kPanel, n_end - n0));
      pack_panel<F>(w + n0 * row_bytes, row_bytes, blocks, rows, panel);
      alignas(32) float bias[kPanel] = {0, 0, 0, 0, 0, 0, 0, 0};
      if (a.bias)
        for (int r = 0; r < rows; ++r) bias[r] = a.bias[n0 + r];
      const __m256 b = _mm256_load_ps(bias);
      for (int64_t m0 = mb; m0 < me; m0 += kPanelCols) {
        __m256 out[kPanelCols];
        const int c = static_cast<int>(std::min<int64_t>(kPanelCols, me - m0));
        if (c == 2) {
          panel_rows<F, 2>(x, panel, m0, out);
        } else {
          panel_rows<F, 1>(x, panel, m0, out);
        }
        for (int i = 0; i < c; ++i) {
          alignas(32) float y[kPanel];
          _mm256_store_ps(y, _mm256_add_ps(out[i], b));
          std::copy_n(y, rows, a.y + (m0 + i) * a.n + n0);
        }
      }
    }
  }
}

EMBER_INT8_TARGET inline void linear_int8_rows(const Int8LinearArgs& a, int64_t n_begin, int64_t n_end) {
  const bool panels = a.x->m >= kInt8PanelMinRows;
  switch (a.w_dtype) {
    case DType::kQ8_0:
      return panels ? run_panels<Q8_0>(a, n_begin, n_end) : run_rows<Q8_0>(a, n_begin, n_end);
    case DType::kQ4_0:
      return panels ? run_panels<Q4_0>(a, n_begin, n_end) : run_rows<Q4_0>(a, n_begin, n_end);
    default:
      return panels ? run_panels<Q4_1>(a, n_begin, n_end) : run_rows<Q4_1>(a, n_begin, n_end);
  }
}

}  // namespace ember::EMBER_INT8_NS

#undef EMBER_INT8_INLINE
