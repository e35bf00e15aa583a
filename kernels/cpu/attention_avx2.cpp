// Causal paged attention of one (token, query head) with AVX2, for the fast
// precision (cpu_ops.h): the math of attention.cpp in float32, vectorized
// over head_dim (a multiple of 8) instead of summed serially. Per visible key:
// D / 8 FMAs and a horizontal sum for q.k, an exp, D / 8 FMAs for p v (the
// output held in registers across the keys, up to D = 64 per pass).
// attention.cpp's serial sum is latency-bound at ~4 cycles per element; this
// is ~8x fewer cycles, so long prefills stop being dominated by attention.
// An FP8 cache's codes are decoded 8 at a time through F16C (load8).
#include "kernels/cpu/attention_avx2.h"

#include <algorithm>
#include <cmath>
#include <limits>

#if defined(__x86_64__)
#include "kernels/cpu/avx2_util.h"

namespace ember {
namespace {

// 8 consecutive cache elements as floats. FP8 E4M3 codes become their value / 256 without a table: the 4 exponent
// and 3 mantissa bits moved into a half's 5 and 10 (bias 15 instead of 7, so 2^8 smaller, subnormals included)
// and converted by F16C, exactly. The cache's scale, times 256, is applied outside: once per score, once to the
// output. (The NaN codes, which writes never store, would read as 480 / 256.)
EMBER_AVX2 inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
EMBER_AVX2 inline __m256 load8(const uint8_t* p) {
  const __m128i codes = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  const __m128i magnitude = _mm_slli_epi16(_mm_and_si128(codes, _mm_set1_epi16(0x7F)), 7);
  const __m128i sign = _mm_slli_epi16(_mm_and_si128(codes, _mm_set1_epi16(0x80)), 8);
  return _mm256_cvtph_ps(_mm_or_si128(magnitude, sign));
}
constexpr float kFp8LoadScale = 256.0f;  // what load8 of codes divides their values by

// out[0, 8V) += sum_j p[j] * V_j[0, 8V), the V vectors of the sum kept in registers across the keys.
template <int V, typename Elem>
EMBER_AVX2 void weighted_sum(const Elem* v_cache, const int64_t* rows, const float* p, int64_t n, float inv,
                             float* out) {
  __m256 o[V];
  for (int i = 0; i < V; ++i) o[i] = _mm256_setzero_ps();
  for (int64_t j = 0; j < n; ++j) {
    const __m256 w = _mm256_set1_ps(p[j]);
    const Elem* v = v_cache + rows[j];
    for (int i = 0; i < V; ++i) o[i] = _mm256_fmadd_ps(w, load8(v + 8 * i), o[i]);
  }
  for (int i = 0; i < V; ++i) _mm256_storeu_ps(out + 8 * i, _mm256_mul_ps(o[i], _mm256_set1_ps(inv)));
}

template <typename Elem>
using WeightedSumFn = void (*)(const Elem*, const int64_t*, const float*, int64_t, float, float*);
template <typename Elem>
constexpr WeightedSumFn<Elem> kWeightedSums[8] = {weighted_sum<1, Elem>, weighted_sum<2, Elem>, weighted_sum<3, Elem>,
                                                  weighted_sum<4, Elem>, weighted_sum<5, Elem>, weighted_sum<6, Elem>,
                                                  weighted_sum<7, Elem>, weighted_sum<8, Elem>};

// k_cache / v_cache: this KV head's first element of slot 0; their elements read as load8's value * k_scale
// (v_scale).
template <typename Elem>
EMBER_AVX2 void attend(const AttendArgs& a, const Elem* k_cache, const Elem* v_cache, float k_scale, float v_scale,
                       const float* q, float* out, std::vector<float>& scores, std::vector<int64_t>& rows) {
  const int64_t d = a.head_dim, n = a.visible;
  const float score_scale = a.scale * k_scale;
  scores.resize(static_cast<size_t>(n));
  rows.resize(static_cast<size_t>(n));
  // Each key's offset in the cache, walked block by block (no division per key).
  for (int64_t j0 = 0, b = 0; j0 < n; j0 += a.block_size, ++b) {
    const int64_t base = int64_t{a.block_table[b]} * a.block_size, end = std::min(n, j0 + a.block_size);
    for (int64_t j = j0; j < end; ++j) rows[static_cast<size_t>(j)] = (base + j - j0) * a.row_stride;
  }
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    const Elem* k = k_cache + rows[static_cast<size_t>(j)];
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= d; i += 16) {
      s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k + i), s0);
      s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load8(k + i + 8), s1);
    }
    for (; i < d; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k + i), s0);
    const float s = avx2::hsum(_mm256_add_ps(s0, s1)) * score_scale;
    scores[static_cast<size_t>(j)] = s;
    max_score = std::max(max_score, s);
  }
  float sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    scores[static_cast<size_t>(j)] = std::exp(scores[static_cast<size_t>(j)] - max_score);
    sum += scores[static_cast<size_t>(j)];
  }
  for (int64_t i = 0; i < d; i += 64) {  // up to 8 vectors of the output per pass over the keys
    const int vectors = static_cast<int>(std::min<int64_t>(8, (d - i) / 8));
    kWeightedSums<Elem>[vectors - 1](v_cache + i, rows.data(), scores.data(), n, v_scale / sum, out + i);
  }
}

}  // namespace

EMBER_AVX2 void dequantize_fp8_avx2(const uint8_t* codes, int64_t n, float scale, float* out) {
  // (value / 256) * (scale * 256): both factors exact, so the product is value * scale rounded once, as the
  // exact loop's values[code] * scale.
  const __m256 s = _mm256_set1_ps(scale * kFp8LoadScale);
  for (int64_t i = 0; i < n; i += 8) _mm256_storeu_ps(out + i, _mm256_mul_ps(load8(codes + i), s));
}

EMBER_AVX2 void attend_one_avx2(const AttendArgs& a, const float* q, float* out, std::vector<float>& scores,
                                std::vector<int64_t>& rows) {
  if (a.k_codes != nullptr) {
    attend(a, a.k_codes, a.v_codes, a.k_scale * kFp8LoadScale, a.v_scale * kFp8LoadScale, q, out, scores, rows);
  } else {
    attend(a, a.k_cache, a.v_cache, 1.0f, 1.0f, q, out, scores, rows);
  }
}

}  // namespace ember

#else

namespace ember {
void dequantize_fp8_avx2(const uint8_t*, int64_t, float, float*) {}  // never chosen off x86-64
void attend_one_avx2(const AttendArgs&, const float*, float*, std::vector<float>&, std::vector<int64_t>&) {
}  // never chosen off x86-64
}  // namespace ember

#endif
