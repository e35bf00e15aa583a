#pragma once
// Pieces shared by the two flash-decoding kernels (attention_decode.cu and
// attention_decode_v2.cu): the split planner, the argument checks, and the
// kernel that merges split partials. Both kernels write the SAME workspace
// layout, so paged_attention_workspace_bytes and the merge serve both:
//   part_o  [(b * Hq + h) * splits + s][D]  float, unnormalized output of split s
//   part_ml [2 * ((b * Hq + h) * splits + s)] = (max logit in log2 units, sum of 2^(logit - max))
// Internal to kernels/cuda: include only from .cu files (anonymous namespace:
// each includer gets its own copy of the kernels, no cross-TU device linking).

#include <algorithm>
#include <string>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/pdl.cuh"

namespace ember {
namespace {

constexpr int kMaxChunk = 1024;  // v1 keeps a split's logits in shared memory: kHeadTile * kMaxChunk floats
constexpr int kMinChunk = 64;
constexpr int kMaxSplits = 256;
constexpr float kLog2e = 1.4426950408889634f;

// The o projection follows: let it start streaming weights (pdl.cuh).
__device__ __forceinline__ void launch_dependents() { gpu::pdl_launch_dependents(); }

// What one block of either decode kernel works on: keys [start, start + n) of
// sequence b (query token t), query heads [h0, h0 + n_heads) of KV head kvh.
struct SplitWork {
  int b, t, start, n, kvh, h0, n_heads;
};

// The block's share from its grid position (split, kvh * head_groups + group
// tile, sequence); false when it has nothing to do (a split past the end, or
// a prefill sequence of a mixed batch).
__device__ __forceinline__ bool split_work(const PagedAttentionArgs& a, int chunk, int head_groups, int head_tile,
                                           SplitWork& w) {
  w.b = blockIdx.z;
  if (a.split_decodes && a.query_start_loc[w.b + 1] - a.query_start_loc[w.b] != 1) return false;  // the prefill's
  const int seq_len = a.seq_lens[w.b];
  w.start = blockIdx.x * chunk;
  if (w.start >= seq_len) return false;
  w.n = min(chunk, seq_len - w.start);
  const int group = a.num_heads / a.num_kv_heads;
  w.kvh = blockIdx.y / head_groups;
  const int g0 = (blockIdx.y % head_groups) * head_tile;
  w.n_heads = min(head_tile, group - g0);
  w.h0 = w.kvh * group + g0;
  w.t = a.query_start_loc[w.b];
  return true;
}

struct DecodePlan {
  int head_tile = 8;    // query heads per block (template parameter)
  int head_groups = 1;  // blocks per KV head along the head dim
  int chunk = kMaxChunk;
  int splits = 1;
};

inline DecodePlan plan_decode(int num_seqs, int num_heads, int num_kv_heads, int max_seq_len, int num_sms,
                              int chunk_override = 0) {
  DecodePlan p;
  const int group = num_heads / num_kv_heads;
  p.head_tile = group >= 5 ? 8 : group >= 3 ? 4 : group;  // 1, 2, 4 or 8 (padded heads are masked)
  p.head_groups = (group + p.head_tile - 1) / p.head_tile;
  const int64_t units = static_cast<int64_t>(num_seqs) * num_kv_heads * p.head_groups;
  auto splits_for = [&](int chunk) { return (max_seq_len + chunk - 1) / chunk; };
  while (p.chunk > kMinChunk && units * splits_for(p.chunk) < 4LL * num_sms) p.chunk /= 2;
  if (chunk_override > 0) p.chunk = chunk_override;
  while (splits_for(p.chunk) > kMaxSplits) p.chunk *= 2;  // very long contexts: bigger splits
  p.splits = splits_for(p.chunk);
  return p;
}

// The checks both decode entry points make (`who` names the caller in the
// message), and the plan they launch with.
inline Status check_decode_args(const PagedAttentionArgs& a, const char* who, DecodePlan& plan) {
  const std::string w = who;
  if (Status s = check_paged_attention_args(a, who); !s.ok()) return s;
  if (!a.split_decodes && (a.num_tokens != a.num_seqs || a.max_query_len != 1))
    return Error{w + ": needs one query token per sequence (use paged_attention_prefill)"};
  if (a.head_dim != 64 && a.head_dim != 128)
    return Error{w + ": head_dim must be 64 or 128, got " + std::to_string(a.head_dim)};
  if (a.num_seqs > 65535) return Error{w + ": more than 65535 sequences"};
  if (a.decode_chunk != 0 &&
      (a.decode_chunk < kMinChunk || a.decode_chunk > kMaxChunk || (a.decode_chunk & (a.decode_chunk - 1)) != 0))
    return Error{w + ": decode_chunk must be a power of two in [64, 1024]"};
  plan = plan_decode(a.num_seqs, a.num_heads, a.num_kv_heads, a.max_seq_len, cuda_sm_count(), a.decode_chunk);
  if (plan.chunk > kMaxChunk)
    return Error{w + ": max_seq_len " + std::to_string(a.max_seq_len) + " exceeds " +
                 std::to_string(kMaxChunk * kMaxSplits)};
  const size_t need = paged_attention_workspace_bytes(a.num_seqs, a.num_heads, a.num_kv_heads, a.head_dim,
                                                      a.max_seq_len, cuda_sm_count(), a.decode_chunk);
  if (a.workspace_bytes < need || (need > 0 && a.workspace == nullptr))
    return Error{w + ": workspace of " + std::to_string(a.workspace_bytes) + " bytes, needs " + std::to_string(need)};
  return Status::success();
}

constexpr int kMergeScratch = 8;  // >= warps of a merge block (D / 32)

// Block-wide reduction for blockDim.x == D (64 or 128 threads).
template <bool kMax>
__device__ float block_reduce(float v, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, other) : v + other;
  }
  const int warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  __syncthreads();  // scratch may still be read from a previous call
  if ((threadIdx.x & 31) == 0) scratch[warp] = v;
  __syncthreads();
  v = scratch[0];
  for (int w = 1; w < nwarps; ++w) v = kMax ? fmaxf(v, scratch[w]) : v + scratch[w];
  return v;
}

// Merges the splits of one (sequence, head): weights 2^(m_s - M), so
//   out = sum_s w_s o_s / sum_s w_s l_s.
template <int D>
__global__ void __launch_bounds__(D)
    decode_merge_kernel(PagedAttentionArgs a, int chunk, int splits, const float* part_o, const float* part_ml) {
  __shared__ float w[kMaxSplits];
  __shared__ float scratch[kMergeScratch];
  launch_dependents();
  const int h = blockIdx.x, b = blockIdx.y, d = threadIdx.x;
  if (a.split_decodes && a.query_start_loc[b + 1] - a.query_start_loc[b] != 1) return;
  const int n = min(splits, (a.seq_lens[b] + chunk - 1) / chunk);
  if (n <= 1) return;  // written directly by the split kernel
  const int64_t ps0 = (static_cast<int64_t>(b) * a.num_heads + h) * splits;
  float mx = -INFINITY;
  for (int s = d; s < n; s += D) mx = fmaxf(mx, part_ml[2 * (ps0 + s)]);
  mx = block_reduce<true>(mx, scratch);
  float den = 0.0f;
  for (int s = d; s < n; s += D) {
    w[s] = exp2f(part_ml[2 * (ps0 + s)] - mx);
    den += w[s] * part_ml[2 * (ps0 + s) + 1];
  }
  den = block_reduce<false>(den, scratch);  // its barriers also publish w[]
  float o = 0.0f;
  for (int s = 0; s < n; ++s) o = fmaf(w[s], part_o[(ps0 + s) * D + d], o);
  const int t = a.query_start_loc[b];
  a.out[t * static_cast<int64_t>(a.num_heads) * D + static_cast<int64_t>(h) * D + d] = __float2bfloat16(o / den);
}

// The merge launch (only when the context is split).
template <int D>
Status launch_decode_merge(const PagedAttentionArgs& a, const DecodePlan& p, const float* part_o, const float* part_ml,
                           cudaStream_t stream) {
  decode_merge_kernel<D><<<dim3(a.num_heads, a.num_seqs), D, 0, stream>>>(a, p.chunk, p.splits, part_o, part_ml);
  return cuda_status(cudaGetLastError(), "decode_merge_kernel");
}

}  // namespace
}  // namespace ember
