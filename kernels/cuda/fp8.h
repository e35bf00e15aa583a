#pragma once
// FP8 E4M3 on the GPU (sm_89+): the row quantizer and the small-M linear over
// FP8 weights. Quantization is kernels/quant/fp8.h's, bit for bit: a row's
// scale is amax / 448, its codes e4m3(v / scale) rounded to nearest even,
// saturating. An FP8 weight is [N, K] codes and N float32 scales (one per
// output row, "per-channel"): w[n, k] = code[n, k] * scale[n].

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ember::gpu {

// True when this device has FP8 tensor cores and conversions (sm_89+).
bool fp8_supported(int device);

// q[r, :] and scale[r] for each of `rows` rows of x (row-major, `cols`
// elements). x bf16 (activations and weights alike); cols % 8 == 0, x 16-byte
// aligned.
Status quantize_rows_fp8(const __nv_bfloat16* x, int rows, int cols, uint8_t* q, float* scale, cudaStream_t stream);

// y[m, n] = scale[n] * sum_k x[m, k] * code[n, k] (+ bias[n]) for 1 <= m <=
// kGemvFp8MaxM: x stays bf16 (W8A16: the weights' bytes are the cost, halved
// against bf16), products in float32. k % 16 == 0, x and w 16-byte aligned.
inline constexpr int kGemvFp8MaxM = 8;
// Gemm::linear_fp8 sends M <= kGemvFp8DispatchMaxM here and larger M to cuBLASLt's FP8 GEMM. Measured on the
// H200 (bench/results/2026-12-05-h200-fp8.json, Llama-3-8B's four linear shapes): at M = 8 this kernel took 175 us
// for a layer's four where cuBLASLt took 110 us at M = 16 (it multiplies on CUDA cores and slows with rows); at
// M = 4, 99 us against ~110. (EMBER_FP8_GEMV_MAX_M overrides it, up to kGemvFp8MaxM.)
inline constexpr int kGemvFp8DispatchMaxM = 4;
Status gemv_fp8(const __nv_bfloat16* x, const uint8_t* w, const float* w_scale, const float* bias, void* y,
                bool y_f32, int m, int n, int k, cudaStream_t stream);
bool gemv_fp8_supports(const __nv_bfloat16* x, const uint8_t* w, int m, int k);

// y[m, n] = y_f32_in[m, n] * x_scale[m] * w_scale[n] (+ bias[n]) into bf16 or
// float32: the FP8 GEMM's epilogue when cuBLASLt has no per-row/per-column
// scaling for the shape.
Status scale_fp8_output(const float* acc, const float* x_scale, const float* w_scale, const float* bias, void* y,
                        bool y_f32, int m, int n, cudaStream_t stream);

}  // namespace ember::gpu
