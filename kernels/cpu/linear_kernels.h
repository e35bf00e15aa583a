#pragma once
// y = x W^T + b on the CPU for every weight DType, float32 activations and
// accumulation. Quantized weights stay in their GGUF blocks and are
// dequantized in registers (bit-identical to ggml's reference, see
// quant_blocks.h), so the result equals dequantize-then-f32-matmul up to
// summation order; activations are never quantized (the exact precision;
// linear_int8.h is the fast one).
//
// Decode (M = 1) is bound by streaming W: bytes per weight are 4 (F32), 2
// (F16/BF16), 1.06 (Q8_0), 0.63 (Q4_1), 0.56 (Q4_0/Q4_K), 0.82 (Q6_K). With
// M > 1 each dequantized weight vector is reused for up to 8 rows of x held
// in L1, so the cost per row falls until the FMA units (2 x 8 lanes/cycle per
// core) are the limit.

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_features.h"

namespace ember {

struct LinearArgs {
  const float* x = nullptr;  // [m, k] row-major
  const void* w = nullptr;   // [n, k] of w_dtype (rows of raw blocks for quantized types)
  DType w_dtype = DType::kF32;
  const float* bias = nullptr;  // [n] or null
  float* y = nullptr;           // [m, n]
  int64_t m = 0, n = 0, k = 0;  // k: a whole number of blocks of w_dtype
};

// Output columns are handed to threads in groups of this many weight rows
// (the weights of one group stay in L1 while all rows of x pass by).
inline constexpr int64_t kLinearRowGroup = 16;

// Computes y[:, n_begin:n_end] (all m rows). Threads call it on disjoint ranges.
// Any isa above kAvx2 runs the kAvx2 kernels (float FMAs gain nothing from VNNI).
void linear_rows(const LinearArgs& a, int64_t n_begin, int64_t n_end, CpuIsa isa);

// Per-ISA implementations (linear_scalar.cpp, linear_avx2_float.cpp, linear_avx2_quant.cpp).
void linear_rows_scalar(const LinearArgs& a, int64_t n_begin, int64_t n_end);
void linear_rows_avx2_float(const LinearArgs& a, int64_t n_begin, int64_t n_end);  // F32, F16, BF16
void linear_rows_avx2_quant(const LinearArgs& a, int64_t n_begin, int64_t n_end);  // the block types

}  // namespace ember
