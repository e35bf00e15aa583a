// AVX2 int8 linear (maddubs + madd, linear_int8_x86.h) and the AVX2
// activation quantizer, bit-identical to linear_int8_scalar.cpp.
#include "kernels/cpu/linear_int8.h"

#if defined(__x86_64__)
#include "kernels/cpu/avx2_util.h"

#define EMBER_INT8_TARGET EMBER_AVX2
#define EMBER_INT8_VNNI 0
#define EMBER_INT8_NS int8_avx2
#include "kernels/cpu/linear_int8_x86.h"

namespace ember {

void linear_int8_rows_avx2(const Int8LinearArgs& a, int64_t n_begin, int64_t n_end) {
  int8_avx2::linear_int8_rows(a, n_begin, n_end);
}

// Per block of 32: the same scalar d and 1/d as the reference, x * (1/d)
// rounded half to even by cvtps (the default MXCSR mode, as nearbyint).
EMBER_AVX2 void quantize_rows_q8_avx2(const float* x, int64_t r_begin, int64_t r_end, const Q8Rows& out) {
  const int64_t blocks = out.k / kQ8Block;
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // undoes the packs' lane interleave
  for (int64_t r = r_begin; r < r_end; ++r) {
    for (int64_t j = 0; j < blocks; ++j) {
      const float* xb = x + r * out.k + j * kQ8Block;
      __m256 v[4];
      for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(xb + 8 * i);
      __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], abs_mask), _mm256_and_ps(v[1], abs_mask)),
                               _mm256_max_ps(_mm256_and_ps(v[2], abs_mask), _mm256_and_ps(v[3], abs_mask)));
      __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
      h = _mm_max_ps(h, _mm_movehl_ps(h, h));
      h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
      const float d = _mm_cvtss_f32(h) / 127.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      const __m256 scale = _mm256_set1_ps(id);
      __m256i q[4];
      for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], scale));
      const __m256i sums = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
      const __m256i packed =
          _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));  // |q| <= 127
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.q + r * out.k + j * kQ8Block),
                          _mm256_permutevar8x32_epi32(packed, order));
      __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
      s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
      s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
      const int32_t sum = _mm_cvtsi128_si32(s);
      const int64_t at = r * blocks + j;
      out.d[at] = d;
      out.sum[at] = sum;
      out.ds[at] = d * static_cast<float>(sum);
    }
  }
}

}  // namespace ember

#else  // not x86-64: best_cpu_isa() never picks kAvx2

namespace ember {
void linear_int8_rows_avx2(const Int8LinearArgs& a, int64_t n_begin, int64_t n_end) {
  linear_int8_rows_scalar(a, n_begin, n_end);
}
void quantize_rows_q8_avx2(const float* x, int64_t r_begin, int64_t r_end, const Q8Rows& out) {
  quantize_rows_q8_scalar(x, r_begin, r_end, out);
}
}  // namespace ember

#endif
