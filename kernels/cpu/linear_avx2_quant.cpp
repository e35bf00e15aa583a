// AVX2 linear over GGUF blocks (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K) with float32
// activations. Per weight row, each 32-element chunk of a block is unpacked to
// 4 x 8 floats in registers with exactly ggml's float32 operations
// (bit-identical weights, quant_blocks.h), then FMA'd into up to C = 8 rows of
// x, so the unpack cost is shared by C rows. Few rows of x leave few
// accumulator chains, so those accumulate each chunk's 4 vectors in A
// separate chains (C * A <= 8 registers) to hide the FMA latency.
// M = 1 is bound by the unpack (~4-5 ops per 8 weights) and memory;
// W bytes per weight: Q8_0 1.06, Q4_1 0.63, Q4_0 and Q4_K 0.56, Q6_K 0.82.
#include "kernels/cpu/linear_kernels.h"

#if defined(__x86_64__)
#include "kernels/cpu/avx2_util.h"
#include "kernels/quant/quant_blocks.h"

namespace ember {
namespace {

using avx2::u8x8_to_ps;

// Each format: kElems / kBytes per block; load(block) reads the block's
// scales; chunk(j, w) writes elements [32j, 32j + 32) of the block as floats.
struct Q8_0 {
  static constexpr int kElems = 32, kBytes = quant::kQ8_0Bytes;
  const uint8_t* qs;
  __m256 d;
  EMBER_AVX2 void load(const uint8_t* b) {
    d = _mm256_set1_ps(avx2::load_fp16(b));
    qs = b + 2;
  }
  EMBER_AVX2 void chunk(int, __m256 w[4]) const {
    for (int v = 0; v < 4; ++v) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8 * v));
      w[v] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
    }
  }
};

// Q4_0 / Q4_1: 16 bytes, element j in the low nibble of byte j, j + 16 in its high nibble.
EMBER_AVX2 inline void nibbles32(const uint8_t* qs, __m256 q[4]) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(raw, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
  q[0] = u8x8_to_ps(lo);
  q[1] = u8x8_to_ps(_mm_srli_si128(lo, 8));
  q[2] = u8x8_to_ps(hi);
  q[3] = u8x8_to_ps(_mm_srli_si128(hi, 8));
}

struct Q4_0 {
  static constexpr int kElems = 32, kBytes = quant::kQ4_0Bytes;
  const uint8_t* qs;
  __m256 d;
  EMBER_AVX2 void load(const uint8_t* b) {
    d = _mm256_set1_ps(avx2::load_fp16(b));
    qs = b + 2;
  }
  EMBER_AVX2 void chunk(int, __m256 w[4]) const {
    nibbles32(qs, w);
    const __m256 eight = _mm256_set1_ps(8.0f);  // q - 8 is exact in float as in int
    for (int v = 0; v < 4; ++v) w[v] = _mm256_mul_ps(d, _mm256_sub_ps(w[v], eight));
  }
};

struct Q4_1 {
  static constexpr int kElems = 32, kBytes = quant::kQ4_1Bytes;
  const uint8_t* qs;
  __m256 d, m;
  EMBER_AVX2 void load(const uint8_t* b) {
    d = _mm256_set1_ps(avx2::load_fp16(b));
    m = _mm256_set1_ps(avx2::load_fp16(b + 2));
    qs = b + 4;
  }
  EMBER_AVX2 void chunk(int, __m256 w[4]) const {
    nibbles32(qs, w);
    for (int v = 0; v < 4; ++v) w[v] = _mm256_add_ps(_mm256_mul_ps(d, w[v]), m);
  }
};

// 32 bytes of small unsigned ints -> 4 x 8 floats.
EMBER_AVX2 inline void bytes32(__m256i q, __m256 w[4]) {
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  w[0] = u8x8_to_ps(lo);
  w[1] = u8x8_to_ps(_mm_srli_si128(lo, 8));
  w[2] = u8x8_to_ps(hi);
  w[3] = u8x8_to_ps(_mm_srli_si128(hi, 8));
}

struct Q4_K {
  static constexpr int kElems = 256, kBytes = quant::kQ4_KBytes;
  const uint8_t* qs;
  float ds[8], dm[8];
  EMBER_AVX2 void load(const uint8_t* b) {
    const float d = avx2::load_fp16(b), dmin = avx2::load_fp16(b + 2);
    for (int s = 0; s < 8; ++s) {  // as quant::q4_k_block_scales
      int sc = 0, mn = 0;
      quant::q4_k_scale_min(b + 4, s, &sc, &mn);
      ds[s] = d * static_cast<float>(sc);
      dm[s] = dmin * static_cast<float>(mn);
    }
    qs = b + 16;
  }
  // Sub-block j: nibble (j % 2) of bytes [32 (j / 2), +32).
  EMBER_AVX2 void chunk(int j, __m256 w[4]) const {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * (j / 2)));
    const __m256i q = _mm256_and_si256(_mm256_srl_epi16(raw, _mm_cvtsi32_si128(4 * (j % 2))), _mm256_set1_epi8(0x0F));
    bytes32(q, w);
    const __m256 s = _mm256_set1_ps(ds[j]), mn = _mm256_set1_ps(dm[j]);
    for (int v = 0; v < 4; ++v) w[v] = _mm256_sub_ps(_mm256_mul_ps(s, w[v]), mn);
  }
};

struct Q6_K {
  static constexpr int kElems = 256, kBytes = quant::kQ6_KBytes;
  const uint8_t* b;
  float ds[16];
  EMBER_AVX2 void load(const uint8_t* block) {
    b = block;
    const float d = avx2::load_fp16(block + quant::kQ6_KD);
    for (int i = 0; i < 16; ++i) ds[i] = d * static_cast<float>(static_cast<int8_t>(block[quant::kQ6_KScales + i]));
  }
  // Elements [32j, 32j + 32): half h = j / 4, quarter t = j % 4 of that half; low 4
  // bits from ql[64h + 32 (t % 2) + l] >> 4 (t / 2), high 2 from qh[32h + l] >> 2t.
  EMBER_AVX2 void chunk(int j, __m256 w[4]) const {
    const int h = j / 4, t = j % 4;
    const __m256i ql = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + quant::kQ6_KQl + 64 * h + 32 * (t % 2)));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + quant::kQ6_KQh + 32 * h));
    const __m256i lo = _mm256_and_si256(_mm256_srl_epi16(ql, _mm_cvtsi32_si128(4 * (t / 2))), _mm256_set1_epi8(0x0F));
    const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * t)), _mm256_set1_epi8(0x03));
    bytes32(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), w);  // hi <= 3: the shift stays inside each byte
    const __m256 thirty_two = _mm256_set1_ps(32.0f);
    for (int v = 0; v < 4; ++v) {
      const __m256 s = _mm256_set1_ps(ds[2 * j + v / 2]);  // 16 elements per scale
      w[v] = _mm256_mul_ps(s, _mm256_sub_ps(w[v], thirty_two));
    }
  }
};

// out[c] = dot(W row, x row c) for c < C; x rows are ldx floats apart.
template <class F, int C>
EMBER_AVX2 void row_dot(const uint8_t* wrow, const float* x, int64_t ldx, int64_t k, float* out) {
  constexpr int A = C >= 5 ? 1 : (C >= 3 ? 2 : 4);
  __m256 acc[C][A];
  for (int c = 0; c < C; ++c)
    for (int s = 0; s < A; ++s) acc[c][s] = _mm256_setzero_ps();
  F f;
  const int64_t blocks = k / F::kElems;
  for (int64_t bi = 0; bi < blocks; ++bi) {
    f.load(wrow + bi * F::kBytes);
    for (int j = 0; j < F::kElems / 32; ++j) {
      __m256 w[4];
      f.chunk(j, w);
      const float* xb = x + bi * F::kElems + 32 * j;
      for (int v = 0; v < 4; ++v)
        for (int c = 0; c < C; ++c)
          acc[c][v % A] = _mm256_fmadd_ps(w[v], _mm256_loadu_ps(xb + c * ldx + 8 * v), acc[c][v % A]);
    }
  }
  for (int c = 0; c < C; ++c) {
    __m256 s = acc[c][0];
    for (int i = 1; i < A; ++i) s = _mm256_add_ps(s, acc[c][i]);
    out[c] = avx2::hsum(s);
  }
}

constexpr int kMaxCols = 8;
using RowDotFn = void (*)(const uint8_t*, const float*, int64_t, int64_t, float*);

template <class F>
EMBER_AVX2 void run(const LinearArgs& a, int64_t n_begin, int64_t n_end) {
  static constexpr RowDotFn kDots[kMaxCols] = {row_dot<F, 1>, row_dot<F, 2>, row_dot<F, 3>, row_dot<F, 4>,
                                               row_dot<F, 5>, row_dot<F, 6>, row_dot<F, 7>, row_dot<F, 8>};
  const int64_t row_bytes = a.k / F::kElems * F::kBytes;
  const auto* w = static_cast<const uint8_t*>(a.w);
  float out[kMaxCols];
  // A group of weight rows stays in L1 while every row of x passes by.
  for (int64_t g = n_begin; g < n_end; g += kLinearRowGroup) {
    const int64_t g_end = g + kLinearRowGroup < n_end ? g + kLinearRowGroup : n_end;
    for (int64_t m0 = 0; m0 < a.m; m0 += kMaxCols) {
      const int64_t c = a.m - m0 < kMaxCols ? a.m - m0 : kMaxCols;
      for (int64_t n = g; n < g_end; ++n) {
        kDots[c - 1](w + n * row_bytes, a.x + m0 * a.k, a.k, a.k, out);
        const float b = a.bias ? a.bias[n] : 0.0f;
        for (int64_t i = 0; i < c; ++i) a.y[(m0 + i) * a.n + n] = out[i] + b;
      }
    }
  }
}

}  // namespace

void linear_rows_avx2_quant(const LinearArgs& a, int64_t n_begin, int64_t n_end) {
  switch (a.w_dtype) {
    case DType::kQ8_0: return run<Q8_0>(a, n_begin, n_end);
    case DType::kQ4_0: return run<Q4_0>(a, n_begin, n_end);
    case DType::kQ4_1: return run<Q4_1>(a, n_begin, n_end);
    case DType::kQ4_K: return run<Q4_K>(a, n_begin, n_end);
    case DType::kQ6_K: return run<Q6_K>(a, n_begin, n_end);
    default: return linear_rows_scalar(a, n_begin, n_end);
  }
}

}  // namespace ember

#else  // not x86-64: best_cpu_isa() never picks kAvx2

namespace ember {
void linear_rows_avx2_quant(const LinearArgs& a, int64_t n_begin, int64_t n_end) {
  linear_rows_scalar(a, n_begin, n_end);
}
}  // namespace ember

#endif
