// Portable int8 linear: the reference the AVX2 and VNNI kernels must equal bit
// for bit (the operation order is the definition in linear_int8.h), and the
// fast path on CPUs without AVX2. Every float multiply-add is an explicit
// std::fma so no compiler contraction can change a bit.
#include <cmath>

#include "kernels/cpu/linear_int8.h"
#include "kernels/quant/quant_blocks.h"

namespace ember {
namespace {

// One weight block against one activation block: the block's term v_j is
// accumulated into acc as linear_int8.h states.
float q8_0_term(const uint8_t* b, const int8_t* q, float dx, float acc) {
  int32_t s = 0;
  for (int i = 0; i < 32; ++i) s += static_cast<int8_t>(b[2 + i]) * q[i];
  return std::fma(static_cast<float>(s), quant::load_fp16(b) * dx, acc);
}

int32_t nibble_dot(const uint8_t* qs, const int8_t* q) {
  int32_t s = 0;
  for (int i = 0; i < 16; ++i) s += (qs[i] & 0x0F) * q[i] + (qs[i] >> 4) * q[i + 16];
  return s;
}

float q4_0_term(const uint8_t* b, const int8_t* q, float dx, int32_t sum, float acc) {
  const int32_t s = nibble_dot(b + 2, q) - 8 * sum;
  return std::fma(static_cast<float>(s), quant::load_fp16(b) * dx, acc);
}

float q4_1_term(const uint8_t* b, const int8_t* q, float dx, float ds, float acc) {
  acc = std::fma(static_cast<float>(nibble_dot(b + 4, q)), quant::load_fp16(b) * dx, acc);
  return std::fma(quant::load_fp16(b + 2), ds, acc);
}

}  // namespace

void quantize_rows_q8_scalar(const float* x, int64_t r_begin, int64_t r_end, const Q8Rows& out) {
  const int64_t blocks = out.k / kQ8Block;
  for (int64_t r = r_begin; r < r_end; ++r) {
    for (int64_t j = 0; j < blocks; ++j) {
      const float* xb = x + r * out.k + j * kQ8Block;
      float amax = 0.0f;
      for (int i = 0; i < kQ8Block; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
      const float d = amax / 127.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      int8_t* q = out.q + r * out.k + j * kQ8Block;
      int32_t sum = 0;
      for (int i = 0; i < kQ8Block; ++i) {
        q[i] = static_cast<int8_t>(std::nearbyint(xb[i] * id));  // the default mode: half to even
        sum += q[i];
      }
      const int64_t at = r * blocks + j;
      out.d[at] = d;
      out.sum[at] = sum;
      out.ds[at] = d * static_cast<float>(sum);
    }
  }
}

void linear_int8_rows_scalar(const Int8LinearArgs& a, int64_t n_begin, int64_t n_end) {
  const Q8Rows& x = *a.x;
  const int64_t blocks = x.k / kQ8Block, row_bytes = dtype_row_bytes(a.w_dtype, x.k);
  const int64_t block_bytes = dtype_block_bytes(a.w_dtype);
  for (int64_t n = n_begin; n < n_end; ++n) {
    const uint8_t* w = static_cast<const uint8_t*>(a.w) + n * row_bytes;
    for (int64_t r = 0; r < x.m; ++r) {
      float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (int64_t j = 0; j < blocks; ++j) {
        const uint8_t* b = w + j * block_bytes;
        const int8_t* q = x.q + r * x.k + j * kQ8Block;
        const int64_t at = r * blocks + j;
        float& lane = acc[j % 4];
        switch (a.w_dtype) {
          case DType::kQ8_0:
            lane = q8_0_term(b, q, x.d[at], lane);
            break;
          case DType::kQ4_0:
            lane = q4_0_term(b, q, x.d[at], x.sum[at], lane);
            break;
          default:
            lane = q4_1_term(b, q, x.d[at], x.ds[at], lane);
            break;
        }
      }
      a.y[r * a.n + n] = ((acc[0] + acc[2]) + (acc[1] + acc[3])) + (a.bias ? a.bias[n] : 0.0f);
    }
  }
}

}  // namespace ember
