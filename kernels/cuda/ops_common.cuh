#pragma once
// Device helpers shared by the op kernels (ops*.cu, gemv.cu): 16-byte vectors
// of 8 bf16 unpacked to float32 and back, and block/warp sums. Internal to
// kernels/cuda: include only from .cu files.

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/pdl.cuh"

namespace ember::gpu {

using bf16 = __nv_bfloat16;

// 8 bf16 = 16 bytes: the widest single load a thread can issue.
union Bf16x8 {
  uint4 u;
  __nv_bfloat162 h[4];
};

// (A bf16 is a float's top half: one shift or one mask a value, where
// __bfloat1622float2 costs the high half a byte permute and a shift.)
__device__ __forceinline__ void unpack8(const uint4& v, float (&f)[8]) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(words[i] << 16);
    f[2 * i + 1] = __uint_as_float(words[i] & 0xFFFF0000u);
  }
}

__device__ __forceinline__ uint4 pack8(const float (&f)[8]) {
  Bf16x8 b;
#pragma unroll
  for (int i = 0; i < 4; ++i) b.h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  return b.u;
}

// The bf16 value scale_fp8_output_inplace (fp8.cu) stores for a raw product
// of FP8 codes: its float arithmetic in its order, then the bf16 rounding.
__device__ __forceinline__ void apply_fp8_scales8(float (&v)[8], float x_scale, const float* w_scale) {
#pragma unroll
  for (int e = 0; e < 8; ++e) v[e] *= x_scale * w_scale[e];
  unpack8(pack8(v), v);
}

// RoPE's rotation of the pair (a, b) by the angle whose cos and sin are c, s,
// with its roundings spelled out, so every kernel that rotates (ops_rope.cu,
// fp8.cu's fused epilogue) gets the same bits: a*c - b*s and b*c + a*s.
__device__ __forceinline__ void rope_rotate(float a, float b, float c, float s, float& ra, float& rb) {
  ra = __fmaf_rn(a, c, -__fmul_rn(b, s));
  rb = __fmaf_rn(b, c, __fmul_rn(a, s));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// A GEMV warp's M x R sums (acc[m][r]: its partial for x row m and weight row
// r) reduced over the warp: lane m * R + r gets the total of (m, r), the others
// 0 (compile-time indices only, so acc stays in registers).
template <int M, int R>
__device__ __forceinline__ float warp_row_totals(const float (&acc)[M][R], int lane) {
  float mine = 0.0f;
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float total = warp_sum(acc[m][r]);
      if (lane == m * R + r) mine = total;
    }
  return mine;
}

// Sum over the block, returned to every thread. Every thread of the block must
// call it (it has barriers); blockDim.x a multiple of 32. Call at most once per
// kernel (the scratch is reused without a trailing barrier).
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int num_warps = blockDim.x >> 5;
  float total = lane < num_warps ? partial[lane] : 0.0f;
  return warp_sum(total);
}

// The block's largest v (every thread gets it); v >= 0 (amax).
__device__ __forceinline__ float block_max(float v) {
  __shared__ float partial_max[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (lane == 0) partial_max[warp] = v;
  __syncthreads();
  const int num_warps = blockDim.x >> 5;
  float m = lane < num_warps ? partial_max[lane] : 0.0f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  return m;
}

// 16 bytes of weights streamed past L1 (read once: they must not evict the
// activations the small-M kernels re-read from L1).
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace ember::gpu
