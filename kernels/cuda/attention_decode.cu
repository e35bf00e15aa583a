// Flash-decoding: one query token per sequence (q_len == 1).
//   out[b, h] = softmax(q[b, h] . K[b, kvh]^T * scale) V[b, kvh]   over seq_lens[b] keys.
// Bandwidth bound: every K/V byte is read once, so the roofline is (K + V
// bytes) / copy bandwidth, e.g. batch 32 x 4k context x 8 KV heads x D 128 =
// 537 MB, ~180 us at 3.0 TB/s. H100: 2,785 GB/s there, 93% of copy.
//
// Grid: a block owns (context split, KV head, sequence) and the query heads
// that share that KV head (up to kMaxHeads), so each K/V row is loaded once
// for the whole GQA group. The split size comes from host values only
// (plan_decode), so the launch is graph-capturable; a sequence that fits one
// split writes `out` directly, otherwise the splits write partials to the
// workspace and decode_merge_kernel combines them:
//   part_o  [(b * Hq + h) * splits + s][D]  float, unnormalized output of split s
//   part_ml [2 * ((b * Hq + h) * splits + s)] = (max logit in log2 units, sum of 2^(logit - max))
//
// Why per-warp streaming: blocks that run three phases (all logits to shared
// memory | softmax | all of V) between barriers serialize their K and V
// streams and leave HBM idle at each barrier (2,397 GB/s at the shape above).
// Here every WARP streams its own 8-key tiles with an online softmax and no
// barrier until the end: K of tile i+1 is issued right after the logits of
// tile i, V of tile i+1 right after its P.V (~4 KB in flight per warp).
//
// The math runs on tensor cores (mma.sync), which matters as much as the
// pipelining: with fp32 FMAs a key costs 2 * G * D FMAs plus shuffles for the
// row reductions, ~150 instructions per key and warp at G 8 (near the issue
// rate 2.5 TB/s needs, measured in SASS of a first version); here ~20.
//   logits  S[h][key] = Q x K^T: mma m16n8k16, n = the tile's 8 keys, one per
//           lane group g = lane / 4. Lane (g, c) loads 16-byte chunks c + 4i
//           of key g (64-byte runs: coalesced), which ARE its B fragments,
//           and the same chunks of q[head g] as A: both sides share one
//           permutation of d. (A's rows 8..15 are not zero padding but the
//           chunk's other half; see the loop.)
//   softmax lane (g, c) holds S[head g][keys 2c, 2c+1]: max over the 4 lanes
//           of head g by two shuffles; m, l of head g per lane.
//   P.V     O^T[d][h] = V^T x P^T: mma m16n8k8, B = P^T is exactly the lane's
//           (p0, p1) packed to bf16, A = V^T comes from the V chunks (loaded
//           like K) through movmatrix.trans, one per 8x8 block of V.
// Registers (ptxas 13.0, sm_90a): 124 for D 128 (q 16, acc 32, K and V tiles
// 16 each), 90 for D 64, no spills: 4 blocks of 128 threads (16 warps, ~64 KB
// of loads in flight) per SM. At the end warps merge (m, l, acc) through
// shared memory and write `out` (one split) or the split's partials. P is
// rounded to bf16 for the P.V mma (as in flash-attention); l sums the fp32 p.
//
// FP8 cache (Cache = uint8_t): a lane loads the same 8 dims of a key as 8
// bytes instead of 16 and widens them to bf16 in registers (exact: fp8.cuh),
// so the mma code is the bf16 kernel's; k_scale is folded into the softmax
// scale (q . (code * ks) = ks * (q . code)) and v_scale into the output.
// Half the bytes: the roofline time halves (NOTES-attention.md).
//
// Early keys (PagedAttentionArgs::decode_early_kv, on unless the backend's
// EMBER_ATTN_EARLY_KV=0): a decode step's attention at small batches is short
// and latency-bound, so each warp loads its first tile's keys and values
// before griddepcontrol.wait, through L2, all but the step's new key (the
// kernel before writes it): two dependent round trips (the block table, then
// K/V) leave the path after the wait.

#include <algorithm>
#include <string>
#include <type_traits>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_info.h"
#include "kernels/cuda/fp8.cuh"
#include "kernels/cuda/pdl.cuh"

namespace ember {
namespace {

constexpr int kMaxChunk = 1024;  // the planner's first split size, and the largest decode_chunk
constexpr int kMinChunk = 64;
constexpr int kMaxSplits = 256;
constexpr float kLog2e = 1.4426950408889634f;

// Both kernels launch as dependents (pdl.cuh) and trigger first, so the o
// projection (or the merge) that follows may start streaming its weights;
// the merge then waits for the kernel before (decode_kernel: see there).
__device__ __forceinline__ void trigger_then_wait() {
  gpu::pdl_launch_dependents();
  gpu::pdl_wait();
}

// What one block of the decode kernel works on: keys [start, start + n) of
// sequence b (query token t), query heads [h0, h0 + n_heads) of KV head kvh.
struct SplitWork {
  int b, t, seq_len, start, n, kvh, h0, n_heads;
};

// The block's share from its grid position (split, kvh * head_groups + group
// tile, sequence); false when it has nothing to do (a split past the end, or
// a prefill sequence of a mixed batch). It reads only the step's metadata,
// which the host uploads before the step and no kernel writes, and reads it
// from L2 (ld.global.cg), so it may run before the wait (pdl.cuh).
__device__ __forceinline__ bool split_work(const PagedAttentionParams& a, int chunk, int head_groups, int head_tile,
                                           SplitWork& w) {
  w.b = blockIdx.z;
  if (a.split_decodes && __ldcg(a.query_start_loc + w.b + 1) - __ldcg(a.query_start_loc + w.b) != 1)
    return false;  // the prefill's
  w.seq_len = __ldcg(a.seq_lens + w.b);
  w.start = blockIdx.x * chunk;
  if (w.start >= w.seq_len) return false;
  w.n = min(chunk, w.seq_len - w.start);
  const int group = a.num_heads / a.num_kv_heads;
  w.kvh = blockIdx.y / head_groups;
  const int g0 = (blockIdx.y % head_groups) * head_tile;
  w.n_heads = min(head_tile, group - g0);
  w.h0 = w.kvh * group + g0;
  w.t = __ldcg(a.query_start_loc + w.b);
  return true;
}

struct DecodePlan {
  int head_tile = 8;    // query heads per block
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

// The decode entry point's checks (`who` names it in the message), and the
// plan it launches with.
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
    decode_merge_kernel(PagedAttentionParams a, int chunk, int splits, const float* part_o, const float* part_ml) {
  __shared__ float w[kMaxSplits];
  __shared__ float scratch[kMergeScratch];
  trigger_then_wait();
  const int h = blockIdx.x, b = blockIdx.y, d = threadIdx.x;
  if (a.split_decodes && a.query_start_loc[b + 1] - a.query_start_loc[b] != 1) return;
  const int n = min(splits, (a.seq_lens[b] + chunk - 1) / chunk);
  if (n <= 1) return;  // written directly by decode_kernel
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
  return cuda_status(gpu::launch_pdl(true, decode_merge_kernel<D>, dim3(a.num_heads, a.num_seqs), dim3(D), 0, stream, a,
                                     p.chunk, p.splits, part_o, part_ml),
                     "decode_merge_kernel");
}

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kTileKeys = 8;  // keys per warp tile: n of the logits mma
constexpr int kMaxHeads = 8;  // query heads per block (the logits mma has 16 rows, 8 used)

// d += a * b, m16n8k8, bf16 inputs, fp32 accumulators. a0 = A[g][2c..2c+1],
// a1 = A[g+8][2c..2c+1], b = B[2c..2c+1][g]; d as for m16n8k16.
__device__ __forceinline__ void mma_k8(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t b) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a0), "r"(a1), "r"(b));
}

// Transposes an 8x8 bf16 matrix held one row pair per lane: in, lane (g, c)
// holds X[g][2c..2c+1]; out, X[2c..2c+1][g] (low half: row 2c).
__device__ __forceinline__ uint32_t transpose8x8(uint32_t x) {
  uint32_t y;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
  return y;
}

__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Dim of V block b (chunk b / 4, word b % 4) that output row g (0..7) of
// its transpose stands for: block b holds V[key][8 (c + 4 (b / 4)) + 2 (b % 4) + e]
// in column 2c + e.
__device__ __forceinline__ int block_dim(int b, int g) { return 8 * (g >> 1) + 32 * (b >> 2) + 2 * (b & 3) + (g & 1); }

// Cache: bf16, or uint8_t for an FP8 cache's codes.
template <int D, class Cache>
__global__ void __launch_bounds__(kThreads, 4)
    decode_kernel(PagedAttentionParams a, int chunk, int head_tile, int head_groups, int splits, int block_shift,
                  float scale_log2, float* part_o, float* part_ml, const float* k_scale, const float* v_scale,
                  bool early_kv) {
  constexpr bool kFp8 = std::is_same_v<Cache, uint8_t>;
  using Chunk = std::conditional_t<kFp8, uint2, uint4>;  // 8 dims of a K/V row
  constexpr int kChunks = D / 32;  // 8-dim chunks of a K/V row per lane (4 lanes per key)
  constexpr int kPv = D / 16;      // P.V mmas per tile: 16 dims each
  __shared__ __align__(16) float s_acc[kWarps][kMaxHeads][D];
  __shared__ float s_m[kWarps][kMaxHeads], s_l[kWarps][kMaxHeads];

  gpu::pdl_launch_dependents();
  // A block without keys leaves before the wait: with the grid sized for the
  // longest context a graph allows (max_model_len), most of a short
  // context's blocks have none, and waiting they would hold their slots past
  // the end of the kernel before. Split 0 always waits, so the grid still
  // ends after that kernel (the chain of waits, pdl.cuh).
  SplitWork w{};
  const bool has_work = split_work(a, chunk, head_groups, head_tile, w);
  if (!has_work && blockIdx.x > 0) return;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, c = lane & 3;        // mma fragment coordinates
  const int token_stride = a.num_kv_heads * D;  // elements between consecutive cache slots
  const int offset_mask = a.block_size - 1;
  const int32_t* table = a.block_tables + static_cast<int64_t>(w.b) * a.max_blocks_per_seq;
  const Cache* k_lane = static_cast<const Cache*>(a.k_cache) + static_cast<int64_t>(w.kvh) * D + 8 * c;
  const Cache* v_lane = static_cast<const Cache*>(a.v_cache) + static_cast<int64_t>(w.kvh) * D + 8 * c;
  // Cache slot of key g of warp tile `tile`. Keys past the end re-read key
  // n - 1 (finite data that p = 0 weighs out): no branches around the loads.
  auto tile_pos = [&](int tile) { return w.start + min(tile * kTileKeys + g, w.n - 1); };
  auto slot_of = [&](int pos, int32_t entry) { return entry * a.block_size + (pos & offset_mask); };
  // (via_l2: ld.global.cg, for loads before the wait)
  auto load = [&](const Cache* base, int slot, Chunk(&buf)[kChunks], bool via_l2 = false) {
    const Chunk* row = reinterpret_cast<const Chunk*>(base + static_cast<int64_t>(slot) * token_stride);
#pragma unroll
    for (int i = 0; i < kChunks; ++i) buf[i] = via_l2 ? __ldcg(row + 4 * i) : __ldg(row + 4 * i);
  };
  // The warp's first tile: a key this step did not write (every one but the
  // last, which the kernel before writes) is final since an earlier step, as
  // are the block table entries (uploaded before the step), so a lane with
  // such a key loads it before the wait, through L2 (ld.global.cg: pdl.cuh).
  Chunk kb[kChunks], vb[kChunks];
  const bool first_tile = has_work && warp * kTileKeys < w.n;  // warp-uniform
  const int first_pos = first_tile ? tile_pos(warp) : 0;
  const bool early = early_kv && first_tile && first_pos < w.seq_len - 1;
  if (early) {
    const int slot = slot_of(first_pos, __ldcg(table + (first_pos >> block_shift)));
    load(k_lane, slot, kb, true);
    load(v_lane, slot, vb, true);
  }
  gpu::pdl_wait();
  if (!has_work) return;
  const int split = blockIdx.x, b = w.b, n = w.n, n_heads = w.n_heads, h0 = w.h0;
  const bool single = w.seq_len <= chunk;  // this block sees the whole context
  const int t = w.t;
  const int64_t hd = static_cast<int64_t>(a.num_heads) * D;

  // q[head g], chunks c + 4i: the logits mma's A (zero for padded heads).
  uint4 qf[kChunks];
#pragma unroll
  for (int i = 0; i < kChunks; ++i)
    qf[i] =
        g < n_heads
            ? __ldg(reinterpret_cast<const uint4*>(a.q + t * hd + static_cast<int64_t>(h0 + g) * D + 8 * (c + 4 * i)))
            : make_uint4(0, 0, 0, 0);

  auto tile_slot = [&](int tile) {
    const int pos = tile_pos(tile);
    return slot_of(pos, __ldg(table + (pos >> block_shift)));
  };
  if constexpr (kFp8) scale_log2 *= *k_scale;

  // Online softmax state of head g (l over this lane's keys only: the 4
  // lanes of a head sum at the end); acc: P.V C fragments, heads 2c, 2c+1.
  float m = -INFINITY, l = 0.0f;
  float acc[kPv][4];
#pragma unroll
  for (int j = 0; j < kPv; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;

  int tile = warp;
  if (first_tile && !early) {
    const int slot = tile_slot(tile);
    load(k_lane, slot, kb);
    load(v_lane, slot, vb);
  }
  for (; tile * kTileKeys < n; tile += kWarps) {  // warp-uniform: mma and shuffles need the whole warp
    const bool more = (tile + kWarps) * kTileKeys < n;
    const int next_slot = more ? tile_slot(tile + kWarps) : 0;  // its table read overlaps the mmas

    // Logits. A = the q chunk's words {x, z, y, w}: rows g see x, y (dims
    // 0..3 of the chunk) and rows g + 8 see z, w (dims 4..7), so B = K words
    // {x, y} gives dims 0..3 in rows g of `se` and B = {z, w} dims 4..7 in
    // rows g + 8 of `so`; the other rows are cross terms, ignored. (A
    // zero-padded A would cost 16 more registers; B pairs are adjacent words
    // of the loaded K, so no moves.)
    float se[4] = {0.0f, 0.0f, 0.0f, 0.0f}, so[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const uint32_t qa[4] = {qf[i].x, qf[i].z, qf[i].y, qf[i].w};
      const uint4 k = gpu::bf16x8_of(kb[i]);
      mma::mma_bf16(se, qa, k.x, k.y);
      mma::mma_bf16(so, qa, k.z, k.w);
    }
    if (more) load(k_lane, next_slot, kb);  // in flight during the softmax and P.V

    const int key = tile * kTileKeys + 2 * c;
    const float x0 = key < n ? (se[0] + so[2]) * scale_log2 : -INFINITY;  // log2 units
    const float x1 = key + 1 < n ? (se[1] + so[3]) * scale_log2 : -INFINITY;
    float mx = fmaxf(x0, x1);
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m, mx);
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // no valid key yet: avoid -inf - -inf
    const float alpha = mma::fast_exp2(m - m_use);
    m = m_new;
    const float p0 = mma::fast_exp2(x0 - m_use), p1 = mma::fast_exp2(x1 - m_use);
    l = fmaf(l, alpha, p0 + p1);

    // acc columns are heads 2c and 2c + 1, whose state lives in lanes 8c and 8c + 4.
    const float alpha_lo = __shfl_sync(0xffffffffu, alpha, 8 * c);
    const float alpha_hi = __shfl_sync(0xffffffffu, alpha, 8 * c + 4);
    const uint32_t pb = mma::pack_bf16(p0, p1);  // B of P.V: P[head g][keys 2c, 2c+1]
#pragma unroll
    for (int j = 0; j < kPv; ++j) {
      acc[j][0] *= alpha_lo;
      acc[j][1] *= alpha_hi;
      acc[j][2] *= alpha_lo;
      acc[j][3] *= alpha_hi;
      // (FP8: each chunk is widened once; the compiler merges the repeats)
      const uint32_t v_lo = transpose8x8(word(gpu::bf16x8_of(vb[(2 * j) >> 2]), (2 * j) & 3));
      const uint32_t v_hi = transpose8x8(word(gpu::bf16x8_of(vb[(2 * j + 1) >> 2]), (2 * j + 1) & 3));
      mma_k8(acc[j], v_lo, v_hi, pb);
    }
    if (more) load(v_lane, next_slot, vb);
  }

  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
#pragma unroll
  for (int j = 0; j < kPv; ++j) {
    const int d_lo = block_dim(2 * j, g), d_hi = block_dim(2 * j + 1, g);
    s_acc[warp][2 * c][d_lo] = acc[j][0];
    s_acc[warp][2 * c + 1][d_lo] = acc[j][1];
    s_acc[warp][2 * c][d_hi] = acc[j][2];
    s_acc[warp][2 * c + 1][d_hi] = acc[j][3];
  }
  if (c == 0) {
    s_m[warp][g] = m;
    s_l[warp][g] = l;
  }
  __syncthreads();

  // Warp 0 saw key 0, so the block max is finite; a warp without keys has
  // m = -inf and weighs 0.
  for (int idx = tid; idx < n_heads * D; idx += kThreads) {
    const int h = idx / D, d = idx % D;
    float mb = s_m[0][h];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) mb = fmaxf(mb, s_m[w][h]);
    float o = 0.0f, lb = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = mma::fast_exp2(s_m[w][h] - mb);
      o = fmaf(f, s_acc[w][h][d], o);
      lb = fmaf(f, s_l[w][h], lb);
    }
    if constexpr (kFp8) o *= *v_scale;  // (before the split partials too: the merge stays scale-free)
    if (single) {
      a.out[t * hd + static_cast<int64_t>(h0 + h) * D + d] = __float2bfloat16(o / lb);
    } else {
      const int64_t ps = (static_cast<int64_t>(b) * a.num_heads + h0 + h) * splits + split;
      part_o[ps * D + d] = o;
      if (d == 0) {
        part_ml[2 * ps] = mb;
        part_ml[2 * ps + 1] = lb;
      }
    }
  }
}

template <int D>
Status launch_decode(const PagedAttentionArgs& a, const DecodePlan& p, cudaStream_t stream) {
  float* part_o = static_cast<float*>(a.workspace);
  float* part_ml = part_o ? part_o + static_cast<int64_t>(a.num_seqs) * a.num_heads * p.splits * D : nullptr;
  const dim3 grid(p.splits, a.num_kv_heads * p.head_groups, a.num_seqs);
  auto kernel = a.kv_fp8 ? decode_kernel<D, uint8_t> : decode_kernel<D, __nv_bfloat16>;
  const cudaError_t e = gpu::launch_pdl(true, kernel, grid, dim3(kThreads), 0, stream, a, p.chunk, p.head_tile,
                                        p.head_groups, p.splits, __builtin_ctz(a.block_size), a.scale * kLog2e, part_o,
                                        part_ml, a.k_scale, a.v_scale, a.decode_early_kv);
  if (Status s = cuda_status(e, "decode_kernel"); !s.ok() || p.splits == 1) return s;
  return launch_decode_merge<D>(a, p, part_o, part_ml, stream);
}

}  // namespace

size_t paged_attention_workspace_bytes(int num_seqs, int num_heads, int num_kv_heads, int head_dim, int max_seq_len,
                                       int num_sms, int decode_chunk) {
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
