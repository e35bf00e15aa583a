// Portable linear: each weight row is dequantized (bit-exactly, quant_blocks.h)
// into a scratch row once, then dotted with every row of x. Plain C++ that the
// compiler vectorises for the baseline ISA; the reference the AVX2 kernels are
// tested against alongside the double-precision one.
#include <vector>

#include "kernels/cpu/linear_kernels.h"
#include "kernels/quant/quant_blocks.h"

namespace ember {
namespace {

// Eight independent accumulators so the compiler can vectorise without
// -ffast-math (a single running sum is a serial dependency chain).
float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

void linear_rows_scalar(const LinearArgs& a, int64_t n_begin, int64_t n_end) {
  const int64_t row_bytes = dtype_row_bytes(a.w_dtype, a.k);
  std::vector<float> scratch(a.w_dtype == DType::kF32 ? 0 : static_cast<size_t>(a.k));
  for (int64_t n = n_begin; n < n_end; ++n) {
    const auto* src = static_cast<const uint8_t*>(a.w) + n * row_bytes;
    const float* wrow = reinterpret_cast<const float*>(src);
    if (a.w_dtype != DType::kF32) {
      quant::dequantize_row(a.w_dtype, src, a.k, scratch.data());
      wrow = scratch.data();
    }
    const float b = a.bias ? a.bias[n] : 0.0f;
    for (int64_t r = 0; r < a.m; ++r) a.y[r * a.n + n] = dot(a.x + r * a.k, wrow, a.k) + b;
  }
}

}  // namespace ember
