// RoPE (HF rotate_half) on q and k in place, fused with the paged KV-cache
// write of k and v: every k element is read once, rotated, stored twice (in
// place and in its slot). One block per token: its D/2 cos/sin pairs are
// computed once into shared memory and shared by all Hq + Hkv heads.
// Bytes per token: q 2*Hq*D*2, k 3*Hkv*D*2, v 2*Hkv*D*2 (Llama-3-8B: 28 KB).
// An FP8 cache (Cache = uint8_t) gets E4M3 codes of the float32 rotated k and
// of v, each divided by its device scale (fp8.cuh): 1 byte a cached element
// instead of 2. The bf16 instantiation is the kernel as it was tuned. With
// QkvRows' scales (FP8 weights) q/k/v are the GEMM's raw product and get its
// scales as they are read: the scale pass's values, without the pass.
//
// Precision: the angle is position * inv_freq as ONE float32 product (as HF and
// the CPU backend), then sincosf (not __sincosf: the fast intrinsic's error
// grows with |angle|, and positions reach 32k and beyond, where it is off by
// ~1e-3). sincosf is within 2 ulp of the float32 angle; the angle itself
// carries the float32 rounding of the product (up to ~2e-3 rad at 32k), the
// same on CPU and GPU. cos/sin stay float32 (HF rounds them to bf16 first).

#include <type_traits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fp8.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/ops_common.cuh"

namespace ember::gpu {
namespace {

constexpr int kThreads = 128;

// A raw FP8 product's values as scale_fp8_output_inplace stores them (its
// 8-wide form, apply_fp8_scales8's arithmetic: v * (x_scale * w_scale), then
// the bf16 rounding), for 8 or 1 values.
template <int N>
__device__ __forceinline__ void scale_raw(float (&v)[N], float x_scale, const float* w_scale) {
  if constexpr (N == 8) {
    apply_fp8_scales8(v, x_scale, w_scale);
  } else {
#pragma unroll
    for (int e = 0; e < N; ++e) v[e] = __bfloat162float(__float2bfloat16(v[e] * (x_scale * w_scale[e])));
  }
}

// kVec elements of i (and of i + D/2) a work item: 8 with 16-byte vectors (D %
// 16 == 0, aligned buffers), else 1. Cache: bf16, or uint8_t for E4M3 codes
// scaled by *k_scale / *v_scale (unused with bf16).
template <int kVec, class Cache>
__global__ void __launch_bounds__(kThreads)
    rope_cache_kernel(QkvRows rows, const int32_t* positions, const int64_t* slot_mapping, const float* inv_freq,
                      int hq, int hkv, int d, Cache* k_cache, Cache* v_cache, const float* k_scale,
                      const float* v_scale) {
  constexpr bool kFp8 = std::is_same_v<Cache, uint8_t>;
  extern __shared__ float cos_sin[];  // [0, half): cos, [half, d): sin
  [[maybe_unused]] float ks = 1.0f, vs = 1.0f;
  if constexpr (kFp8) {
    ks = *k_scale;
    vs = *v_scale;
  }
  const int64_t t = blockIdx.x;
  const int half = d / 2;
  const float sx = rows.x_scale != nullptr ? rows.x_scale[t] : 0.0f;
  const float pos = static_cast<float>(positions[t]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    float s, c;
    sincosf(pos * inv_freq[i], &s, &c);
    cos_sin[i] = c;
    cos_sin[half + i] = s;
  }
  __syncthreads();
  const int64_t slot = slot_mapping[t];
  const int items_per_head = half / kVec;
  const int items = (hq + hkv) * items_per_head;
  for (int it = threadIdx.x; it < items; it += blockDim.x) {
    const int head = it / items_per_head;
    const int i0 = (it - head * items_per_head) * kVec;
    const bool is_k = head >= hq;
    const bf16* base =
        is_k ? rows.k_in + t * rows.k_stride + (head - hq) * d : rows.q_in + t * rows.q_stride + head * d;
    bf16* dst = is_k ? (rows.k_out ? rows.k_out + (t * hkv + (head - hq)) * d : nullptr)
                     : rows.q_out + (t * hq + head) * d;
    float a[kVec], b[kVec];
    if constexpr (kVec == 8) {
      unpack8(*reinterpret_cast<const uint4*>(base + i0), a);
      unpack8(*reinterpret_cast<const uint4*>(base + half + i0), b);
    } else {
      a[0] = __bfloat162float(base[i0]);
      b[0] = __bfloat162float(base[half + i0]);
    }
    if (rows.x_scale != nullptr) {
      const float* ws = is_k ? rows.k_w_scale + (head - hq) * d : rows.q_w_scale + head * d;
      scale_raw(a, sx, ws + i0);
      scale_raw(b, sx, ws + half + i0);
    }
    float ra[kVec], rb[kVec];
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      rope_rotate(a[e], b[e], cos_sin[i0 + e], cos_sin[half + i0 + e], ra[e], rb[e]);
    }
    Cache* cache = is_k && slot >= 0 ? k_cache + (slot * hkv + (head - hq)) * d : nullptr;
    if constexpr (kVec == 8) {
      const uint4 pa = pack8(ra), pb = pack8(rb);
      if (dst) {
        *reinterpret_cast<uint4*>(dst + i0) = pa;
        *reinterpret_cast<uint4*>(dst + half + i0) = pb;
      }
      if (cache) {
        if constexpr (kFp8) {
          *reinterpret_cast<uint2*>(cache + i0) = e4m3x8_from_floats(ra, ks);
          *reinterpret_cast<uint2*>(cache + half + i0) = e4m3x8_from_floats(rb, ks);
        } else {
          *reinterpret_cast<uint4*>(cache + i0) = pa;
          *reinterpret_cast<uint4*>(cache + half + i0) = pb;
        }
      }
    } else {
      const bf16 pa = __float2bfloat16(ra[0]), pb = __float2bfloat16(rb[0]);
      if (dst) {
        dst[i0] = pa;
        dst[half + i0] = pb;
      }
      if (cache) {
        if constexpr (kFp8) {
          cache[i0] = e4m3_from_float(ra[0], ks);
          cache[half + i0] = e4m3_from_float(rb[0], ks);
        } else {
          cache[i0] = pa;
          cache[half + i0] = pb;
        }
      }
    }
  }
  if (slot < 0) return;  // padding token: rotated, not cached
  const int64_t row = static_cast<int64_t>(hkv) * d;
  const bf16* v = rows.v_in + t * rows.v_stride;
  const float* v_ws = rows.v_w_scale;
  const bool scaled = rows.x_scale != nullptr;
  if constexpr (kFp8) {
    if constexpr (kVec == 8) {
      const uint4* src = reinterpret_cast<const uint4*>(v);
      uint2* out = reinterpret_cast<uint2*>(v_cache + slot * row);
      for (int64_t j = threadIdx.x; j < row / 8; j += blockDim.x) {
        float f[8];
        unpack8(src[j], f);
        if (scaled) scale_raw(f, sx, v_ws + 8 * j);
        out[j] = e4m3x8_from_floats(f, vs);
      }
    } else {
      for (int64_t j = threadIdx.x; j < row; j += blockDim.x) {
        float f[1] = {__bfloat162float(v[j])};
        if (scaled) scale_raw(f, sx, v_ws + j);
        v_cache[slot * row + j] = e4m3_from_float(f[0], vs);
      }
    }
  } else if constexpr (kVec == 8) {
    const uint4* src = reinterpret_cast<const uint4*>(v);
    uint4* out = reinterpret_cast<uint4*>(v_cache + slot * row);
    for (int64_t j = threadIdx.x; j < row / 8; j += blockDim.x) {
      if (!scaled) {
        out[j] = src[j];
        continue;
      }
      float f[8];
      unpack8(src[j], f);
      scale_raw(f, sx, v_ws + 8 * j);
      out[j] = pack8(f);
    }
  } else {
    for (int64_t j = threadIdx.x; j < row; j += blockDim.x) {
      if (!scaled) {
        v_cache[slot * row + j] = v[j];
        continue;
      }
      float f[1] = {__bfloat162float(v[j])};
      scale_raw(f, sx, v_ws + j);
      v_cache[slot * row + j] = __float2bfloat16(f[0]);
    }
  }
}

template <class Cache>
Status launch_rope(const QkvRows& rows, const int32_t* positions, const int64_t* slot_mapping, const float* inv_freq,
                   int64_t num_tokens, int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim, Cache* k_cache,
                   Cache* v_cache, const float* k_scale, const float* v_scale, cudaStream_t stream) {
  if (num_tokens <= 0) return Status::success();
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > 1024)
    return Error{"rope_and_cache_write: head_dim must be even and <= 1024, got " + std::to_string(head_dim)};
  if (num_q_heads < 0 || num_kv_heads < 0 || num_q_heads + num_kv_heads > 4096 || num_tokens > 0x7fffffff)
    return Error{"rope_and_cache_write: unsupported shape (T " + std::to_string(num_tokens) + ", heads " +
                 std::to_string(num_q_heads) + "/" + std::to_string(num_kv_heads) + ")"};
  const bool strides16 = rows.q_stride % 8 == 0 && rows.k_stride % 8 == 0 && rows.v_stride % 8 == 0;
  const bool vec = head_dim % 16 == 0 && strides16 && aligned16(rows.q_in) && aligned16(rows.q_out) &&
                   aligned16(rows.k_in) && aligned16(rows.k_out) && aligned16(rows.v_in) && aligned16(k_cache) &&
                   aligned16(v_cache);
  const unsigned grid = static_cast<unsigned>(num_tokens);
  const size_t smem = static_cast<size_t>(head_dim) * sizeof(float);
  const int hq = static_cast<int>(num_q_heads), hkv = static_cast<int>(num_kv_heads), d = static_cast<int>(head_dim);
  if (vec) {
    rope_cache_kernel<8, Cache><<<grid, kThreads, smem, stream>>>(rows, positions, slot_mapping, inv_freq, hq, hkv, d,
                                                                  k_cache, v_cache, k_scale, v_scale);
  } else {
    rope_cache_kernel<1, Cache><<<grid, kThreads, smem, stream>>>(rows, positions, slot_mapping, inv_freq, hq, hkv, d,
                                                                  k_cache, v_cache, k_scale, v_scale);
  }
  return cuda_status(cudaGetLastError(), "rope_and_cache_write launch");
}

// q, k and v each packed [T, heads * D], rotated in place.
QkvRows packed_rows(bf16* q, bf16* k, const bf16* v, int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim) {
  QkvRows rows;
  rows.q_in = q;
  rows.q_out = q;
  rows.q_stride = num_q_heads * head_dim;
  rows.k_in = k;
  rows.k_out = k;
  rows.k_stride = num_kv_heads * head_dim;
  rows.v_in = v;
  rows.v_stride = num_kv_heads * head_dim;
  return rows;
}

}  // namespace

Status rope_qkv_and_cache_write(const QkvRows& rows, const int32_t* positions, const int64_t* slot_mapping,
                                const float* inv_freq, int64_t num_tokens, int64_t num_q_heads, int64_t num_kv_heads,
                                int64_t head_dim, bf16* k_cache, bf16* v_cache, cudaStream_t stream) {
  return launch_rope<bf16>(rows, positions, slot_mapping, inv_freq, num_tokens, num_q_heads, num_kv_heads, head_dim,
                           k_cache, v_cache, nullptr, nullptr, stream);
}

Status rope_qkv_and_cache_write(const QkvRows& rows, const int32_t* positions, const int64_t* slot_mapping,
                                const float* inv_freq, int64_t num_tokens, int64_t num_q_heads, int64_t num_kv_heads,
                                int64_t head_dim, const Fp8KvCache& cache, cudaStream_t stream) {
  if (cache.k_scale == nullptr || cache.v_scale == nullptr)
    return Error{"rope_and_cache_write: an FP8 KV cache without its k_scale / v_scale"};
  return launch_rope<uint8_t>(rows, positions, slot_mapping, inv_freq, num_tokens, num_q_heads, num_kv_heads,
                              head_dim, cache.k, cache.v, cache.k_scale, cache.v_scale, stream);
}

Status rope_and_cache_write(bf16* q, bf16* k, const bf16* v, const int32_t* positions, const int64_t* slot_mapping,
                            const float* inv_freq, int64_t num_tokens, int64_t num_q_heads, int64_t num_kv_heads,
                            int64_t head_dim, bf16* k_cache, bf16* v_cache, cudaStream_t stream) {
  return rope_qkv_and_cache_write(packed_rows(q, k, v, num_q_heads, num_kv_heads, head_dim), positions, slot_mapping,
                                  inv_freq, num_tokens, num_q_heads, num_kv_heads, head_dim, k_cache, v_cache, stream);
}

Status rope_and_cache_write(bf16* q, bf16* k, const bf16* v, const int32_t* positions, const int64_t* slot_mapping,
                            const float* inv_freq, int64_t num_tokens, int64_t num_q_heads, int64_t num_kv_heads,
                            int64_t head_dim, const Fp8KvCache& cache, cudaStream_t stream) {
  return rope_qkv_and_cache_write(packed_rows(q, k, v, num_q_heads, num_kv_heads, head_dim), positions, slot_mapping,
                                  inv_freq, num_tokens, num_q_heads, num_kv_heads, head_dim, cache, stream);
}

namespace {

// The largest square (of an element, or of a rotation pair's norm) over the
// columns, its root taken once at the end, as the CPU backend's set_kv_scale.
__global__ void kv_scale_kernel(const bf16* __restrict__ x, int64_t rows, int64_t stride, int64_t col, int64_t width,
                                int64_t half, float range, float* scale) {
  const int64_t per_row = half > 0 ? width / 2 : width;  // work items a row: pairs or elements
  float m2 = 0.0f;
  for (int64_t i = threadIdx.x; i < rows * per_row; i += blockDim.x) {
    const int64_t t = i / per_row, j = i % per_row;
    const bf16* row = x + t * stride + col;
    if (half == 0) {
      const float a = __bfloat162float(row[j]);
      m2 = fmaxf(m2, a * a);
    } else {
      const int64_t at = (j / half) * 2 * half + j % half;  // head j / half, pair j % half
      const float a = __bfloat162float(row[at]), b = __bfloat162float(row[at + half]);
      m2 = fmaxf(m2, __fadd_rn(__fmul_rn(a, a), __fmul_rn(b, b)));  // unfused, as the CPU's float arithmetic
    }
  }
  __shared__ float part[32];
  for (int o = 16; o > 0; o /= 2) m2 = fmaxf(m2, __shfl_xor_sync(0xffffffffu, m2, o));
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = m2;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (unsigned w = 1; w < blockDim.x / 32; ++w) m2 = fmaxf(m2, part[w]);
    const float m = sqrtf(m2);
    if (m > 0.0f && isfinite(m)) *scale = __fdiv_rn(m, range);
  }
}

}  // namespace

Status kv_scale_from_max(const bf16* x, int64_t rows, int64_t stride, int64_t col, int64_t width,
                         int64_t rope_head_dim, float range, float* scale, cudaStream_t stream) {
  if (rope_head_dim % 2 != 0 || (rope_head_dim > 0 && width % rope_head_dim != 0) || col + width > stride ||
      !(range > 0.0f))
    return Error{"kv_scale_from_max: columns or head size out of shape"};
  if (rows == 0 || width == 0) return Status::success();
  kv_scale_kernel<<<1, 1024, 0, stream>>>(x, rows, stride, col, width, rope_head_dim / 2, range, scale);
  return cuda_status(cudaGetLastError(), "kv_scale_from_max launch");
}

}  // namespace ember::gpu
