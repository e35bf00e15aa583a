#pragma once
// The elementwise and row ops of the CUDA backend (the GEMM is gemm.h): the
// same math as the float32 CpuBackend (kernels/cpu/cpu_ops.h), which the GPU
// tests use as their reference. Activations are bf16, norm weights and rope
// frequencies float32, every reduction and product is done in float32.
//
// All functions take raw device pointers and a stream, enqueue work and return:
// no allocation, no synchronization and no host read of device data, so each
// can be captured into a CUDA graph. Index inputs (ids, positions, slots) are
// trusted, as everywhere in kernels/ (backend.h): the scheduler validated them.
//
// Alignment: cudaMalloc'd buffers and row offsets of a multiple of 8 elements
// take the 16-byte vector paths; any other row length or pointer still works
// through a scalar path (slower, same results). Sizes <= 0 enqueue nothing.

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ember::gpu {

using bf16 = __nv_bfloat16;

// out[t, :] = table[ids[t], :].   table [V, H], ids [T], out [T, H].
// table_rows >= 0: the table holds vocabulary rows [first_row, first_row +
// table_rows) only (a vocab-parallel rank's), and a token outside them gets a
// row of zeros.
Status embedding(const bf16* table, const int32_t* ids, int64_t num_tokens, int64_t hidden, bf16* out,
                 cudaStream_t stream, int64_t first_row = 0, int64_t table_rows = -1);

// Async scheduling: dst[pairs[2i]] = src[pairs[2i + 1]] for i < n (the step's
// token ids that the previous step sampled, read where the sampler left them).
Status scatter_tokens(int32_t* dst, const int32_t* pairs, int32_t n, const int32_t* src, cudaStream_t stream);

// RMSNorm over rows of H: out = x / sqrt(mean(x^2) + eps) * weight.
// With `residual` (vLLM's fused_add_rms_norm): residual = bf16(x + residual)
// is stored first and the norm is taken of that rounded sum, as HF's bf16
// model does. `out` may alias `x`. H up to 65536.
// With x_scale [M] and w_scale [H], x is an FP8 GEMM's raw product of codes
// (Gemm::linear_fp8_unscaled / linear_fp8_quantized_unscaled) and is scaled
// first, bit for bit as scale_fp8_output_inplace would have (fp8.h); then
// H % 8 == 0, H <= 32768 and 16-byte aligned rows.
Status rms_norm(const bf16* x, bf16* residual, const float* weight, float eps, int64_t rows, int64_t hidden, bf16* out,
                cudaStream_t stream, const float* x_scale = nullptr, const float* w_scale = nullptr);

// rms_norm's output quantized per row to FP8 E4M3 instead of stored (what
// rms_norm then quantize_rows_fp8 would give, bit for bit): codes [M, H],
// scales [M]; the residual as rms_norm. H % 8 == 0, H <= 32768
// (rms_norm_fp8_supports), rows 16-byte aligned. x_scale, w_scale as rms_norm's.
Status rms_norm_fp8(const bf16* x, bf16* residual, const float* weight, float eps, int64_t rows, int64_t hidden,
                    uint8_t* codes, float* scales, cudaStream_t stream, const float* x_scale = nullptr,
                    const float* w_scale = nullptr);
bool rms_norm_fp8_supports(int64_t rows, int64_t hidden);

// HF rotate_half RoPE on q and k in place (pairs (i, i + D/2), angle
// positions[t] * inv_freq[i] as one float32 product, then sincosf), and the
// rotated k and v of token t written to slot slot_mapping[t] of the caches
// (slot < 0: not written).   q [T, Hq*D], k and v [T, Hkv*D], inv_freq [D/2]
// (device; host computes it with ember::rope_inv_freq), caches
// [num_slots, Hkv, D] with num_slots = num_blocks * block_size.
// D even and <= 1024.
Status rope_and_cache_write(bf16* q, bf16* k, const bf16* v, const int32_t* positions, const int64_t* slot_mapping,
                            const float* inv_freq, int64_t num_tokens, int64_t num_q_heads, int64_t num_kv_heads,
                            int64_t head_dim, bf16* k_cache, bf16* v_cache, cudaStream_t stream);

// The same over rows read with strides, e.g. q, k and v as column ranges of
// one fused projection [T, (Hq + 2 Hkv) * D]: rotated q goes to q_out
// [T, Hq*D] (may equal q_in when the strides are the packed ones), rotated k
// to k_out [T, Hkv*D] when it is not null, and to the cache in any case.
struct QkvRows {
  const bf16* q_in = nullptr;
  bf16* q_out = nullptr;
  int64_t q_stride = 0;  // elements between tokens
  const bf16* k_in = nullptr;
  bf16* k_out = nullptr;
  int64_t k_stride = 0;
  const bf16* v_in = nullptr;
  int64_t v_stride = 0;
  // Set: q_in, k_in and v_in hold an FP8 GEMM's raw product of codes, scaled
  // here as they are read, as scale_fp8_output_inplace (fp8.h) would have
  // scaled them (its 8-wide form: the rows' width a multiple of 8), bit for
  // bit. x_scale [T] per token; *_w_scale per column of q_in / k_in / v_in.
  const float* x_scale = nullptr;
  const float* q_w_scale = nullptr;
  const float* k_w_scale = nullptr;
  const float* v_w_scale = nullptr;
};
Status rope_qkv_and_cache_write(const QkvRows& rows, const int32_t* positions, const int64_t* slot_mapping,
                                const float* inv_freq, int64_t num_tokens, int64_t num_q_heads, int64_t num_kv_heads,
                                int64_t head_dim, bf16* k_cache, bf16* v_cache, cudaStream_t stream);

// An FP8 KV cache (--kv-cache-dtype fp8, kernels/backend.h): E4M3 codes
// [num_slots, Hkv, D], one byte an element, and the layer's two scales, one
// device float each. The writes below store e4m3(x / *scale) of the float32
// rotated k (and of v): nearest even, saturating at +-448, bit for bit
// kernels/quant/fp8.h. q and k_out stay bf16, as with a bf16 cache.
struct Fp8KvCache {
  uint8_t* k = nullptr;
  uint8_t* v = nullptr;
  const float* k_scale = nullptr;
  const float* v_scale = nullptr;
};
Status rope_and_cache_write(bf16* q, bf16* k, const bf16* v, const int32_t* positions, const int64_t* slot_mapping,
                            const float* inv_freq, int64_t num_tokens, int64_t num_q_heads, int64_t num_kv_heads,
                            int64_t head_dim, const Fp8KvCache& cache, cudaStream_t stream);
Status rope_qkv_and_cache_write(const QkvRows& rows, const int32_t* positions, const int64_t* slot_mapping,
                                const float* inv_freq, int64_t num_tokens, int64_t num_q_heads, int64_t num_kv_heads,
                                int64_t head_dim, const Fp8KvCache& cache, cudaStream_t stream);

// --calculate-kv-scales: *scale = m / range, m the largest |x| over rows of x
// [rows, stride] in columns [col, col + width), or with rope_head_dim D > 0 the
// largest norm of a pair (x[i], x[i + D/2]) in each head of D there (a bound on
// every rotated element); m == 0 or not finite keeps *scale. One block: it
// runs once, on the first served step. Backend::set_kv_scale's contract.
Status kv_scale_from_max(const bf16* x, int64_t rows, int64_t stride, int64_t col, int64_t width,
                         int64_t rope_head_dim, float range, float* scale, cudaStream_t stream);

// SwiGLU: out = silu(gate) * up, gate = x[:, :I], up = x[:, I:].   x [M, 2I], out [M, I].
Status silu_mul(const bf16* x, int64_t rows, int64_t inter, bf16* out, cudaStream_t stream);

// silu_mul's output quantized per row to FP8 E4M3 (quantize_rows_fp8's rule,
// kernels/cuda/fp8.h, over the bf16 values silu_mul would store, bit for bit):
// codes [M, I], scales [M]. I % 8 == 0, I <= 32768 (silu_mul_fp8_supports).
// With x_scale [M] and w_scale [2I], x is the gate/up projection's raw product
// of FP8 codes (Gemm::linear_fp8_quantized with its scales left out) and is
// scaled first, bit for bit as scale_fp8_output_inplace would have (fp8.h).
Status silu_mul_fp8(const bf16* x, int64_t rows, int64_t inter, uint8_t* codes, float* scales, cudaStream_t stream,
                    const float* x_scale = nullptr, const float* w_scale = nullptr);
bool silu_mul_fp8_supports(int64_t rows, int64_t inter);

// out[r, :] = x[idx[r], :].   x [T, H], idx [R], out [R, H].
Status gather_rows(const bf16* x, const int32_t* idx, int64_t num_rows, int64_t hidden, bf16* out, cudaStream_t stream);

// Elementwise conversions of n values (round to nearest even into bf16).
Status f32_to_bf16(const float* src, int64_t n, bf16* dst, cudaStream_t stream);
Status bf16_to_f32(const bf16* src, int64_t n, float* dst, cudaStream_t stream);

}  // namespace ember::gpu
