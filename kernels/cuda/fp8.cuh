#pragma once
// E4M3 codes in device code, for the FP8 KV cache's writer (ops_rope.cu) and
// readers (attention_decode.cu, attention_prefill.cu) and the row quantizer
// of weights and activations (fp8.cu). The conversions are the
// hardware's on sm_89+ (cuda_fp8.h emulates them below), bit for bit
// kernels/quant/fp8.h's. Internal to kernels/cuda: include only from .cu files.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/cuda/ops_common.cuh"

namespace ember::gpu {

// e4m3(x / scale): the division rounded to nearest (not a product with 1 /
// scale, which would round twice), then to the nearest code, ties to even,
// saturating at +-448.
__device__ __forceinline__ uint8_t e4m3_from_float(float x, float scale) {
  return __nv_cvt_float_to_fp8(__fdiv_rn(x, scale), __NV_SATFINITE, __NV_E4M3);
}

// The same for 8 values, packed little-endian (byte i: x[i]).
__device__ __forceinline__ uint2 e4m3x8_from_floats(const float (&x)[8], float scale) {
  uint32_t w[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float2 lo = make_float2(__fdiv_rn(x[4 * h], scale), __fdiv_rn(x[4 * h + 1], scale));
    const float2 hi = make_float2(__fdiv_rn(x[4 * h + 2], scale), __fdiv_rn(x[4 * h + 3], scale));
    w[h] = static_cast<uint32_t>(__nv_cvt_float2_to_fp8x2(lo, __NV_SATFINITE, __NV_E4M3)) |
           static_cast<uint32_t>(__nv_cvt_float2_to_fp8x2(hi, __NV_SATFINITE, __NV_E4M3)) << 16;
  }
  return make_uint2(w[0], w[1]);
}

// 8 codes (byte i: element i) to 8 bf16 in one 16-byte vector, exactly: an
// E4M3 value has 3 mantissa bits and lies in [2^-9, 448], so it is a bf16
// value too (through fp16, which holds it exactly as well).
__device__ __forceinline__ uint4 bf16x8_from_e4m3x8(const uint2& codes) {
  const uint32_t words[2] = {codes.x, codes.y};
  Bf16x8 out;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const auto pair = static_cast<__nv_fp8x2_storage_t>((words[i >> 1] >> (16 * (i & 1))) & 0xFFFFu);
    const __half2 h(__nv_cvt_fp8x2_to_halfraw2(pair, __NV_E4M3));
    out.h[i] = __float22bfloat162_rn(__half22float2(h));
  }
  return out.u;
}

// A bf16 cache's 16-byte chunk as it is; an FP8 cache's 8 codes widened: the
// attention kernels read either through one code path.
__device__ __forceinline__ uint4 bf16x8_of(const uint4& v) { return v; }
__device__ __forceinline__ uint4 bf16x8_of(const uint2& codes) { return bf16x8_from_e4m3x8(codes); }

// A row's scale from its largest |value|: amax / 448 (E4M3's largest), 1 for
// a row of zeros (kernels/quant/fp8.h's rule).
__device__ __forceinline__ float fp8_row_scale(float amax) { return amax > 0.0f ? __fdiv_rn(amax, 448.0f) : 1.0f; }

// A row held in registers quantized per row as quantize_rows_fp8 does (the
// whole block calls it): *scale = amax / 448 (1 for a row of zeros), codes
// e4m3(v / scale). Thread t holds vectors j = t + i * blockDim.x (i < kVecs)
// of 8 values each, those with j < nvec; the values are the row's bf16 ones.
template <int kVecs>
__device__ __forceinline__ void quantize_row_from_registers(const float (&v)[kVecs][8], int nvec, uint8_t* codes,
                                                            float* scale) {
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < kVecs; ++i)
    if (threadIdx.x + i * blockDim.x < nvec)
#pragma unroll
      for (int e = 0; e < 8; ++e) amax = fmaxf(amax, fabsf(v[i][e]));
  const float s = fp8_row_scale(block_max(amax));
  if (threadIdx.x == 0) *scale = s;
  uint2* q = reinterpret_cast<uint2*>(codes);
#pragma unroll
  for (int i = 0; i < kVecs; ++i) {
    const int j = threadIdx.x + i * blockDim.x;
    if (j < nvec) q[j] = e4m3x8_from_floats(v[i], s);
  }
}

}  // namespace ember::gpu
