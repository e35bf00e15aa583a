// Flash-decoding: one query token per sequence (q_len == 1).
//   out[b, h] = softmax(q[b, h] . K[b, kvh]^T * scale) V[b, kvh]   over seq_lens[b] keys.
// Purely bandwidth bound: every K/V byte is read once, ~1 FMA per byte, so the
// roofline is (K + V bytes) / copy bandwidth: batch 32 x 4k context x 8 KV heads
// x D 128 is 537 MB, ~180 us at 3.0 TB/s.
//
// Shape of the work: a thread block owns (context split, KV head, sequence)
// and ALL the query heads that share that KV head (up to kHeadTile of them),
// so each K/V row is loaded once for the whole GQA group. D/8 consecutive
// lanes hold one 16-byte slice each of a K row (D 128: 16 lanes = 256 B, a
// fully coalesced row); 256 threads cover 16 (D 128) or 32 (D 64) rows per
// step, kUnroll steps of loads are issued before any math. Within a split:
//   1. logits of every (head, key) into shared memory (no online softmax:
//      the split is at most kMaxChunk keys, so they fit),
//   2. one warp per head: max and exp2, sum,
//   3. P.V with the same row layout, fp32 accumulators per (head, 8 dims),
//      reduced across rows through shared memory.
// Splits write (unnormalized output, max, sum) to the workspace and a second
// kernel merges them; a sequence that fits one split writes `out` directly.
// The split size is chosen from (sequences x KV heads, max_seq_len, SMs) so
// the grid is >= 4 blocks per SM; it depends only on host values, so the
// launch is graph-capturable and blocks past a sequence's end exit at once.

#include "kernels/cuda/attention_decode_common.cuh"

namespace ember {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 4;

__device__ inline void unpack8(const uint4& v, float (&f)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 x = __bfloat1622float2(h[i]);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}

template <int D, int G>
__global__ void __launch_bounds__(kThreads)
    decode_split_kernel(PagedAttentionArgs a, int chunk, int head_groups, int splits, int block_shift,
                        float scale_log2, float* part_o, float* part_ml) {
  constexpr int kRow = D / 8;  // lanes per K/V row, 16 bytes each
  constexpr int kRowsPerWarp = 32 / kRow;
  constexpr int kRows = kThreads / kRow;  // rows per load step
  extern __shared__ float smem[];         // logits [G][chunk]; later the reduction [kWarps][G][D]
  __shared__ float s_max[G], s_sum[G];

  launch_dependents();
  SplitWork w;
  if (!split_work(a, chunk, head_groups, G, w)) return;
  const int split = blockIdx.x, b = w.b, start = w.start, n = w.n, kvh = w.kvh, n_heads = w.n_heads, h0 = w.h0;
  const bool single = a.seq_lens[b] <= chunk;  // this block sees the whole context
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int r = tid % kRow, row = tid / kRow, warp_row0 = warp * kRowsPerWarp;
  const int t = w.t;
  const int64_t hd = static_cast<int64_t>(a.num_heads) * D;
  const int32_t* table = a.block_tables + static_cast<int64_t>(b) * a.max_blocks_per_seq;
  const int64_t token_stride = static_cast<int64_t>(a.num_kv_heads) * D;
  const int offset_mask = a.block_size - 1;

  // Element offset of this lane's 16 bytes of context token start + j.
  auto kv_offset = [&](int j) {
    const int pos = start + j;
    const int64_t slot = static_cast<int64_t>(table[pos >> block_shift]) * a.block_size + (pos & offset_mask);
    return slot * token_stride + kvh * D + r * 8;
  };

  float q[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (g < n_heads) {
      unpack8(*reinterpret_cast<const uint4*>(a.q + t * hd + static_cast<int64_t>(h0 + g) * D + r * 8), q[g]);
#pragma unroll
      for (int e = 0; e < 8; ++e) q[g][e] *= scale_log2;
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) q[g][e] = 0.0f;
    }
  }

  // 1. logits (log2 units). The loop bound is warp-uniform because the row
  // reduction below shuffles across the whole warp.
  for (int base = 0; base + warp_row0 < n; base += kRows * kUnroll) {
    uint4 kv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = base + row + u * kRows;
      kv[u] = j < n ? __ldg(reinterpret_cast<const uint4*>(a.k_cache + kv_offset(j))) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = base + row + u * kRows;
      float k[8];
      unpack8(kv[u], k);
      float s[G];
#pragma unroll
      for (int g = 0; g < G; ++g) {
        s[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) s[g] = fmaf(q[g][e], k[e], s[g]);
#pragma unroll
        for (int o = kRow / 2; o > 0; o >>= 1) s[g] += __shfl_xor_sync(0xffffffffu, s[g], o);
      }
      if (j < n) {
#pragma unroll
        for (int g = 0; g < G; ++g)
          if (r == g) smem[g * chunk + j] = s[g];  // spread the stores over the row's lanes
      }
    }
  }
  __syncthreads();

  // 2. softmax numerators in place, one warp per head.
  if (warp < n_heads) {
    float* lg = smem + warp * chunk;
    float mx = -INFINITY;
    for (int j = lane; j < n; j += 32) mx = fmaxf(mx, lg[j]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.0f;
    for (int j = lane; j < n; j += 32) {
      const float p = exp2f(lg[j] - mx);
      lg[j] = p;
      sum += p;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) {
      s_max[warp] = mx;
      s_sum[warp] = sum;
    }
  }
  __syncthreads();

  // 3. P.V: this thread accumulates dims [r*8, r*8+8) of every head over its rows.
  float acc[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[g][e] = 0.0f;
  for (int base = 0; base + warp_row0 < n; base += kRows * kUnroll) {
    uint4 vv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = base + row + u * kRows;
      vv[u] = j < n ? __ldg(reinterpret_cast<const uint4*>(a.v_cache + kv_offset(j))) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = base + row + u * kRows;
      if (j < n) {
        float v[8];
        unpack8(vv[u], v);
#pragma unroll
        for (int g = 0; g < G; ++g) {
          const float p = smem[g * chunk + j];
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[g][e] = fmaf(p, v[e], acc[g][e]);
        }
      }
    }
  }
  // Rows of one warp differ in the lane bits above log2(kRow).
#pragma unroll
  for (int o = kRow; o < 32; o <<= 1)
#pragma unroll
    for (int g = 0; g < G; ++g)
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[g][e] += __shfl_xor_sync(0xffffffffu, acc[g][e], o);
  __syncthreads();  // every warp is done reading logits: reuse the buffer
  if (lane < kRow) {
#pragma unroll
    for (int g = 0; g < G; ++g)
#pragma unroll
      for (int e = 0; e < 8; ++e) smem[(warp * G + g) * D + r * 8 + e] = acc[g][e];
  }
  __syncthreads();

  for (int idx = tid; idx < n_heads * D; idx += kThreads) {
    const int g = idx / D, d = idx % D;
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += smem[(w * G + g) * D + d];
    if (single) {
      a.out[t * hd + static_cast<int64_t>(h0 + g) * D + d] = __float2bfloat16(o / s_sum[g]);
    } else {
      const int64_t ps = (static_cast<int64_t>(b) * a.num_heads + h0 + g) * splits + split;
      part_o[ps * D + d] = o;
      if (d == 0) {
        part_ml[2 * ps] = s_max[g];
        part_ml[2 * ps + 1] = s_sum[g];
      }
    }
  }
}

template <int D, int G>
Status launch_split(const PagedAttentionArgs& a, const DecodePlan& p, float* part_o, float* part_ml,
                    cudaStream_t stream) {
  const size_t smem = sizeof(float) * std::max(G * p.chunk, kWarps * G * D);
  const dim3 grid(p.splits, a.num_kv_heads * p.head_groups, a.num_seqs);
  decode_split_kernel<D, G><<<grid, kThreads, smem, stream>>>(a, p.chunk, p.head_groups, p.splits,
                                                              __builtin_ctz(a.block_size), a.scale * kLog2e,
                                                              part_o, part_ml);
  return cuda_status(cudaGetLastError(), "decode_split_kernel");
}

template <int D>
Status launch_decode(const PagedAttentionArgs& a, const DecodePlan& p, cudaStream_t stream) {
  float* part_o = static_cast<float*>(a.workspace);
  float* part_ml = part_o ? part_o + static_cast<int64_t>(a.num_seqs) * a.num_heads * p.splits * D : nullptr;
  auto split = [&]() -> Status {
    switch (p.head_tile) {
      case 1: return launch_split<D, 1>(a, p, part_o, part_ml, stream);
      case 2: return launch_split<D, 2>(a, p, part_o, part_ml, stream);
      case 4: return launch_split<D, 4>(a, p, part_o, part_ml, stream);
      default: return launch_split<D, 8>(a, p, part_o, part_ml, stream);
    }
  };
  const Status s = split();
  if (!s.ok() || p.splits == 1) return s;
  return launch_decode_merge<D>(a, p, part_o, part_ml, stream);
}

}  // namespace

size_t paged_attention_workspace_bytes(int num_seqs, int num_heads, int num_kv_heads, int head_dim,
                                       int max_seq_len, int num_sms, int decode_chunk) {
  if (num_seqs <= 0 || num_heads <= 0 || num_kv_heads <= 0 || num_heads % num_kv_heads || max_seq_len <= 0) return 0;
  const DecodePlan p = plan_decode(num_seqs, num_heads, num_kv_heads, max_seq_len,
                                   num_sms > 0 ? num_sms : cuda_sm_count(), decode_chunk);
  if (p.splits == 1) return 0;
  return sizeof(float) * static_cast<size_t>(num_seqs) * num_heads * p.splits * (head_dim + 2);
}

Status paged_attention_decode(const PagedAttentionArgs& a, cudaStream_t stream) {
  DecodePlan p;
  if (Status s = check_decode_args(a, "paged_attention_decode", p); !s.ok()) return s;
  return a.head_dim == 64 ? launch_decode<64>(a, p, stream) : launch_decode<128>(a, p, stream);
}

}  // namespace ember
