// The obviously-correct paged attention: one warp per (query token, head).
// Lane l holds dims l, l + 32, ... of q and of the output; for every visible
// key the warp reduces one dot product, then updates an online softmax
// (running max m, running sum l, output rescaled by exp(m_old - m_new)), all
// in fp32 with accurate expf; an FP8 cache's elements are read as
// code * scale in fp32. Latency bound (one dependent K row per step):
// the test oracle for the shipped kernels (test_attention_gpu.cpp), not for
// speed.

#include "tests/gpu/attention_reference.h"

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cmath>

#include "kernels/cuda/cuda_check.h"

namespace ember {
namespace {

constexpr int kMaxPerLane = 8;  // head_dim <= 256

__device__ inline float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Element i of a K or V cache, as float.
__device__ inline float cache_at(const PagedAttentionArgs& a, const void* cache, const float* scale, int64_t i) {
  if (!a.kv_fp8) return __bfloat162float(static_cast<const __nv_bfloat16*>(cache)[i]);
  const __half h(__nv_cvt_fp8_to_halfraw(static_cast<const uint8_t*>(cache)[i], __NV_E4M3));
  return __half2float(h) * *scale;
}

// The sequence that owns token t: the last b with query_start_loc[b] <= t.
__device__ inline int seq_of_token(const int32_t* qsl, int num_seqs, int t) {
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (qsl[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

__global__ void reference_kernel(PagedAttentionArgs a) {
  const int t = blockIdx.x, h = blockIdx.y, lane = threadIdx.x;
  const int d = a.head_dim;
  const int b = seq_of_token(a.query_start_loc, a.num_seqs, t);
  const int q_len = a.query_start_loc[b + 1] - a.query_start_loc[b];
  const int visible = a.seq_lens[b] - q_len + (t - a.query_start_loc[b]) + 1;
  const int kvh = h / (a.num_heads / a.num_kv_heads);
  const int32_t* table = a.block_tables + static_cast<int64_t>(b) * a.max_blocks_per_seq;
  const int64_t row = static_cast<int64_t>(a.num_heads) * d;

  float q[kMaxPerLane], acc[kMaxPerLane];
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int e = lane + 32 * i;
    q[i] = e < d ? __bfloat162float(a.q[t * row + static_cast<int64_t>(h) * d + e]) : 0.0f;
    acc[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int j = 0; j < visible; ++j) {
    const int64_t slot = static_cast<int64_t>(table[j / a.block_size]) * a.block_size + j % a.block_size;
    const int64_t base = (slot * a.num_kv_heads + kvh) * d;
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int e = lane + 32 * i;
      if (e < d) s += q[i] * cache_at(a, a.k_cache, a.k_scale, base + e);
    }
    s = warp_sum(s) * a.scale;
    const float m_new = fmaxf(m, s);
    const float alpha = expf(m - m_new);  // 0 on the first key (m = -inf)
    const float p = expf(s - m_new);
    l = l * alpha + p;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int e = lane + 32 * i;
      if (e < d) acc[i] = acc[i] * alpha + p * cache_at(a, a.v_cache, a.v_scale, base + e);
    }
    m = m_new;
  }
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int e = lane + 32 * i;
    if (e < d) a.out[t * row + static_cast<int64_t>(h) * d + e] = __float2bfloat16(acc[i] / l);
  }
}

}  // namespace

Status paged_attention_reference(const PagedAttentionArgs& a, cudaStream_t stream) {
  if (Status s = check_paged_attention_args(a, "paged_attention_reference"); !s.ok()) return s;
  if (a.head_dim % 32 != 0 || a.head_dim > 32 * kMaxPerLane)
    return Error{"paged_attention_reference: head_dim must be a multiple of 32 up to 256"};
  if (a.num_heads > 65535) return Error{"paged_attention_reference: too many heads"};
  reference_kernel<<<dim3(a.num_tokens, a.num_heads), 32, 0, stream>>>(a);
  EMBER_CUDA_TRY(cudaGetLastError());
  return Status::success();
}

}  // namespace ember
