// Small-M linear on tensor cores: y[m, n] = sum_k x[m, k] w[n, k] (+ bias[n])
// for 1 <= M <= 64 (decode batches and speculative verify chunks), over bf16
// weights or FP8 E4M3 ones with a scale per output row (gemv_mma_fp8, below).
// Bound by reading w once (N*K*2 bytes; Llama-3-8B gate_up 235 MB: 55 us at
// 4.2 TB/s) whatever M is. The FMA kernel (gemv.cu) spends 8*M fp32 FMAs a
// lane per 16-byte weight chunk and falls behind memory from M ~ 4; here one
// mma.m16n8k16 does a 16-row x 8-token x 16-k tile, so M = 8 costs what
// M = 1 does; up to 64 tokens (8 n-tiles, 32 FLOP a weight byte) stay under
// the tensor cores' rate at HBM speed, where cuBLASLt's tiles reach only 50-85%
// of copy bandwidth on the decode shapes (bench/results/2026-12-04-h200-cuda.json).
//
// Tile: a warp owns 16*RT rows of w and one slice of K; mma's n (8 or 16) is
// the tokens, zero-padded past M. The fragments are loaded from global memory
// directly, with K permuted inside each 32-wide step so that every lane reads
// 16 contiguous bytes: lane (g = lane/4, t = lane%4) loads w[row g][k0 + 8t ..
// k0 + 8t + 7] and row g + 8 alike, and x[token g][k0 + 8t ..] the same way.
// mma j (0, 1) of the step takes words 2j, 2j+1 of those 16 bytes as its k
// slots {2t, 2t+1} and {2t+8, 2t+9}: the map (t, j, slot) -> k is one
// bijection of the 32 k's shared by w and x, so the sum is unchanged. Weights
// stream with ld.global.nc.L1::no_allocate (x stays in L1); U steps are
// loaded before use and the next group while the current one computes.
//
// K is split over the S warps of a block (S from the grid size: enough warps
// in flight to cover HBM latency on short matrices such as o_proj), summed in
// shared memory in warp order. A token's outputs never depend on the other
// tokens or on M (mma columns are independent, the split and the order are
// fixed by N and K), so a verify chunk's rows are bit-identical to the same
// rows computed one at a time in decode steps.

// FP8 weights (W8A16 as gemv_fp8: x is not quantized) take the same tiles
// with a 64-wide step and an f16 mma: a lane's 16 bytes are 16 codes, k0 + 16t
// .. 16t + 15, and its x the matching 32 bytes. mma j (0..3) takes code word j
// (k 16t + 4j .. +3) as k slots {2t, 2t+1} (codes 0, 1) and {2t+8, 2t+9}
// (codes 2, 3), and x's pairs of those k. A code pair becomes f16x2 in one
// hardware conversion (exact: E4M3 is a subset of f16), and x's bf16 pairs
// become f16x2 once a step for all row tiles: exact for |x| in [2^-14, 65504];
// smaller values round to f16's subnormal step of 2^-24 (an absolute error of
// at most 2^-25), larger ones saturate to 65504, never inf
// (Fp8Gpu.MmaGemvTakesXAsF16 pins the rule). The mma's products
// are exact and summed in fp32; the row's scale multiplies the sum. Half the
// bytes of bf16, and the CUDA-core kernel's per-row FMAs (which grow with M)
// gone. Against a bf16 mma fed by integer moves of the codes (the form until
// 2026-12-06: ~2.5 integer instructions a code) the four Llama-3-8B linears
// at 8 tokens take 91 us instead of 99 (H100, kernels/cuda/NOTES-gemm.md).

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <type_traits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fp8.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops_common.cuh"

namespace ember::gpu {
namespace {

// The two weight formats. A lane loads 16 bytes of a row a step.
struct Bf16Weights {
  using T = bf16;
  static constexpr int kStepK = 32;  // k a warp consumes per step: 4 lanes x 8 (two mma k16)
  static constexpr int kXVecs = 1;   // 16-byte loads of x a token a step
  static constexpr bool kScaled = false;
};
struct Fp8Weights {
  using T = uint8_t;
  static constexpr int kStepK = 64;  // 4 lanes x 16 codes (four mma k16)
  static constexpr int kXVecs = 2;
  static constexpr bool kScaled = true;
};

__device__ __forceinline__ void mma_bf16_16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                               uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t word(const uint4& v, int i) {  // i known at compile time after unrolling
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// One step's operands for one lane: rows g and g + 8 of each of the RT row
// tiles, tokens g (+ 8) of each of the NT token tiles.
template <class F, int RT, int NT>
struct Frag {
  uint4 w[RT][2];
  uint4 x[NT][F::kXVecs];
};

__device__ __forceinline__ void mma_f16_16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                              uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Codes 0, 1 (`hi`: 2, 3) of a little-endian word of four E4M3 codes as f16x2 (exact).
__device__ __forceinline__ uint32_t e4m3_pair_to_f16x2(uint32_t codes, bool hi) {
  const __half2_raw h =
      __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(hi ? codes >> 16 : codes & 0xFFFFu), __NV_E4M3);
  return static_cast<uint32_t>(h.x) | (static_cast<uint32_t>(h.y) << 16);
}

// A bf16x2 word as f16x2: rounded to nearest, saturated to +-65504 (no inf).
__device__ __forceinline__ uint32_t bf16x2_to_f16x2(uint32_t v) {
  uint32_t h;
  asm("cvt.rn.satfinite.f16x2.f32 %0, %1, %2;"
      : "=r"(h)
      : "f"(__uint_as_float(v & 0xFFFF0000u)), "f"(__uint_as_float(v << 16)));
  return h;
}

template <class F, int RT, int NT>
__device__ __forceinline__ void step_mma(float (&acc)[RT][NT][4], const Frag<F, RT, NT>& f) {
  if constexpr (std::is_same_v<F, Bf16Weights>) {
#pragma unroll
    for (int rt = 0; rt < RT; ++rt)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        // k16 half 0: words x, y; half 1: words z, w (the permutation above).
        mma_bf16_16816(acc[rt][nt], f.w[rt][0].x, f.w[rt][1].x, f.w[rt][0].y, f.w[rt][1].y, f.x[nt][0].x,
                       f.x[nt][0].y);
        mma_bf16_16816(acc[rt][nt], f.w[rt][0].z, f.w[rt][1].z, f.w[rt][0].w, f.w[rt][1].w, f.x[nt][0].z,
                       f.x[nt][0].w);
      }
  } else {
    uint32_t xh[NT][8];  // x's 16 values a lane, as f16x2, once for every row tile
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 8; ++i) xh[nt][i] = bf16x2_to_f16x2(word(f.x[nt][i >> 2], i & 3));
#pragma unroll
    for (int rt = 0; rt < RT; ++rt)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const uint32_t c0 = word(f.w[rt][0], j), c1 = word(f.w[rt][1], j);
          mma_f16_16816(acc[rt][nt], e4m3_pair_to_f16x2(c0, false), e4m3_pair_to_f16x2(c1, false),
                        e4m3_pair_to_f16x2(c0, true), e4m3_pair_to_f16x2(c1, true), xh[nt][2 * j], xh[nt][2 * j + 1]);
        }
  }
}

// Grid: one block per 16*RT rows; block: S warps (blockDim.x = 32 S), warp s
// takes steps [s*steps/S, (s+1)*steps/S). Dynamic shared memory: S * 16RT * 8
// floats for the split-K sums of one token tile. w_scale: FP8's per-row scales.
template <class F, int RT, int NT, int U>
__global__ void __launch_bounds__(256)
    gemv_mma_kernel(const bf16* __restrict__ x, const typename F::T* __restrict__ w, const float* __restrict__ w_scale,
                    const float* __restrict__ bias, void* __restrict__ y, bool y_f32, int m, int n, int k) {
  extern __shared__ float partial[];  // [S][8 tokens][16 RT rows]
  constexpr int kRows = 16 * RT;
  constexpr int kStepK = F::kStepK, kLaneK = kStepK / 4;  // k a lane loads a step (16 bytes of w)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, splits = blockDim.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * kRows;

  // Rows past N re-read row N-1 (never stored); tokens past M read nothing.
  const typename F::T* wrow[RT][2];
#pragma unroll
  for (int rt = 0; rt < RT; ++rt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = min(n0 + 16 * rt + 8 * h + g, n - 1);
      wrow[rt][h] = w + static_cast<int64_t>(row) * k + kLaneK * t;
    }
  const bf16* xrow[NT];
  bool xvalid[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    xvalid[nt] = 8 * nt + g < m;
    xrow[nt] = x + static_cast<int64_t>(xvalid[nt] ? 8 * nt + g : 0) * k + kLaneK * t;
  }

  const int steps = (k + kStepK - 1) / kStepK;
  const int s_begin = static_cast<int>(static_cast<int64_t>(steps) * warp / splits);
  const int s_end = static_cast<int>(static_cast<int64_t>(steps) * (warp + 1) / splits);
  // Whole steps (every lane's 16 bytes inside K) come in groups of U; the
  // last step of a K that is not a multiple of the step goes through the tail.
  const int full_end = min(s_end, k / kStepK);
  const int groups = max(0, full_end - s_begin) / U;

  float acc[RT][NT][4];
#pragma unroll
  for (int rt = 0; rt < RT; ++rt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[rt][nt][i] = 0.0f;

  auto load_w = [&](Frag<F, RT, NT>(&f)[U], int s) {
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int rt = 0; rt < RT; ++rt)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          f[u].w[rt][h] = load_stream(reinterpret_cast<const uint4*>(wrow[rt][h] + (s + u) * kStepK));
  };
  auto load_x = [&](Frag<F, RT, NT>(&f)[U], int s) {
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int v = 0; v < F::kXVecs; ++v)
          f[u].x[nt][v] = xvalid[nt] ? __ldg(reinterpret_cast<const uint4*>(xrow[nt] + (s + u) * kStepK) + v)
                                     : make_uint4(0, 0, 0, 0);
  };

  Frag<F, RT, NT> cur[U], nxt[U];
  // The weights are constant: the first group streams in while the kernel
  // before this one (which wrote x) is still finishing.
  if (groups > 0) load_w(cur, s_begin);
  pdl_wait();
  if (groups > 0) load_x(cur, s_begin);
  for (int gi = 0; gi < groups; ++gi) {
    const int s = s_begin + gi * U;
    if (gi + 1 < groups) {
      load_w(nxt, s + U);
      load_x(nxt, s + U);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) step_mma(acc, cur[u]);
#pragma unroll
    for (int u = 0; u < U; ++u) cur[u] = nxt[u];
  }
  for (int s = s_begin + groups * U; s < s_end; ++s) {
    const bool in = s * kStepK + kLaneK * t < k;  // K % kLaneK == 0: a lane's 16 bytes are all in or all out
    Frag<F, RT, NT> f;
#pragma unroll
    for (int rt = 0; rt < RT; ++rt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        f.w[rt][h] =
            in ? load_stream(reinterpret_cast<const uint4*>(wrow[rt][h] + s * kStepK)) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int v = 0; v < F::kXVecs; ++v)
        f.x[nt][v] = in && xvalid[nt] ? __ldg(reinterpret_cast<const uint4*>(xrow[nt] + s * kStepK) + v)
                                      : make_uint4(0, 0, 0, 0);
    step_mma(acc, f);
  }

  // Accumulator fragment: c0, c1 at (row g, tokens 2t, 2t+1), c2, c3 at row g + 8.
  // One token tile at a time through shared memory (8 KB at most), summed over
  // the warps in warp order; consecutive threads store consecutive rows.
  float* mine = partial + warp * kRows * 8;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    if (8 * nt >= m) break;  // uniform over the block
#pragma unroll
    for (int rt = 0; rt < RT; ++rt)
#pragma unroll
      for (int i = 0; i < 4; ++i) mine[(2 * t + (i & 1)) * kRows + 16 * rt + g + 8 * (i >> 1)] = acc[rt][nt][i];
    __syncthreads();
    const int tokens = min(8, m - 8 * nt);
    for (int e = threadIdx.x; e < kRows * tokens; e += blockDim.x) {
      const int token = e / kRows, row = e % kRows, col = n0 + row;
      if (col >= n) continue;
      float sum = 0.0f;
      for (int s = 0; s < splits; ++s) sum += partial[(s * 8 + token) * kRows + row];
      if constexpr (F::kScaled) sum *= w_scale[col];
      if (bias) sum += bias[col];
      const int64_t at = static_cast<int64_t>(8 * nt + token) * n + col;
      if (y_f32) {
        static_cast<float*>(y)[at] = sum;
      } else {
        static_cast<bf16*>(y)[at] = __float2bfloat16(sum);
      }
    }
    __syncthreads();
  }
}

// Warps a block: enough blocks x warps for ~`target` warps in flight (16 a
// SM on a 132-SM H100/H200), at most 8, and at least 4 steps a warp. Depends
// only on N and K, never on M (the bit-identity above).
int splits_for(int n, int k, int rows_per_block, int step_k, int target) {
  const int blocks = (n + rows_per_block - 1) / rows_per_block;
  const int steps = (k + step_k - 1) / step_k;
  int s = 1;
  while (s < 8 && blocks * s * 2 <= target && steps / (s * 2) >= 4) s *= 2;
  return s;
}

// One call's arguments, whatever the format.
template <class F>
struct Args {
  const bf16* x;
  const typename F::T* w;
  const float* w_scale;
  const float* bias;
  void* y;
  bool y_f32;
  int m, n, k;
  bool pdl;
  cudaStream_t stream;
};

template <class F, int RT, int NT, int U>
Status launch(const Args<F>& a, int target) {
  constexpr int kRows = 16 * RT;
  const int splits = splits_for(a.n, a.k, kRows, F::kStepK, target);
  const dim3 grid(static_cast<unsigned>((a.n + kRows - 1) / kRows));
  const size_t smem = static_cast<size_t>(splits) * kRows * 8 * sizeof(float);
  return cuda_status(launch_pdl(a.pdl, gemv_mma_kernel<F, RT, NT, U>, grid, dim3(32 * splits), smem, a.stream, a.x, a.w,
                                a.w_scale, a.bias, a.y, a.y_f32, a.m, a.n, a.k),
                     "gemv_mma launch");
}

// The tuning grid for up to 16 tokens; more tokens take one form: their x
// fragments and sums fill the registers, so one step a group (U = 1; the next
// step still loads while the current one computes), and FP8's twice-as-wide
// x fragments one row tile above 32 tokens.
template <class F, int NT>
Status launch_variant(const Args<F>& a, int variant) {
  if constexpr (NT > 2) {
    constexpr int RT = std::is_same_v<F, Fp8Weights> && NT > 4 ? 1 : 2;
    return launch<F, RT, NT, 1>(a, 2048);
  } else {
    switch (variant) {
      case 1:
        return launch<F, 1, NT, 4>(a, 2048);
      case 2:
        return launch<F, 2, NT, 2>(a, 1024);
      case 3:
        return launch<F, 2, NT, 2>(a, 4096);
      default:
        return launch<F, 2, NT, 2>(a, 2048);
    }
  }
}

template <class F>
Status dispatch(const Args<F>& a, int variant) {
  switch ((a.m + 7) / 8) {
    case 1:
      return launch_variant<F, 1>(a, variant);
    case 2:
      return launch_variant<F, 2>(a, variant);
    case 3:
      return launch_variant<F, 3>(a, variant);
    case 4:
      return launch_variant<F, 4>(a, variant);
    case 5:
      return launch_variant<F, 5>(a, variant);
    case 6:
      return launch_variant<F, 6>(a, variant);
    case 7:
      return launch_variant<F, 7>(a, variant);
    default:
      return launch_variant<F, 8>(a, variant);
  }
}

}  // namespace

bool gemv_mma_supports(const bf16* x, const bf16* w, int m, int k) {
  return m >= 1 && m <= kGemvMmaMaxM && k > 0 && k % 8 == 0 && aligned16(x) && aligned16(w);
}

Status gemv_mma_variant(const bf16* x, const bf16* w, const float* bias, void* y, bool y_f32, int m, int n, int k,
                        int variant, bool pdl, cudaStream_t stream) {
  if (n <= 0) return Status::success();
  if (!gemv_mma_supports(x, w, m, k))
    return Error{"gemv_mma: unsupported arguments (m " + std::to_string(m) + ", k " + std::to_string(k) +
                 "; needs 1 <= m <= " + std::to_string(kGemvMmaMaxM) + ", k % 8 == 0, 16-byte aligned x and w)"};
  return dispatch(Args<Bf16Weights>{x, w, nullptr, bias, y, y_f32, m, n, k, pdl, stream}, variant);
}

Status gemv_mma(const bf16* x, const bf16* w, const float* bias, void* y, bool y_f32, int m, int n, int k,
                cudaStream_t stream) {
  return gemv_mma_variant(x, w, bias, y, y_f32, m, n, k, kGemvMmaDefaultVariant, true, stream);
}

bool gemv_mma_fp8_supports(const bf16* x, const uint8_t* w, int m, int k) {
  return m >= 1 && m <= kGemvMmaMaxM && k > 0 && k % 16 == 0 && aligned16(x) && aligned16(w);
}

Status gemv_mma_fp8(const bf16* x, const uint8_t* w, const float* w_scale, const float* bias, void* y, bool y_f32,
                    int m, int n, int k, int variant, bool pdl, cudaStream_t stream) {
  if (n <= 0) return Status::success();
  if (!gemv_mma_fp8_supports(x, w, m, k))
    return Error{"gemv_mma_fp8: unsupported arguments (m " + std::to_string(m) + ", k " + std::to_string(k) +
                 "; needs 1 <= m <= " + std::to_string(kGemvMmaMaxM) + ", k % 16 == 0, 16-byte aligned x and w)"};
  return dispatch(Args<Fp8Weights>{x, w, w_scale, bias, y, y_f32, m, n, k, pdl, stream}, variant);
}

}  // namespace ember::gpu
