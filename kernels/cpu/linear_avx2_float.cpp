// AVX2 linear for F32, F16 and BF16 weights: a register tile of R = 4 weight
// rows x C = 3 rows of x (12 accumulators of 8 lanes), so each weight vector
// loaded (and upcast: F16C for F16, a 16-bit shift for BF16, both exact) feeds
// 3 FMAs and each x vector 4. M = 1 streams W at memory speed (4 or 2 B per
// weight); with M > 1 the tile is FMA-bound (2 x 8 lanes per cycle per core).
#include "kernels/cpu/linear_kernels.h"

#if defined(__x86_64__)
#include <cstring>

#include "kernels/cpu/avx2_util.h"
#include "kernels/quant/quant_blocks.h"

namespace ember {
namespace {

constexpr int kTileRows = 4, kTileCols = 3;

struct F32Loader {
  EMBER_AVX2 static __m256 load8(const uint8_t* row, int64_t i) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
  }
  static float scalar(const uint8_t* row, int64_t i) {
    float v;
    std::memcpy(&v, row + 4 * i, 4);
    return v;
  }
};

struct F16Loader {
  EMBER_AVX2 static __m256 load8(const uint8_t* row, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
  }
  static float scalar(const uint8_t* row, int64_t i) { return quant::fp16_to_f32(quant::load_u16(row + 2 * i)); }
};

struct Bf16Loader {
  EMBER_AVX2 static __m256 load8(const uint8_t* row, int64_t i) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
  }
  static float scalar(const uint8_t* row, int64_t i) { return quant::bf16_to_f32(quant::load_u16(row + 2 * i)); }
};

// y[m0 + c, n0 + r] for r < R, c < C.
template <class L, int R, int C>
EMBER_AVX2 void tile(const LinearArgs& a, int64_t row_bytes, int64_t n0, int64_t m0) {
  const uint8_t* w[R];
  const float* x[C];
  for (int r = 0; r < R; ++r) w[r] = static_cast<const uint8_t*>(a.w) + (n0 + r) * row_bytes;
  for (int c = 0; c < C; ++c) x[c] = a.x + (m0 + c) * a.k;
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= a.k; i += 8) {
    __m256 xv[C];
    for (int c = 0; c < C; ++c) xv[c] = _mm256_loadu_ps(x[c] + i);
    for (int r = 0; r < R; ++r) {
      const __m256 wv = L::load8(w[r], i);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    const float b = a.bias ? a.bias[n0 + r] : 0.0f;
    for (int c = 0; c < C; ++c) {
      float s = avx2::hsum(acc[r][c]);
      for (int64_t j = i; j < a.k; ++j) s += L::scalar(w[r], j) * x[c][j];
      a.y[(m0 + c) * a.n + n0 + r] = s + b;
    }
  }
}

using TileFn = void (*)(const LinearArgs&, int64_t, int64_t, int64_t);

template <class L>
EMBER_AVX2 void run(const LinearArgs& a, int64_t n_begin, int64_t n_end) {
  static constexpr TileFn kTiles[kTileRows][kTileCols] = {
      {tile<L, 1, 1>, tile<L, 1, 2>, tile<L, 1, 3>},
      {tile<L, 2, 1>, tile<L, 2, 2>, tile<L, 2, 3>},
      {tile<L, 3, 1>, tile<L, 3, 2>, tile<L, 3, 3>},
      {tile<L, 4, 1>, tile<L, 4, 2>, tile<L, 4, 3>},
  };
  const int64_t row_bytes = dtype_row_bytes(a.w_dtype, a.k);
  // A group of weight rows stays in L1/L2 while every row of x passes by.
  for (int64_t g = n_begin; g < n_end; g += kLinearRowGroup) {
    const int64_t g_end = g + kLinearRowGroup < n_end ? g + kLinearRowGroup : n_end;
    for (int64_t m0 = 0; m0 < a.m; m0 += kTileCols) {
      const int64_t c = a.m - m0 < kTileCols ? a.m - m0 : kTileCols;
      for (int64_t n0 = g; n0 < g_end; n0 += kTileRows) {
        const int64_t r = g_end - n0 < kTileRows ? g_end - n0 : kTileRows;
        kTiles[r - 1][c - 1](a, row_bytes, n0, m0);
      }
    }
  }
}

}  // namespace

void linear_rows_avx2_float(const LinearArgs& a, int64_t n_begin, int64_t n_end) {
  switch (a.w_dtype) {
    case DType::kF16: return run<F16Loader>(a, n_begin, n_end);
    case DType::kBF16: return run<Bf16Loader>(a, n_begin, n_end);
    default: return run<F32Loader>(a, n_begin, n_end);
  }
}

}  // namespace ember

#else  // not x86-64: best_cpu_isa() never picks kAvx2

namespace ember {
void linear_rows_avx2_float(const LinearArgs& a, int64_t n_begin, int64_t n_end) {
  linear_rows_scalar(a, n_begin, n_end);
}
}  // namespace ember

#endif
