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
// Multiplies on CUDA cores: its time grows with M (gemv_mma_fp8 does not).
// `variant` picks the launch shape for M <= 4 (fp8.cu: rows a warp, loads in
// flight, warps a block); every variant writes the same bits. 0 is the
// measured default; Gemm's dispatch takes EMBER_FP8_GEMV_VARIANT.
inline constexpr int kGemvFp8MaxM = 8;
inline constexpr int kGemvFp8Variants = 5;
Status gemv_fp8(const __nv_bfloat16* x, const uint8_t* w, const float* w_scale, const float* bias, void* y, bool y_f32,
                int m, int n, int k, cudaStream_t stream, int variant = 0);
bool gemv_fp8_supports(const __nv_bfloat16* x, const uint8_t* w, int m, int k);

// Small-M decode with the next op in the GEMV's epilogue (1 <= m <=
// kGemvFp8EpilogueMaxM, no bias): a warp owns a pair of rows and hands both
// outputs, as gemv_fp8 would store them in bf16, to the op, one launch and
// one pass over the output less. The same bits as gemv_fp8 then the op.
//   gemv_fp8_rope_and_cache_write: w is the fused q/k/v projection [(Hq +
//     2 Hkv) * D, K]; rotated q to q_out [m, Hq * D], rotated k and v to their
//     cache slots (rope_qkv_and_cache_write's work, kernels/cuda/ops.h).
//   gemv_fp8_silu_mul: w is gate/up [2I, K]; act [m, I] = silu(gate) * up.
inline constexpr int kGemvFp8EpilogueMaxM = 4;
struct GemvRopeWrite {
  __nv_bfloat16* q_out = nullptr;
  const int32_t* positions = nullptr;  // [m]
  const int64_t* slots = nullptr;      // [m]; < 0: not cached
  const float* inv_freq = nullptr;     // [D / 2]
  int hq = 0, hkv = 0, d = 0;
  void* k_cache = nullptr;  // [slots, Hkv, D]: bf16, or E4M3 codes when fp8_cache
  void* v_cache = nullptr;
  bool fp8_cache = false;
  const float* k_scale = nullptr;  // device floats (fp8_cache)
  const float* v_scale = nullptr;
};
//
// An RMSNorm between two of these GEMVs (the residual add and norm after o and
// after down, read by gate/up and by the next layer's q/k/v) can be split
// across them, one launch less: gemv_fp8_add_for_norm, the branch's last
// linear, adds its rows to the residual stream (h = bf16(bf16(y) + residual),
// the norm kernel's add, bit for bit), stores h * weight and the sums of h^2
// of each block of rows (`partials`); the GEMV epilogue op that reads it, given
// `norm`, scales its sums by each x row's 1 / rms (from the partials, in a
// fixed order) before the weights' scales. Not the norm kernel's bits: the row
// is normalized after the product instead of rounded to bf16 before it.
struct GemvNormAdd {
  __nv_bfloat16* residual = nullptr;  // [m, n], read and written
  const float* weight = nullptr;      // [n], the norm's
  __nv_bfloat16* out = nullptr;       // [m, n]: h * weight
  float* partials = nullptr;          // [m, gemv_fp8_norm_partials(n)]
};
struct GemvNormParts {
  const float* partials = nullptr;  // null: x is the normalized row itself
  int count = 0;                    // gemv_fp8_norm_partials(k)
  float eps = 0.0f;
};
int gemv_fp8_norm_partials(int n);
Status gemv_fp8_add_for_norm(const __nv_bfloat16* x, const uint8_t* w, const float* w_scale, int m, int n, int k,
                             const GemvNormAdd& out, cudaStream_t stream);
bool gemv_fp8_epilogue_supports(const __nv_bfloat16* x, const uint8_t* w, int m, int k);
Status gemv_fp8_rope_and_cache_write(const __nv_bfloat16* x, const uint8_t* w, const float* w_scale, int m, int k,
                                     const GemvRopeWrite& out, cudaStream_t stream, const GemvNormParts& norm = {});
Status gemv_fp8_silu_mul(const __nv_bfloat16* x, const uint8_t* w, const float* w_scale, int m, int inter, int k,
                         __nv_bfloat16* act, cudaStream_t stream, const GemvNormParts& norm = {});

// The same product on tensor cores (gemv_mma.cu) for 1 <= m <= kGemvMmaMaxM
// (kernels/cuda/gemm.h): an f16 mma, the codes converted exactly in
// registers, x's values as f16's (exact for |x| in [2^-14, 65504]; smaller
// round to f16's subnormals, larger saturate); a row's outputs do not depend
// on M. variant as gemv_mma_variant's. k % 16 == 0.
Status gemv_mma_fp8(const __nv_bfloat16* x, const uint8_t* w, const float* w_scale, const float* bias, void* y,
                    bool y_f32, int m, int n, int k, int variant, bool pdl, cudaStream_t stream);
bool gemv_mma_fp8_supports(const __nv_bfloat16* x, const uint8_t* w, int m, int k);

// Gemm::linear_fp8's dispatch by M, measured on the H100 (Llama-3-8B's four
// linear shapes: each kernel alone in bench/results/2026-12-06-h100-fp8-mma-f16.json,
// and decode end to end at 2-4 sequences):
//   M <= kGemvFp8DispatchMaxM: gemv_fp8. One row: 7.7 / 11.2 / 39.2 / 22.5 us
//     on o / qkv / gate_up / down, against 8.7-44.8 for gemv_mma_fp8; two
//     rows 82 us for the four against 90. Its epilogues come with it.
//   M <= kGemvMmaFp8DispatchMaxM: gemv_mma_fp8, variant
//     kGemvMmaFp8DispatchVariant. From 3 rows it passes gemv_fp8 (3 and 4
//     sequences decode 15% faster end to end); at 8 rows it takes 91 us for
//     the four where gemv_fp8 takes 173 and cuBLASLt 127; at 32 rows 13.3 /
//     23.4 / 86 / 38 on o / qkv / gate_up / down against cuBLASLt's 13.1 /
//     16.9 / 50.8 / 35.9 (every token tile re-reads x: its cost grows with
//     M). Until 2026-12-06 o and qkv took it up to 32 rows (cuBLASLt's 17.3 /
//     34.2 then); cuBLASLt from 17 rows on every matrix made 32 sequences
//     decode 6% faster (7,009-7,021 against 6,545-6,638 tok/s, H100).
//   above: cuBLASLt's FP8 GEMM over x quantized per token (W8A8).
// EMBER_FP8_GEMV_MAX_M and EMBER_FP8_MMA_MAX_M move them.
inline constexpr int kGemvFp8DispatchMaxM = 2;
inline constexpr int kGemvMmaFp8DispatchMaxM = 16;
inline constexpr int kGemvMmaFp8DispatchVariant = 3;

// y[m, n] = acc[m, n] * x_scale[m] * w_scale[n] (+ bias[n]) into bf16 or
// float32: the FP8 GEMM's epilogue when cuBLASLt has no per-row/per-column
// scaling for the shape (its float32 product in `acc`).
Status scale_fp8_output(const float* acc, const float* x_scale, const float* w_scale, const float* bias, void* y,
                        bool y_f32, int m, int n, cudaStream_t stream);
// The same in place over a bf16 product (cuBLASLt's bf16 output of the raw
// codes' sums): half the bytes of the float32 round trip, one more rounding.
Status scale_fp8_output_inplace(__nv_bfloat16* y, const float* x_scale, const float* w_scale, const float* bias,
                                int m, int n, cudaStream_t stream);

}  // namespace ember::gpu
