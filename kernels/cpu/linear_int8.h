#pragma once
// y = x W^T + b with x quantized to 8 bits, as llama.cpp's CPU path: the fast
// default of the CPU backend (the float32 path, linear_kernels.h, stays the
// exact mode). Weights stay in their GGUF blocks (Q8_0, Q4_0, Q4_1) and each
// 32-element block of a weight row meets the matching 32-element block of x
// in an integer dot product (AVX2 maddubs/madd, or AVX512-VNNI vpdpbusd).
//
// Activations, per row and per block j of 32 (Q8Rows):
//   amax = max|x_i|, d = amax / 127, q_i = round_half_even(x_i * (d ? 1/d : 0)),
//   sum = sum_i q_i, ds = d * float(sum).
// Per weight block j of a row (u: the 4-bit values, w: Q8_0's int8 values):
//   Q8_0: v_j = float(sum w q) * (dw dx)
//   Q4_0: v_j = float(sum u q - 8 sum) * (dw dx)
//   Q4_1: v_j = mw * ds_x + float(sum u q) * (dw dx)
// The integer sums are exact (|sum| < 2^19). Block j's term goes into lane
// j % 4 of four float32 accumulators by FMA (Q4_1: two FMAs, the dot first),
// and y = ((acc0 + acc2) + (acc1 + acc3)) + b. That order is the definition:
// every ISA and the scalar reference compute it, so results are bit-identical
// across ISAs and independent of M and of the thread split (a row of x gets
// the same y alone or in a batch, which speculative decoding relies on).
//
// Cost: decode (M = 1) streams W (Q4_1 0.63 B/weight, Q8_0 1.06) at about 6
// vector ops per block; with M > 1 each unpacked weight block is reused for
// up to 4 rows of x (about 3 ops per block and row), so prefill is
// instruction-bound at roughly 32 multiply-adds per 3 ops.

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_features.h"

namespace ember {

inline constexpr int64_t kQ8Block = 32;

// Weight types the int8 path takes; the rest use the float path.
constexpr bool int8_linear_supports(DType t) { return t == DType::kQ8_0 || t == DType::kQ4_0 || t == DType::kQ4_1; }

// m rows of k (a multiple of 32) activations quantized as above: q [m, k],
// d, ds and sum [m, k / 32]. The caller owns the memory.
struct Q8Rows {
  int8_t* q = nullptr;
  float* d = nullptr;
  float* ds = nullptr;
  int32_t* sum = nullptr;
  int64_t m = 0, k = 0;
};

// Quantizes rows [r_begin, r_end) of x [m, k] into `out`. Bit-identical for every isa.
void quantize_rows_q8(const float* x, int64_t r_begin, int64_t r_end, const Q8Rows& out, CpuIsa isa);

struct Int8LinearArgs {
  const Q8Rows* x = nullptr;  // [m, k]
  const void* w = nullptr;    // [n, k] GGUF blocks of w_dtype (int8_linear_supports)
  DType w_dtype = DType::kQ4_1;
  const float* bias = nullptr;  // [n] or null
  float* y = nullptr;           // [m, n]
  int64_t n = 0;
};

// From this many rows of x on, Q4_0/Q4_1 run the panel kernel (linear_int8_x86.h):
// the same bits, faster once its packing is shared by enough rows.
inline constexpr int64_t kInt8PanelMinRows = 4;

// Computes y[:, n_begin:n_end] (all m rows). Threads call it on disjoint ranges.
void linear_int8_rows(const Int8LinearArgs& a, int64_t n_begin, int64_t n_end, CpuIsa isa);

// Per-ISA implementations (linear_int8_scalar.cpp, linear_int8_avx2.cpp, linear_int8_vnni.cpp).
void quantize_rows_q8_scalar(const float* x, int64_t r_begin, int64_t r_end, const Q8Rows& out);
void quantize_rows_q8_avx2(const float* x, int64_t r_begin, int64_t r_end, const Q8Rows& out);
void linear_int8_rows_scalar(const Int8LinearArgs& a, int64_t n_begin, int64_t n_end);
void linear_int8_rows_avx2(const Int8LinearArgs& a, int64_t n_begin, int64_t n_end);
void linear_int8_rows_vnni(const Int8LinearArgs& a, int64_t n_begin, int64_t n_end);

}  // namespace ember
