// Flash-attention 2 over the paged KV cache, any varlen batch.
//   out[t, h] = softmax(q[t, h] . K^T * scale + causal mask) V,  key j visible to
//   query i of sequence b iff j <= seq_lens[b] - q_len + i.
// Compute bound for long prompts: causal s x s costs 4 s^2 D Hq / 2 FLOPs
// (s = 4k, 32 heads, D 128: 137 GFLOP, ~180 us at the 760 TFLOP/s bf16 GEMM
// ceiling; torch SDPA's flash backend reaches 306 TFLOP/s there).
//
// A thread block owns kBq = 16 * kWarps query rows of one head; each warp
// owns 16 rows and keeps its scores S (16 x 64), output O (16 x D) and Q
// fragments in registers (mma.sync m16n8k16, bf16 in, fp32 accumulate;
// layouts in attention_mma.cuh). Key tiles of 64 tokens are gathered
// through the block table into shared memory with cp.async, K and V each
// double-buffered, so the copy of tile kt+1 overlaps the math on tile kt.
// Rows are stored with 16-byte chunk c of row r at c ^ (r & 7): the eight
// rows an ldmatrix phase reads then fall in eight distinct bank groups.
// Online softmax in log2 units (scale * log2 e folded in); only tiles that
// cross the diagonal pay for the mask, and tiles past a query tile's last
// visible key are never loaded. Heaviest query tiles are launched first
// (blockIdx.y reversed) so the causal tail does not straggle.
// Any power-of-two block_size works: every 16-byte copy looks up its block.

#include <algorithm>
#include <string>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/cuda_check.h"

namespace ember {
namespace {

using namespace ember::mma;

constexpr int kBk = 64;  // keys per tile
constexpr float kLog2e = 1.4426950408889634f;

template <int D, int kWarps>
constexpr size_t prefill_smem_bytes() {
  return sizeof(__nv_bfloat16) * static_cast<size_t>(16 * kWarps + 4 * kBk) * D;  // Q, 2 K, 2 V
}

template <int D, int kWarps>
__global__ void __launch_bounds__(kWarps * 32)
    prefill_kernel(PagedAttentionArgs a, int block_shift, float scale_log2) {
  constexpr int kThreads = kWarps * 32;
  constexpr int kBq = 16 * kWarps;
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* s_q = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* s_k = s_q + kBq * D;  // [2][kBk][D]
  __nv_bfloat16* s_v = s_k + 2 * kBk * D;

  const int h = blockIdx.x, b = blockIdx.z;
  const int qt = gridDim.y - 1 - blockIdx.y;
  const int q0 = a.query_start_loc[b], q_len = a.query_start_loc[b + 1] - q0;
  if (qt * kBq >= q_len) return;  // tile past this sequence's chunk
  const int seq_len = a.seq_lens[b];
  const int first_pos = seq_len - q_len + qt * kBq;  // context position of the tile's first row
  const int rows_here = min(kBq, q_len - qt * kBq);
  const int n_kt = (first_pos + rows_here - 1) / kBk + 1;
  const int kvh = h / (a.num_heads / a.num_kv_heads);
  const int32_t* table = a.block_tables + static_cast<int64_t>(b) * a.max_blocks_per_seq;
  const int64_t hd = static_cast<int64_t>(a.num_heads) * D;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  for (int i = tid; i < kBq * kChunks; i += kThreads) {
    const int row = i / kChunks, c = i % kChunks;
    const bool valid = qt * kBq + row < q_len;
    const __nv_bfloat16* src = valid ? a.q + (q0 + qt * kBq + row) * hd + static_cast<int64_t>(h) * D + c * 8 : a.q;
    cp_async_16(smem_addr(s_q + swizzle<D>(row, c)), src, valid ? 16 : 0);
  }
  // Keys past the context are zero-filled: finite scores (masked anyway) and
  // zero V rows, so a masked p = 0 never meets garbage.
  auto load_kv = [&](const __nv_bfloat16* cache, __nv_bfloat16* dst, int kt) {
    for (int i = tid; i < kBk * kChunks; i += kThreads) {
      const int row = i / kChunks, c = i % kChunks, j = kt * kBk + row;
      const bool valid = j < seq_len;
      const __nv_bfloat16* src = cache;
      if (valid) {
        const int64_t slot =
            static_cast<int64_t>(table[j >> block_shift]) * a.block_size + (j & (a.block_size - 1));
        src = cache + (slot * a.num_kv_heads + kvh) * D + c * 8;
      }
      cp_async_16(smem_addr(dst + swizzle<D>(row, c)), src, valid ? 16 : 0);
    }
  };

  load_kv(a.k_cache, s_k, 0);
  cp_async_commit();  // group: Q, K0
  load_kv(a.v_cache, s_v, 0);
  cp_async_commit();  // group: V0

  const int g = lane >> 2, c4 = lane & 3, wrow = warp * 16;
  uint32_t qf[D / 16][4];
  float o[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int kt = 0; kt < n_kt; ++kt) {
    const int cur = kt & 1;
    const __nv_bfloat16* k_tile = s_k + cur * kBk * D;
    const __nv_bfloat16* v_tile = s_v + cur * kBk * D;
    // Groups in flight: ..., K_kt, V_kt. Waiting for all but one = K_kt landed.
    cp_async_wait<1>();
    __syncthreads();
    if (kt == 0) {
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks)
        ldmatrix_x4(qf[ks], smem_addr(s_q + swizzle<D>(wrow + (lane & 15), ks * 2 + (lane >> 4))));
    }

    // S = Q K^T: K rows are keys, i.e. B (k = dim, n = key) stored n-major,
    // which is what a plain ldmatrix hands out as b0/b1.
    float s[kBk / 8][4];
#pragma unroll
    for (int nt = 0; nt < kBk / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
#pragma unroll
      for (int np = 0; np < kBk / 16; ++np) {
        uint32_t kb[4];  // b0,b1 of keys np*16..+7, then of keys np*16+8..+15
        const int key = np * 16 + (lane & 7) + ((lane >> 4) << 3);
        ldmatrix_x4(kb, smem_addr(k_tile + swizzle<D>(key, ks * 2 + ((lane >> 3) & 1))));
        mma_bf16(s[2 * np], qf[ks], kb[0], kb[1]);
        mma_bf16(s[2 * np + 1], qf[ks], kb[2], kb[3]);
      }
    }
    // The other K buffer held K_{kt-1}, finished by every warp before the barrier above.
    if (kt + 1 < n_kt) load_kv(a.k_cache, s_k + (cur ^ 1) * kBk * D, kt + 1);
    cp_async_commit();

    const bool need_mask = kt * kBk + kBk - 1 > first_pos;
#pragma unroll
    for (int nt = 0; nt < kBk / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] *= scale_log2;
        if (need_mask) {
          const int key = kt * kBk + nt * 8 + c4 * 2 + (e & 1);
          const int qpos = first_pos + wrow + g + (e >> 1) * 8;
          if (key > qpos) s[nt][e] = -INFINITY;
        }
      }
    }
    // Online softmax; the four lanes of a quad share a row.
#pragma unroll
    for (int rh = 0; rh < 2; ++rh) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < kBk / 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * rh], s[nt][2 * rh + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m[rh], mx);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // a row with nothing visible yet
      const float alpha = fast_exp2(m[rh] - m_use);
      m[rh] = m_new;
      float rs = 0.0f;
#pragma unroll
      for (int nt = 0; nt < kBk / 8; ++nt) {
        s[nt][2 * rh] = fast_exp2(s[nt][2 * rh] - m_use);
        s[nt][2 * rh + 1] = fast_exp2(s[nt][2 * rh + 1] - m_use);
        rs += s[nt][2 * rh] + s[nt][2 * rh + 1];
      }
      l[rh] = l[rh] * alpha + rs;  // lane-partial sums, reduced over the quad at the end
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        o[dt][2 * rh] *= alpha;
        o[dt][2 * rh + 1] *= alpha;
      }
    }

    cp_async_wait<1>();  // all but K_{kt+1}: V_kt landed
    __syncthreads();
    // O += P V: V rows are keys, i.e. B (k = key, n = dim) stored k-major,
    // hence ldmatrix .trans.
#pragma unroll
    for (int kk = 0; kk < kBk / 16; ++kk) {
      const uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                              pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t vb[4];  // b0,b1 of dims dp*16..+7, then of dims dp*16+8..+15
        const int key = kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
        ldmatrix_x4_trans(vb, smem_addr(v_tile + swizzle<D>(key, dp * 2 + (lane >> 4))));
        mma_bf16(o[2 * dp], pa, vb[0], vb[1]);
        mma_bf16(o[2 * dp + 1], pa, vb[2], vb[3]);
      }
    }
    if (kt + 1 < n_kt) load_kv(a.v_cache, s_v + (cur ^ 1) * kBk * D, kt + 1);
    cp_async_commit();
  }
  cp_async_wait<0>();  // no copy may outlive the block

#pragma unroll
  for (int rh = 0; rh < 2; ++rh) {
    float sum = l[rh];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv = 1.0f / sum;
    const int i = qt * kBq + wrow + g + rh * 8;
    if (i < q_len) {
      __nv_bfloat16* dst = a.out + (q0 + i) * hd + static_cast<int64_t>(h) * D + c4 * 2;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt)
        *reinterpret_cast<uint32_t*>(dst + dt * 8) = pack_bf16(o[dt][2 * rh] * inv, o[dt][2 * rh + 1] * inv);
    }
  }
}

template <int D, int kWarps>
Status launch_prefill(const PagedAttentionArgs& a, cudaStream_t stream) {
  constexpr size_t smem = prefill_smem_bytes<D, kWarps>();
  auto kernel = prefill_kernel<D, kWarps>;
  EMBER_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const int q_tiles = (a.max_query_len + 16 * kWarps - 1) / (16 * kWarps);
  if (q_tiles > 65535 || a.num_seqs > 65535) return Error{"paged_attention_prefill: batch too large for the grid"};
  kernel<<<dim3(a.num_heads, q_tiles, a.num_seqs), kWarps * 32, smem, stream>>>(a, __builtin_ctz(a.block_size),
                                                                                 a.scale * kLog2e);
  return cuda_status(cudaGetLastError(), "prefill_kernel");
}

}  // namespace

Status paged_attention_prefill_warps(const PagedAttentionArgs& a, int warps, cudaStream_t stream) {
  if (Status s = check_paged_attention_args(a, "paged_attention_prefill"); !s.ok()) return s;
  if (a.head_dim == 128) return warps == 8 ? launch_prefill<128, 8>(a, stream) : launch_prefill<128, 4>(a, stream);
  if (a.head_dim == 64) return warps == 8 ? launch_prefill<64, 8>(a, stream) : launch_prefill<64, 4>(a, stream);
  return Error{"paged_attention_prefill: head_dim must be 64 or 128, got " + std::to_string(a.head_dim)};
}

Status paged_attention_prefill(const PagedAttentionArgs& a, cudaStream_t stream) {
  // v3 (attention_prefill_v3.cu: v2's tiles, lazy O rescale, unmasked main
  // loop). Long prompts: 128-row tiles halve the K/V traffic per query and the
  // ldmatrix traffic per mma; short or ragged batches: 64-row tiles waste less
  // on partial tiles and fill the SMs. Measured on the H100 (32 q heads,
  // D 128, v3): one 1k prompt runs 164 TFLOP/s with 64 rows and 159 with 128
  // (256 tiles of 128 rows: under two per SM); 4k, 16k and 8 x 512 run
  // 318 / 358 / 179 with 128 rows and 238 / 260 / 153 with 64. So 128 rows
  // when they still give at least four tiles per SM.
  const int64_t tiles128 = (static_cast<int64_t>(a.num_tokens) + 127) / 128 * a.num_heads;
  const bool big = a.max_query_len >= 512 && tiles128 >= 4 * static_cast<int64_t>(cuda_sm_count());
  return paged_attention_prefill_v3(a, big ? 128 : 64, stream);
}

Status paged_attention_mixed(const PagedAttentionArgs& args, cudaStream_t stream) {
  PagedAttentionArgs a = args;
  a.split_decodes = true;
  if (Status s = paged_attention_decode_v2(a, stream); !s.ok()) return s;
  // (A scale <= 0 sends the prefill to v1, which does not skip decodes: it
  // rewrites their rows with the same values, still correct.)
  return paged_attention_prefill(a, stream);
}

}  // namespace ember
