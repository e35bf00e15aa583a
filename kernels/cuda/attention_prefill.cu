// Flash-attention 2 over the paged KV cache, any varlen batch (chunked
// prefill with cached context, GQA, paged K/V through the block table):
//   out[t, h] = softmax(q[t, h] . K^T * scale + causal mask) V,  key j visible to
//   query i of sequence b iff j <= seq_lens[b] - q_len + i.
// Compute bound for long prompts: causal s x s costs 4 s^2 D Hq / 2 FLOPs
// (s = 4k, 32 heads, D 128: 137 GFLOP, ~180 us at the 760 TFLOP/s bf16 GEMM
// ceiling). H100, one prompt: 318-320 TFLOP/s at 4k, 343-358 at 16k (torch
// SDPA flash 262 / 345 in the same runs).
//
// A block owns kBq query rows of one head; key tiles of 64 tokens are
// gathered through the block table into shared memory with cp.async (16 B,
// zero-filled past the context), rows stored with 16-byte chunk c of row r at
// c ^ (r & 7) so that ldmatrix and cp.async phases hit distinct bank groups
// (attention_mma.cuh). Tiles past a query tile's last visible key are never
// loaded; the heaviest causal tiles are scheduled first. Any power-of-two
// block_size works (every copy looks up its block). Tiles:
//   - 4 warps, each owning kMt x 16 query rows (kMt 2: 128-row block tiles).
//     Every K fragment (ldmatrix) feeds kMt x 2 mma and every V fragment
//     kMt x 2: at kMt 2 the shared->register traffic per FLOP halves, which
//     is what bounds mma.sync on H100 (128 B/clk/SM of ldmatrix against
//     ~2k bf16 FLOP/clk/SM of HMMA). Q is re-read from shared memory per
//     16-wide k step instead of pinned (64 registers at D 128).
//   - K and V of tile kt+1 are issued together right after the single
//     barrier of iteration kt, so each copy overlaps a full tile of math;
//     block-table entries of tile kt+2 are fetched a tile ahead.
//   - Softmax in log2 units with the scale folded into one FFMA per score
//     (max taken on raw scores, valid because scale > 0: the entry point
//     rejects any other scale).
// Inner loop (an eager version of this kernel, rescaling O on every tile, ran
// mma.sync at about half its rate at 16k keys, 305-311 TFLOP/s: with 2 warps per
// scheduler and 255 registers each warp's softmax and O rescale sat between
// its two GEMMs and the tensor pipe waited):
//   - Lazy rescale (threshold kRescaleLog2 = 8): a row keeps its stale max
//     until a tile raises it by more than 2^8, so the probabilities stay
//     <= 256 (exact in fp32 sums, same relative precision in bf16) and O/l
//     are rescaled only in a warp-uniform branch that, past the first tiles
//     of a row, almost never runs. The first P.V mma depends only on the
//     exps of its 16 keys, so MUFU and HMMA of one warp overlap.
//   - Unmasked main loop: only tiles that cross a warp's diagonal (or the
//     context end) go through the masked body; full tiles do no compares.
//   - mma.sync is a non-volatile asm here (a pure function of its operands),
//     so ptxas may interleave it with the softmax FP/MUFU work; ldmatrix and
//     cp.async stay volatile (they read/write shared memory).
// Shared memory: Q kBq x D + 2 x (K, V) 64 x D bf16 = 96 KB at D 128, kMt 2;
// __launch_bounds__(128, 2) keeps two blocks (8 warps) per SM.
//
// FP8 cache (Cache = uint8_t): cp.async cannot convert, so a tile's codes land
// in a staging area, double-buffered, and are widened to the bf16 K/V tiles
// (single-buffered: the same shared memory in all, 96 KB) between two
// barriers; the math is the bf16 kernel's. Each thread widens exactly the
// codes it copied, so a staging buffer needs no barrier of its own: tile
// kt+1's copies overwrite codes only their own thread read (tile kt-1's).
// Codes are exact in bf16 (fp8.cuh); k_scale is folded into the softmax
// scale and v_scale into the final 1 / l. Compute bound for long prompts, so
// the widening pass (~1/64 of a tile's mma work) is the expected cost.

#include <string>
#include <type_traits>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_info.h"
#include "kernels/cuda/fp8.cuh"

namespace ember {
namespace {

using namespace ember::mma;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kBk = 64;  // keys per tile
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kRescaleLog2 = 8.0f;  // probabilities may reach 2^8 before a rescale

// d += a * b like mma::mma_bf16, but not volatile: free to be scheduled.
__device__ inline void mma_bf16_nv(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Either cache type: bf16 (K, V) x2, or bf16 (K, V) x1 and codes (K, V) x2.
template <int D, int kMt>
constexpr size_t prefill_smem_bytes() {
  return sizeof(__nv_bfloat16) * static_cast<size_t>(16 * kMt * kWarps + 4 * kBk) * D;  // Q, K x2, V x2
}

// Cache: bf16, or uint8_t for an FP8 cache's codes.
template <int D, int kMt, class Cache>
__global__ void __launch_bounds__(kThreads, 2)
    prefill_kernel(PagedAttentionParams a, int block_shift, float scale_log2, const float* k_scale,
                   const float* v_scale) {
  constexpr bool kFp8 = std::is_same_v<Cache, uint8_t>;
  constexpr int kWarpRows = 16 * kMt;
  constexpr int kBq = kWarpRows * kWarps;
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int kRowsPerPass = kThreads / 4;  // K/V copy: 4 lanes x 64 contiguous bytes per row
  constexpr int kPasses = kBk / kRowsPerPass;
  constexpr int kCodeUnits = kPasses * D / 64;  // FP8: 16-byte code units a thread copies per K (or V) tile
  static_assert(kChunks % 4 == 0 && kBk % kRowsPerPass == 0, "copy mapping");
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* s_q = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* s_k = s_q + kBq * D;  // [2][kBk][D]; FP8: [kBk][D], then s_v, then the staging
  __nv_bfloat16* s_v = s_k + (kFp8 ? 1 : 2) * kBk * D;
  // FP8: [2 buffers][K, V][kCodeUnits][kThreads] 16-byte units, thread-private.
  uint4* s_codes = reinterpret_cast<uint4*>(s_v + kBk * D);

  const int h = blockIdx.x, b = blockIdx.z;
  const int qt = gridDim.y - 1 - blockIdx.y;  // heaviest causal tiles first
  const int q0 = a.query_start_loc[b], q_len = a.query_start_loc[b + 1] - q0;
  if (qt * kBq >= q_len) return;  // tile past this sequence's chunk
  if (a.split_decodes && q_len == 1) return;  // the decode kernel's
  const int seq_len = a.seq_lens[b];
  const int first_pos = seq_len - q_len + qt * kBq;  // context position of the tile's first row
  const int rows_here = min(kBq, q_len - qt * kBq);
  const int n_kt = (first_pos + rows_here - 1) / kBk + 1;
  const int kvh = h / (a.num_heads / a.num_kv_heads);
  const int32_t* table = a.block_tables + static_cast<int64_t>(b) * a.max_blocks_per_seq;
  const int64_t hd = static_cast<int64_t>(a.num_heads) * D;
  const int64_t kv_row = static_cast<int64_t>(a.num_kv_heads) * D;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int ld_chunk = tid & 3, ld_row = tid >> 2;

  for (int i = tid; i < kBq * kChunks; i += kThreads) {
    const int row = i / kChunks, c = i % kChunks;
    const bool valid = qt * kBq + row < q_len;
    const __nv_bfloat16* src = valid ? a.q + (q0 + qt * kBq + row) * hd + static_cast<int64_t>(h) * D + c * 8 : a.q;
    cp_async_16(smem_addr(s_q + swizzle<D>(row, c)), src, valid ? 16 : 0);
  }

  int slot[kPasses];  // cache slot of each K/V row this thread copies, -1 past the context
  auto fetch_slots = [&](int kt) {
#pragma unroll
    for (int p = 0; p < kPasses; ++p) {
      const int j = kt * kBk + ld_row + p * kRowsPerPass;
      slot[p] = j < seq_len ? table[j >> block_shift] * a.block_size + (j & (a.block_size - 1)) : -1;
    }
  };
  // Rows past the context are zero-filled: finite (masked) scores, zero V rows.
  auto load_kv = [&](const void* cache_base, __nv_bfloat16* dst) {
    const auto* cache = static_cast<const __nv_bfloat16*>(cache_base);
#pragma unroll
    for (int p = 0; p < kPasses; ++p) {
      const bool valid = slot[p] >= 0;
      const __nv_bfloat16* src = valid ? cache + static_cast<int64_t>(slot[p]) * kv_row + kvh * D : cache;
#pragma unroll
      for (int ci = 0; ci < kChunks / 4; ++ci) {
        const int c = ci * 4 + ld_chunk;
        cp_async_16(smem_addr(dst + swizzle<D>(ld_row + p * kRowsPerPass, c)), valid ? src + c * 8 : src,
                    valid ? 16 : 0);
      }
    }
  };
  // FP8: the codes of a K or V tile into this thread's staging units (unit
  // p * D/64 + ci: row ld_row + p * kRowsPerPass, codes 16 (4 ci + ld_chunk)
  // and on), zero-filled as above (code 0 is +0).
  auto stage_kv = [&](const void* cache_base, uint4* units) {
    const auto* cache = static_cast<const uint8_t*>(cache_base);
#pragma unroll
    for (int p = 0; p < kPasses; ++p) {
      const bool valid = slot[p] >= 0;
      const uint8_t* src = valid ? cache + static_cast<int64_t>(slot[p]) * kv_row + kvh * D : cache;
#pragma unroll
      for (int ci = 0; ci < D / 64; ++ci) {
        const int c = ci * 4 + ld_chunk;
        cp_async_16(smem_addr(units + (p * (D / 64) + ci) * kThreads + tid), valid ? src + c * 16 : src,
                    valid ? 16 : 0);
      }
    }
  };
  // FP8: this thread's staged codes widened into the bf16 tile, where
  // load_kv would have put them (16 codes: two 8-dim chunks).
  auto widen_kv = [&](const uint4* units, __nv_bfloat16* dst) {
#pragma unroll
    for (int p = 0; p < kPasses; ++p) {
#pragma unroll
      for (int ci = 0; ci < D / 64; ++ci) {
        const uint4 codes = units[(p * (D / 64) + ci) * kThreads + tid];
        const int row = ld_row + p * kRowsPerPass, c = 2 * (ci * 4 + ld_chunk);
        *reinterpret_cast<uint4*>(dst + swizzle<D>(row, c)) = gpu::bf16x8_from_e4m3x8(make_uint2(codes.x, codes.y));
        *reinterpret_cast<uint4*>(dst + swizzle<D>(row, c + 1)) =
            gpu::bf16x8_from_e4m3x8(make_uint2(codes.z, codes.w));
      }
    }
  };
  // FP8 staging buffer `buf`'s K units, then its V units.
  auto codes_of = [&](int buf, int kv) { return s_codes + (2 * buf + kv) * kCodeUnits * kThreads; };

  fetch_slots(0);
  if constexpr (kFp8) {
    stage_kv(a.k_cache, codes_of(0, 0));
    stage_kv(a.v_cache, codes_of(0, 1));
  } else {
    load_kv(a.k_cache, s_k);
    load_kv(a.v_cache, s_v);
  }
  cp_async_commit();  // group: Q, K0, V0
  if (n_kt > 1) fetch_slots(1);
  if constexpr (kFp8) scale_log2 *= *k_scale;

  const int g = lane >> 2, c4 = lane & 3, wrow = warp * kWarpRows;
  const int warp_first_pos = first_pos + wrow, warp_last_pos = warp_first_pos + kWarpRows - 1;
  // Tiles below n_full lie wholly at or before every row of this warp, and
  // inside the context (a warp with any real row has warp_first_pos <
  // seq_len; an all-padding warp computes rows nobody stores): no mask.
  const int n_full = (warp_first_pos + 1) / kBk;
  float o[kMt][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < kMt; ++mt)
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) o[mt][dt][0] = o[mt][dt][1] = o[mt][dt][2] = o[mt][dt][3] = 0.0f;
  // m: the RAW score the row's exps are taken against (a stale max, at most
  // 2^kRescaleLog2 below the true one); -inf while the row has seen nothing.
  // l: lane-partial row sums relative to m.
  float m[kMt][2], l[kMt][2];
#pragma unroll
  for (int mt = 0; mt < kMt; ++mt) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;

  auto tile = [&](auto masked, int kt, const __nv_bfloat16* k_tile, const __nv_bfloat16* v_tile) {
    constexpr bool kMasked = decltype(masked)::value;
    float s[kMt][kBk / 8][4];
#pragma unroll
    for (int mt = 0; mt < kMt; ++mt)
#pragma unroll
      for (int nt = 0; nt < kBk / 8; ++nt) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.0f;
    // S = Q K^T (raw scores), unrolled by 2 (a full unroll spills at D 128).
#pragma unroll 2
    for (int ks = 0; ks < D / 16; ++ks) {
      uint32_t qf[kMt][4];
#pragma unroll
      for (int mt = 0; mt < kMt; ++mt)
        ldmatrix_x4(qf[mt], smem_addr(s_q + swizzle<D>(wrow + mt * 16 + (lane & 15), ks * 2 + (lane >> 4))));
#pragma unroll
      for (int np = 0; np < kBk / 16; ++np) {
        uint32_t kb[4];
        const int key = np * 16 + (lane & 7) + ((lane >> 4) << 3);
        ldmatrix_x4(kb, smem_addr(k_tile + swizzle<D>(key, ks * 2 + ((lane >> 3) & 1))));
#pragma unroll
        for (int mt = 0; mt < kMt; ++mt) {
          mma_bf16_nv(s[mt][2 * np], qf[mt], kb[0], kb[1]);
          mma_bf16_nv(s[mt][2 * np + 1], qf[mt], kb[2], kb[3]);
        }
      }
    }

    // Row maxima (quad-reduced) and whether any of this thread's rows grew
    // past the threshold; the vote makes the rescale branch warp-uniform.
    float mx[kMt][2];
    bool grow = false;
#pragma unroll
    for (int mt = 0; mt < kMt; ++mt) {
#pragma unroll
      for (int rh = 0; rh < 2; ++rh) {
        if constexpr (kMasked) {
          const int qpos = warp_first_pos + mt * 16 + rh * 8 + g;
#pragma unroll
          for (int nt = 0; nt < kBk / 8; ++nt) {
            const int key = kt * kBk + nt * 8 + c4 * 2;
            if (key > qpos) s[mt][nt][2 * rh] = -INFINITY;
            if (key + 1 > qpos) s[mt][nt][2 * rh + 1] = -INFINITY;
          }
        }
        float x = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kBk / 8; ++nt) x = fmaxf(x, fmaxf(s[mt][nt][2 * rh], s[mt][nt][2 * rh + 1]));
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
        mx[mt][rh] = x;
        // -inf - -inf is NaN: compares false (a row that still sees nothing).
        grow |= (x - m[mt][rh]) * scale_log2 > kRescaleLog2;
      }
    }
    if (__any_sync(0xffffffffu, grow)) {
#pragma unroll
      for (int mt = 0; mt < kMt; ++mt) {
#pragma unroll
        for (int rh = 0; rh < 2; ++rh) {
          if ((mx[mt][rh] - m[mt][rh]) * scale_log2 > kRescaleLog2) {
            const float alpha = fast_exp2((m[mt][rh] - mx[mt][rh]) * scale_log2);  // 0 when m was -inf
            m[mt][rh] = mx[mt][rh];
            l[mt][rh] *= alpha;
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt) {
              o[mt][dt][2 * rh] *= alpha;
              o[mt][dt][2 * rh + 1] *= alpha;
            }
          }
        }
      }
    }

    // P = exp2(s * scale_log2 - m * scale_log2), one FFMA + one MUFU each;
    // packed per 16 keys straight into the A fragment of P.V, so the first
    // P.V mma waits only for its own 16 keys.
#pragma unroll
    for (int kk = 0; kk < kBk / 16; ++kk) {
      uint32_t pa[kMt][4];
#pragma unroll
      for (int mt = 0; mt < kMt; ++mt) {
#pragma unroll
        for (int rh = 0; rh < 2; ++rh) {
          // A row with nothing visible yet keeps m = -inf: use 0 so that
          // exp2(-inf - 0) = 0 rather than NaN.
          const float ms = kMasked && m[mt][rh] == -INFINITY ? 0.0f : m[mt][rh] * scale_log2;
          const float p0 = fast_exp2(fmaf(s[mt][2 * kk][2 * rh], scale_log2, -ms));
          const float p1 = fast_exp2(fmaf(s[mt][2 * kk][2 * rh + 1], scale_log2, -ms));
          const float p2 = fast_exp2(fmaf(s[mt][2 * kk + 1][2 * rh], scale_log2, -ms));
          const float p3 = fast_exp2(fmaf(s[mt][2 * kk + 1][2 * rh + 1], scale_log2, -ms));
          l[mt][rh] += (p0 + p1) + (p2 + p3);
          pa[mt][rh] = pack_bf16(p0, p1);      // a0 (rows g) / a1 (rows g+8)
          pa[mt][2 + rh] = pack_bf16(p2, p3);  // a2 / a3
        }
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t vb[4];
        const int key = kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
        ldmatrix_x4_trans(vb, smem_addr(v_tile + swizzle<D>(key, dp * 2 + (lane >> 4))));
#pragma unroll
        for (int mt = 0; mt < kMt; ++mt) {
          mma_bf16_nv(o[mt][2 * dp], pa[mt], vb[0], vb[1]);
          mma_bf16_nv(o[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
        }
      }
    }
  };

  for (int kt = 0; kt < n_kt; ++kt) {
    const int cur = kt & 1;
    if constexpr (kFp8) {
      // Tile kt+1's codes go to the staging buffer of tile kt-1, which only
      // this thread read (it widened them last iteration).
      if (kt + 1 < n_kt) {
        stage_kv(a.k_cache, codes_of(cur ^ 1, 0));
        stage_kv(a.v_cache, codes_of(cur ^ 1, 1));
      }
      cp_async_commit();
      if (kt + 2 < n_kt) fetch_slots(kt + 2);
      cp_async_wait<1>();  // this thread's codes of tile kt (and at kt 0, its share of Q) have landed
      __syncthreads();     // every warp is done with tile kt-1's bf16 K/V
      widen_kv(codes_of(cur, 0), s_k);
      widen_kv(codes_of(cur, 1), s_v);
      __syncthreads();
    } else {
      // The only group in flight is tile kt's. After the barrier every warp is
      // done with tile kt-1, whose buffers the copies of tile kt+1 overwrite.
      cp_async_wait<0>();
      __syncthreads();
      if (kt + 1 < n_kt) {
        load_kv(a.k_cache, s_k + (cur ^ 1) * kBk * D);
        load_kv(a.v_cache, s_v + (cur ^ 1) * kBk * D);
      }
      cp_async_commit();
      if (kt + 2 < n_kt) fetch_slots(kt + 2);
    }

    const __nv_bfloat16* k_tile = s_k + (kFp8 ? 0 : cur * kBk * D);
    const __nv_bfloat16* v_tile = s_v + (kFp8 ? 0 : cur * kBk * D);
    if (kt < n_full) {
      tile(std::false_type{}, kt, k_tile, v_tile);
    } else if (kt * kBk <= warp_last_pos) {  // else every row of this warp precedes the tile
      tile(std::true_type{}, kt, k_tile, v_tile);
    }
  }
  cp_async_wait<0>();  // no copy may outlive the block (the last group is empty)

#pragma unroll
  for (int mt = 0; mt < kMt; ++mt) {
#pragma unroll
    for (int rh = 0; rh < 2; ++rh) {
      float sum = l[mt][rh];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      float inv = 1.0f / sum;
      if constexpr (kFp8) inv = *v_scale / sum;
      const int i = qt * kBq + wrow + mt * 16 + rh * 8 + g;
      if (i < q_len) {
        __nv_bfloat16* dst = a.out + (q0 + i) * hd + static_cast<int64_t>(h) * D + c4 * 2;
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt)
          *reinterpret_cast<uint32_t*>(dst + dt * 8) =
              pack_bf16(o[mt][dt][2 * rh] * inv, o[mt][dt][2 * rh + 1] * inv);
      }
    }
  }
}

template <int D, int kMt>
Status launch_prefill(const PagedAttentionArgs& a, cudaStream_t stream) {
  constexpr size_t smem = prefill_smem_bytes<D, kMt>();
  constexpr int kBq = 16 * kMt * kWarps;
  auto kernel = a.kv_fp8 ? prefill_kernel<D, kMt, uint8_t> : prefill_kernel<D, kMt, __nv_bfloat16>;
  EMBER_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const int q_tiles = (a.max_query_len + kBq - 1) / kBq;
  if (q_tiles > 65535 || a.num_seqs > 65535) return Error{"paged_attention_prefill: batch too large for the grid"};
  kernel<<<dim3(a.num_heads, q_tiles, a.num_seqs), kThreads, smem, stream>>>(a, __builtin_ctz(a.block_size),
                                                                             a.scale * kLog2e, a.k_scale, a.v_scale);
  return cuda_status(cudaGetLastError(), "prefill_kernel");
}

// Query rows per block. Long prompts: 128-row tiles halve the K/V traffic per
// query and the ldmatrix traffic per mma; short or ragged batches: 64-row
// tiles waste less on partial tiles and fill the SMs. H100 (32 q heads, D 128):
// one 1k prompt runs 164 TFLOP/s with 64 rows and 159 with 128 (256 tiles of
// 128 rows: under two per SM); 4k, 16k and 8 x 512 run 318 / 358 / 179 with
// 128 rows and 238 / 260 / 153 with 64. So 128 rows when they still give at
// least four tiles per SM.
int default_prefill_rows(const PagedAttentionArgs& a) {
  const int64_t tiles128 = (static_cast<int64_t>(a.num_tokens) + 127) / 128 * a.num_heads;
  const bool big = a.max_query_len >= 512 && tiles128 >= 4 * static_cast<int64_t>(cuda_sm_count());
  return big ? 128 : 64;
}

}  // namespace

Status paged_attention_prefill(const PagedAttentionArgs& a, cudaStream_t stream) {
  if (Status s = check_paged_attention_args(a, "paged_attention_prefill"); !s.ok()) return s;
  const int rows = a.prefill_rows != 0 ? a.prefill_rows : default_prefill_rows(a);
  if (rows != 64 && rows != 128)
    return Error{"paged_attention_prefill: prefill_rows must be 0, 64 or 128, got " + std::to_string(rows)};
  if (a.head_dim == 128) return rows == 128 ? launch_prefill<128, 2>(a, stream) : launch_prefill<128, 1>(a, stream);
  if (a.head_dim == 64) return rows == 128 ? launch_prefill<64, 2>(a, stream) : launch_prefill<64, 1>(a, stream);
  return Error{"paged_attention_prefill: head_dim must be 64 or 128, got " + std::to_string(a.head_dim)};
}

}  // namespace ember
