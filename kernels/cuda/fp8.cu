// FP8 E4M3: the row quantizer, the small-M linear over FP8 weights and the
// FP8 GEMM's fallback epilogue (fp8.h). The conversions are the hardware's
// (cvt.rn.satfinite.e4m3x2.f32 and cvt.f16x2.e4m3x2 on sm_89+), whose bits
// kernels/quant/fp8.cpp reproduces on the host.
//
// gemv_fp8 is gemv.cu's kernel with 16 weights to a 16-byte load instead of 8:
// a warp owns R rows and walks K in 16-element chunks (lane l: chunks l, l+32,
// ...), keeping 2*R*U loads in flight; x is re-read through L1 as bf16. Its
// cost is N*K bytes of weights, half of the bf16 kernel's.

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fp8.cuh"
#include "kernels/cuda/fp8.h"
#include "kernels/cuda/ops_common.cuh"

namespace ember::gpu {
namespace {

// Rows a block of gemv_fp8_add_for_norm_kernel: one partial sum of squares each.
constexpr int kNormRowsPerBlock = 8;

// One block a row: amax, then the codes (the row's second read hits L1/L2).
__global__ void __launch_bounds__(256)
    quantize_rows_kernel(const bf16* __restrict__ x, int cols, uint8_t* __restrict__ q, float* __restrict__ scale) {
  const int64_t row = blockIdx.x;
  const uint4* xv = reinterpret_cast<const uint4*>(x + row * cols);
  const int chunks = cols / 8;
  pdl_wait();
  float amax = 0.0f;
  for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
    float f[8];
    unpack8(xv[c], f);
#pragma unroll
    for (int e = 0; e < 8; ++e) amax = fmaxf(amax, fabsf(f[e]));
  }
  const float s = fp8_row_scale(block_max(amax));
  if (threadIdx.x == 0) scale[row] = s;
  uint2* qv = reinterpret_cast<uint2*>(q + row * cols);
  for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
    float f[8];
    unpack8(xv[c], f);
    qv[c] = e4m3x8_from_floats(f, s);
  }
}

// 16 E4M3 codes (little-endian: byte i is element i) to float.
__device__ __forceinline__ void unpack16_fp8(const uint4& v, float (&f)[16]) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const auto pair = static_cast<__nv_fp8x2_storage_t>((words[i] >> (16 * j)) & 0xFFFFu);
      const __half2_raw raw = __nv_cvt_fp8x2_to_halfraw2(pair, __NV_E4M3);
      const float2 p = __half22float2(__half2(raw));
      f[4 * i + 2 * j] = p.x;
      f[4 * i + 2 * j + 1] = p.y;
    }
}

// One 16-element chunk c of R weight rows (wv) against x's M rows: acc[m][r]
// += the chunk's products, in element order (x re-read through L1).
template <int M, int R>
__device__ __forceinline__ void gemv_fp8_chunk(float (&acc)[M][R], const uint4 (&wv)[R], const uint4* xv, int x_stride,
                                               int c) {
  float wf[R][16];
#pragma unroll
  for (int r = 0; r < R; ++r) unpack16_fp8(wv[r], wf[r]);
#pragma unroll
  for (int m = 0; m < M; ++m) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float xf[8];
      unpack8(__ldg(xv + static_cast<int64_t>(m) * x_stride + 2 * c + half), xf);
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[m][r] = fmaf(xf[e], wf[r][8 * half + e], acc[m][r]);
    }
  }
}

// A group's loads: chunks c, c + 32, ..., c + 32 (U - 1) of each row.
template <int U, int R>
__device__ __forceinline__ void gemv_fp8_load_group(uint4 (&wv)[U][R], const uint4* const (&wrow)[R], int c) {
#pragma unroll
  for (int u = 0; u < U; ++u)
#pragma unroll
    for (int r = 0; r < R; ++r) wv[u][r] = load_stream(wrow[r] + c + 32 * u);
}

// One warp's sums over x's M rows for its R weight rows (wrow): U groups of
// 32 chunks a lane in flight, x re-read through L1. Lane m * R + r gets the
// total of row r for x row m (0 elsewhere). A lane sums its chunks lane,
// lane + 32, ... in order whatever R and U are, so every launch shape and
// every kernel built on this writes the same bits for a row.
template <int M, int R, int U>
__device__ __forceinline__ float gemv_fp8_warp(const bf16* __restrict__ x, const uint4* const (&wrow)[R], int k,
                                               int lane) {
  const int chunks = k / 16;
  const uint4* xv = reinterpret_cast<const uint4*>(x);
  const int x_stride = k / 8;

  pdl_launch_dependents();  // the next launch may fill the slots this grid frees (pdl.cuh)
  float acc[M][R] = {};
  constexpr int kGroup = 32 * U;
  const int groups = chunks / kGroup;
  uint4 cur[U][R], nxt[U][R];
  if (groups > 0) gemv_fp8_load_group(cur, wrow, lane);
  pdl_wait();
  for (int g = 0; g < groups; ++g) {
    const int c = lane + g * kGroup;
    if (g + 1 < groups) gemv_fp8_load_group(nxt, wrow, c + kGroup);
#pragma unroll
    for (int u = 0; u < U; ++u) gemv_fp8_chunk(acc, cur[u], xv, x_stride, c + 32 * u);
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) cur[u][r] = nxt[u][r];
  }
  for (int c = lane + groups * kGroup; c < chunks; c += 32) {
    uint4 wv[R];
#pragma unroll
    for (int r = 0; r < R; ++r) wv[r] = load_stream(wrow[r] + c);
    gemv_fp8_chunk(acc, wv, xv, x_stride, c);
  }
  return warp_row_totals(acc, lane);
}

// Rows n0 .. n0 + R - 1 of w [n, k] (past n: row n - 1 again, never stored).
template <int R>
__device__ __forceinline__ void gemv_fp8_rows(const uint8_t* w, int n0, int n, int k, const uint4* (&wrow)[R]) {
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int row = n0 + r < n ? n0 + r : n - 1;
    wrow[r] = reinterpret_cast<const uint4*>(w + static_cast<int64_t>(row) * k);
  }
}

// Stores a warp's totals (warp_row_totals) for rows n0 .. n0 + R - 1: scaled, plus the bias, float32 or bf16.
template <int M, int R>
__device__ __forceinline__ void gemv_fp8_store(float mine, int lane, int n0, int n, const float* __restrict__ w_scale,
                                               const float* __restrict__ bias, void* __restrict__ y, bool y_f32) {
  if (lane >= M * R) return;
  const int m = lane / R, col = n0 + lane % R;
  if (col >= n) return;
  const float scaled = mine * w_scale[col];
  const float out = bias ? scaled + bias[col] : scaled;
  const int64_t at = static_cast<int64_t>(m) * n + col;
  if (y_f32) {
    static_cast<float*>(y)[at] = out;
  } else {
    static_cast<bf16*>(y)[at] = __float2bfloat16(out);
  }
}

// W warps a block, R consecutive rows a warp (gemv_fp8_warp's U).
template <int M, int R, int U, int W>
__global__ void __launch_bounds__(W * 32)
    gemv_fp8_kernel(const bf16* __restrict__ x, const uint8_t* __restrict__ w, const float* __restrict__ w_scale,
                    const float* __restrict__ bias, void* __restrict__ y, bool y_f32, int n, int k) {
  const int lane = threadIdx.x & 31;
  const int n0 = (blockIdx.x * W + (threadIdx.x >> 5)) * R;
  if (n0 >= n) return;  // whole warp
  const uint4* wrow[R];
  gemv_fp8_rows(w, n0, n, k, wrow);
  gemv_fp8_store<M, R>(gemv_fp8_warp<M, R, U>(x, wrow, k, lane), lane, n0, n, w_scale, bias, y, y_f32);
}

// Pair j of a matrix whose rows pair up within runs of 2 * half: rows
// (j / half) * 2 * half + j % half and that + half (a head's i and i + D/2
// for the rope; gate's row i and up's row i for gate/up, half = I).
__device__ __forceinline__ int pair_first_row(int j, int half) { return (j / half) * 2 * half + j % half; }

// Pair j's two rows of w [2 * pairs, k].
__device__ __forceinline__ void pair_rows(const uint8_t* w, int j, int half, int k, const uint4* (&wrow)[2]) {
  const int row0 = pair_first_row(j, half);
  wrow[0] = reinterpret_cast<const uint4*>(w + static_cast<int64_t>(row0) * k);
  wrow[1] = reinterpret_cast<const uint4*>(w + static_cast<int64_t>(row0 + half) * k);
}

// Hands pair j's outputs, as gemv_fp8 would store them in bf16 (scaled,
// rounded), to the epilogue: `mine` is warp_row_totals' (R = 2) for the pair.
template <int M, class Epilogue>
__device__ __forceinline__ void pair_done(float mine, int lane, int j, int half, const float* __restrict__ w_scale,
                                          const Epilogue& epi) {
  const int row0 = pair_first_row(j, half);
  const float second = __shfl_xor_sync(0xffffffffu, mine, 1);  // lane 2m + 1's: row0 + half for x row m
  if (lane < 2 * M && (lane & 1) == 0) {
    const float a = __bfloat162float(__float2bfloat16(mine * w_scale[row0]));
    const float b = __bfloat162float(__float2bfloat16(second * w_scale[row0 + half]));
    epi(lane / 2, j, a, b);
  }
}

// The residual add and the first half of an RMSNorm in the store of a
// residual branch's last linear (o, down): gemv_fp8's bf16 output rounded,
// added to the residual as the norm kernel adds (h = bf16(y + residual), in
// place), h * weight to `out`, and each block's sum of h^2 for every x row to
// partials[m * gridDim.x + block] (in a fixed order). 2 rows a warp, U = 4, as
// variant 0; kNormRowsPerBlock rows a block.
template <int M, int W>
__global__ void __launch_bounds__(W * 32)
    gemv_fp8_add_for_norm_kernel(const bf16* __restrict__ x, const uint8_t* __restrict__ w,
                                 const float* __restrict__ w_scale, int n, int k, GemvNormAdd o) {
  constexpr int R = 2;
  static_assert(W * R == kNormRowsPerBlock, "gemv_fp8_norm_partials counts blocks of kNormRowsPerBlock rows");
  __shared__ float warp_sums[W][M];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n0 = (blockIdx.x * W + warp) * R;
  float square = 0.0f;  // lane m * R + r: h^2 of its row
  if (n0 < n) {         // (no early return: every warp meets the barrier)
    const uint4* wrow[R];
    gemv_fp8_rows(w, n0, n, k, wrow);
    const float mine = gemv_fp8_warp<M, R, 4>(x, wrow, k, lane);
    const int m = lane / R, col = n0 + lane % R;
    if (lane < M * R && col < n) {
      const int64_t at = static_cast<int64_t>(m) * n + col;
      const float y = __bfloat162float(__float2bfloat16(mine * w_scale[col]));
      const bf16 h = __float2bfloat16(y + __bfloat162float(o.residual[at]));
      o.residual[at] = h;
      const float hf = __bfloat162float(h);
      o.out[at] = __float2bfloat16(hf * o.weight[col]);
      square = hf * hf;
    }
  }
  static_assert(R == 2, "a token's rows are lanes 2m and 2m + 1");
  const float pair = square + __shfl_xor_sync(0xffffffffu, square, 1);
  if (lane < M * R && (lane & 1) == 0) warp_sums[warp][lane / R] = pair;
  __syncthreads();
  if (threadIdx.x < M) {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < W; ++i) s += warp_sums[i][threadIdx.x];
    o.partials[static_cast<int64_t>(threadIdx.x) * gridDim.x + blockIdx.x] = s;
  }
}

// 1 / rms of x row m from the partial sums of squares, the same value in
// every block (a fixed order: thread t sums t, t + 32 W, ... in turn, the
// warps by butterfly, taken from lane 0, then the warps in order). Every
// thread of the block calls it after the grid's wait. (Loading the partials
// right after the wait, before the sums, was 3-4% slower end to end.)
template <int M, int W>
__device__ __forceinline__ void norm_scales(const GemvNormParts& norm, int k, float (&sums)[W][M], float (&inv)[M]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const float* p = norm.partials + static_cast<int64_t>(m) * norm.count;
    float s = 0.0f;
#pragma unroll 4
    for (int i = threadIdx.x; i < norm.count; i += W * 32) s += p[i];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) sums[warp][m] = s;
  }
  __syncthreads();
#pragma unroll
  for (int m = 0; m < M; ++m) {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < W; ++i) s += sums[i][m];
    inv[m] = rsqrtf(s / static_cast<float>(k) + norm.eps);
  }
}

// gemv_fp8 over row pairs (a warp owns one pair, the default shape's 2 rows
// and U = 4), with `epi(m, j, a, b)` for x row m and pair j in place of the
// store: a and b are the two rows' outputs as gemv_fp8 would store them in
// bf16 (scaled, rounded), so the epilogue sees the values the op it replaces
// would have read. kNorm: x is a GemvNormAdd's `out` and the sums are scaled
// by its rows' 1 / rms before the weights' scales (fp8.h).
template <int M, int W, bool kNorm, class Epilogue>
__global__ void __launch_bounds__(W * 32)
    gemv_fp8_pairs_kernel(const bf16* __restrict__ x, const uint8_t* __restrict__ w, const float* __restrict__ w_scale,
                          int pairs, int half, int k, Epilogue epi, GemvNormParts norm) {
  const int lane = threadIdx.x & 31;
  const int j = blockIdx.x * W + (threadIdx.x >> 5);
  if constexpr (!kNorm) {
    if (j >= pairs) return;  // whole warp
    const uint4* wrow[2];
    pair_rows(w, j, half, k, wrow);
    const float mine = gemv_fp8_warp<M, 2, 4>(x, wrow, k, lane);
    pair_done<M>(mine, lane, j, half, w_scale, epi);
  } else {
    __shared__ float sums[W][M];
    float mine = 0.0f;
    if (j < pairs) {  // (no early return: every warp meets norm_scales' barrier)
      const uint4* wrow[2];
      pair_rows(w, j, half, k, wrow);
      mine = gemv_fp8_warp<M, 2, 4>(x, wrow, k, lane);
    } else {
      pdl_wait();  // the partials are the kernel before's
    }
    float inv[M];
    norm_scales<M, W>(norm, k, sums, inv);
    if (j >= pairs) return;
#pragma unroll
    for (int m = 0; m < M; ++m)
      if (lane / 2 == m) mine *= inv[m];
    pair_done<M>(mine, lane, j, half, w_scale, epi);
  }
}

// rope_qkv_and_cache_write's work for one pair (ops_rope.cu's arithmetic):
// q and k heads rotated (q to q_out, k to its cache slot), v heads stored;
// a cache is bf16, or E4M3 codes of value / scale.
struct RopeEpilogue {
  GemvRopeWrite o;
  __device__ void operator()(int m, int j, float a, float b) const {
    const int half = o.d / 2, head = j / half, p = j % half;
    const int64_t slot = o.slots[m];
    if (head >= o.hq + o.hkv) {  // v: stored as it is
      if (slot >= 0) store(o.v_cache, o.v_scale, (slot * o.hkv + (head - o.hq - o.hkv)) * o.d + p, half, a, b);
      return;
    }
    float s, c;
    sincosf(static_cast<float>(o.positions[m]) * o.inv_freq[p], &s, &c);
    float ra, rb;
    rope_rotate(a, b, c, s, ra, rb);
    if (head < o.hq) {
      bf16* q = o.q_out + (static_cast<int64_t>(m) * o.hq + head) * o.d + p;
      q[0] = __float2bfloat16(ra);
      q[half] = __float2bfloat16(rb);
    } else if (slot >= 0) {
      store(o.k_cache, o.k_scale, (slot * o.hkv + (head - o.hq)) * o.d + p, half, ra, rb);
    }
  }
  __device__ void store(void* cache, const float* scale, int64_t at, int half, float a, float b) const {
    if (o.fp8_cache) {
      uint8_t* c8 = static_cast<uint8_t*>(cache) + at;
      c8[0] = e4m3_from_float(a, *scale);
      c8[half] = e4m3_from_float(b, *scale);
    } else {
      bf16* c16 = static_cast<bf16*>(cache) + at;
      c16[0] = __float2bfloat16(a);
      c16[half] = __float2bfloat16(b);
    }
  }
};

// silu_mul's value for gate g and up u (ops.cu's arithmetic).
struct SiluEpilogue {
  bf16* act;
  int inter;
  __device__ void operator()(int m, int j, float g, float u) const {
    act[static_cast<int64_t>(m) * inter + j] = __float2bfloat16(g / (1.0f + expf(-g)) * u);
  }
};

// gemv_fp8_pairs_kernel<M> for the runtime m (1 <= m <= kGemvFp8EpilogueMaxM), 4 warps a block.
template <class Epilogue, int M = 1>
Status launch_gemv_fp8_pairs(const bf16* x, const uint8_t* w, const float* w_scale, int m, int pairs, int half, int k,
                             const Epilogue& epi, const GemvNormParts& norm, cudaStream_t stream) {
  if constexpr (M < kGemvFp8EpilogueMaxM) {
    if (m > M) return launch_gemv_fp8_pairs<Epilogue, M + 1>(x, w, w_scale, m, pairs, half, k, epi, norm, stream);
  }
  constexpr int kW = 4;
  const dim3 grid(static_cast<unsigned>((pairs + kW - 1) / kW));
  const auto kernel = norm.partials == nullptr ? gemv_fp8_pairs_kernel<M, kW, false, Epilogue>
                                               : gemv_fp8_pairs_kernel<M, kW, true, Epilogue>;
  return cuda_status(launch_pdl(true, kernel, grid, dim3(kW * 32), 0, stream, x, w, w_scale, pairs, half, k, epi, norm),
                     "gemv_fp8 epilogue launch");
}

// gemv_fp8_add_for_norm_kernel<M> for the runtime m (1 <= m <= kGemvFp8EpilogueMaxM).
template <int M = 1>
Status launch_gemv_fp8_add_for_norm(const bf16* x, const uint8_t* w, const float* w_scale, int m, int n, int k,
                                    const GemvNormAdd& o, cudaStream_t stream) {
  if constexpr (M < kGemvFp8EpilogueMaxM) {
    if (m > M) return launch_gemv_fp8_add_for_norm<M + 1>(x, w, w_scale, m, n, k, o, stream);
  }
  constexpr int kW = 4;
  return cuda_status(
      launch_pdl(true, gemv_fp8_add_for_norm_kernel<M, kW>, dim3(static_cast<unsigned>(gemv_fp8_norm_partials(n))),
                 dim3(kW * 32), 0, stream, x, w, w_scale, n, k, o),
      "gemv_fp8_add_for_norm launch");
}

template <int M, int R, int U, int W>
Status launch_gemv_fp8_ruw(const bf16* x, const uint8_t* w, const float* w_scale, const float* bias, void* y,
                           bool y_f32, int n, int k, cudaStream_t stream) {
  constexpr int rows_per_block = W * R;
  const dim3 grid(static_cast<unsigned>((n + rows_per_block - 1) / rows_per_block));
  return cuda_status(
      launch_pdl(true, gemv_fp8_kernel<M, R, U, W>, grid, dim3(W * 32), 0, stream, x, w, w_scale, bias, y, y_f32, n, k),
      "gemv_fp8 launch");
}

// The variants of fp8.h (kGemvFp8Variants) up to M = 4; above, R = 4 rows a
// warp (fewer x re-reads). Variant 0 is the measured default: R = 2, U = 4, 4
// warps, as gemv.cu's bf16 kernel; every variant keeps R*U = 8 loads a group.
template <int M>
Status launch_gemv_fp8(const bf16* x, const uint8_t* w, const float* w_scale, const float* bias, void* y, bool y_f32,
                       int n, int k, int variant, cudaStream_t stream) {
  if constexpr (M <= 4) {
    switch (variant) {
      case 1:
        return launch_gemv_fp8_ruw<M, 4, 2, 4>(x, w, w_scale, bias, y, y_f32, n, k, stream);
      case 2:
        return launch_gemv_fp8_ruw<M, 1, 8, 4>(x, w, w_scale, bias, y, y_f32, n, k, stream);
      case 3:
        return launch_gemv_fp8_ruw<M, 4, 2, 8>(x, w, w_scale, bias, y, y_f32, n, k, stream);
      case 4:
        return launch_gemv_fp8_ruw<M, 2, 4, 8>(x, w, w_scale, bias, y, y_f32, n, k, stream);
      default:
        return launch_gemv_fp8_ruw<M, 2, 4, 4>(x, w, w_scale, bias, y, y_f32, n, k, stream);
    }
  } else {
    return launch_gemv_fp8_ruw<M, 4, 2, 4>(x, w, w_scale, bias, y, y_f32, n, k, stream);
  }
}

// launch_gemv_fp8<M> for the runtime m (1 <= m <= kGemvFp8MaxM).
template <int M = 1>
Status launch_gemv_fp8_for(int m, const bf16* x, const uint8_t* w, const float* w_scale, const float* bias, void* y,
                           bool y_f32, int n, int k, int variant, cudaStream_t stream) {
  if constexpr (M < kGemvFp8MaxM) {
    if (m > M) return launch_gemv_fp8_for<M + 1>(m, x, w, w_scale, bias, y, y_f32, n, k, variant, stream);
  }
  return launch_gemv_fp8<M>(x, w, w_scale, bias, y, y_f32, n, k, variant, stream);
}

__device__ __forceinline__ void load8(const bf16* p, float (&v)[8]) { unpack8(*reinterpret_cast<const uint4*>(p), v); }
__device__ __forceinline__ void load8(const float* p, float (&v)[8]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ __forceinline__ void store8(bf16* p, const float (&v)[8]) { *reinterpret_cast<uint4*>(p) = pack8(v); }
__device__ __forceinline__ void store8(float* p, const float (&v)[8]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

__device__ __forceinline__ float to_float(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(float v) { return v; }

// y[row, :] = in[row, :] * x_scale[row] * w_scale[:] (+ bias[:]), 8 columns a
// thread where n % 8 == 0, one otherwise; rows over blockIdx.y. In place when
// in == y (bf16 to bf16: the pointers may alias, hence no __restrict__).

template <class In, class T>
__global__ void scale_output_kernel(const In* in, const float* __restrict__ x_scale, const float* __restrict__ w_scale,
                                    const float* __restrict__ bias, T* y, int m, int n) {
  pdl_wait();
  const int step = gridDim.x * blockDim.x;
  const bool vec = n % 8 == 0;
  for (int row = blockIdx.y; row < m; row += gridDim.y) {
    const float sx = x_scale[row];
    const int64_t base = static_cast<int64_t>(row) * n;
    if (vec) {
      for (int c = (blockIdx.x * blockDim.x + threadIdx.x) * 8; c < n; c += step * 8) {
        float v[8];
        load8(in + base + c, v);
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          v[e] *= sx * w_scale[c + e];
          if (bias) v[e] += bias[c + e];
        }
        store8(y + base + c, v);
      }
    } else {
      for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < n; c += step) {
        float v = to_float(in[base + c]) * sx * w_scale[c];
        if (bias) v += bias[c];
        if constexpr (std::is_same_v<T, float>) {
          y[base + c] = v;
        } else {
          y[base + c] = __float2bfloat16(v);
        }
      }
    }
  }
}

template <class In, class T>
Status launch_scale_output(const In* in, const float* x_scale, const float* w_scale, const float* bias, T* y, int m,
                           int n, cudaStream_t stream) {
  const int per_block = 256 * (n % 8 == 0 ? 8 : 1);
  const dim3 grid(static_cast<unsigned>((n + per_block - 1) / per_block), static_cast<unsigned>(std::min(m, 65535)));
  return cuda_status(launch_pdl(true, scale_output_kernel<In, T>, grid, dim3(256), 0, stream, in, x_scale, w_scale,
                                bias, y, m, n),
                     "scale_fp8_output launch");
}

}  // namespace

bool fp8_supported(int device) {
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major * 10 + minor >= 89;
}

Status quantize_rows_fp8(const bf16* x, int rows, int cols, uint8_t* q, float* scale, cudaStream_t stream) {
  if (rows <= 0) return Status::success();
  if (cols <= 0 || cols % 8 != 0 || !aligned16(x))
    return Error{"quantize_rows_fp8: cols " + std::to_string(cols) + " must be a positive multiple of 8, x 16-byte aligned"};
  return cuda_status(launch_pdl(true, quantize_rows_kernel, dim3(static_cast<unsigned>(rows)), dim3(256), 0, stream, x,
                                cols, q, scale),
                     "quantize_rows_fp8 launch");
}

bool gemv_fp8_supports(const bf16* x, const uint8_t* w, int m, int k) {
  return m >= 1 && m <= kGemvFp8MaxM && k > 0 && k % 16 == 0 && aligned16(x) && aligned16(w);
}

Status gemv_fp8(const bf16* x, const uint8_t* w, const float* w_scale, const float* bias, void* y, bool y_f32, int m,
                int n, int k, cudaStream_t stream, int variant) {
  if (n <= 0) return Status::success();
  if (!gemv_fp8_supports(x, w, m, k))
    return Error{"gemv_fp8: unsupported arguments (m " + std::to_string(m) + ", k " + std::to_string(k) +
                 "; needs 1 <= m <= 8, k % 16 == 0, 16-byte aligned x and w)"};
  return launch_gemv_fp8_for(m, x, w, w_scale, bias, y, y_f32, n, k, variant, stream);
}

bool gemv_fp8_epilogue_supports(const bf16* x, const uint8_t* w, int m, int k) {
  return m >= 1 && m <= kGemvFp8EpilogueMaxM && gemv_fp8_supports(x, w, m, k);
}

// The partials of a GemvNormAdd over rows of k elements, or none.
static Status check_norm_parts(const char* op, const GemvNormParts& norm, int k) {
  if (norm.partials == nullptr) return Status::success();
  if (norm.count != gemv_fp8_norm_partials(k) || !(norm.eps >= 0.0f))
    return Error{std::string(op) + ": norm partials for " + std::to_string(norm.count) + " blocks, K " +
                 std::to_string(k) + " needs " + std::to_string(gemv_fp8_norm_partials(k)) + " (and eps >= 0)"};
  return Status::success();
}

Status gemv_fp8_rope_and_cache_write(const bf16* x, const uint8_t* w, const float* w_scale, int m, int k,
                                     const GemvRopeWrite& out, cudaStream_t stream, const GemvNormParts& norm) {
  if (!gemv_fp8_epilogue_supports(x, w, m, k))
    return Error{"gemv_fp8_rope_and_cache_write: unsupported arguments (m " + std::to_string(m) + ", k " +
                 std::to_string(k) + "; needs 1 <= m <= 4, k % 16 == 0, 16-byte aligned x and w)"};
  if (out.d <= 0 || out.d % 2 != 0 || out.hq < 0 || out.hkv <= 0 || out.q_out == nullptr || out.k_cache == nullptr ||
      out.v_cache == nullptr || (out.fp8_cache && (out.k_scale == nullptr || out.v_scale == nullptr)))
    return Error{"gemv_fp8_rope_and_cache_write: bad heads, head size or outputs"};
  const int half = out.d / 2, pairs = (out.hq + 2 * out.hkv) * half;
  if (Status s = check_norm_parts("gemv_fp8_rope_and_cache_write", norm, k); !s.ok()) return s;
  return launch_gemv_fp8_pairs(x, w, w_scale, m, pairs, half, k, RopeEpilogue{out}, norm, stream);
}

Status gemv_fp8_silu_mul(const bf16* x, const uint8_t* w, const float* w_scale, int m, int inter, int k, bf16* act,
                         cudaStream_t stream, const GemvNormParts& norm) {
  if (!gemv_fp8_epilogue_supports(x, w, m, k) || inter <= 0)
    return Error{"gemv_fp8_silu_mul: unsupported arguments (m " + std::to_string(m) + ", I " + std::to_string(inter) +
                 ", k " + std::to_string(k) + "; needs 1 <= m <= 4, k % 16 == 0, 16-byte aligned x and w)"};
  if (Status s = check_norm_parts("gemv_fp8_silu_mul", norm, k); !s.ok()) return s;
  return launch_gemv_fp8_pairs(x, w, w_scale, m, inter, inter, k, SiluEpilogue{act, inter}, norm, stream);
}

int gemv_fp8_norm_partials(int n) { return n <= 0 ? 0 : (n + kNormRowsPerBlock - 1) / kNormRowsPerBlock; }

Status gemv_fp8_add_for_norm(const bf16* x, const uint8_t* w, const float* w_scale, int m, int n, int k,
                             const GemvNormAdd& out, cudaStream_t stream) {
  if (!gemv_fp8_epilogue_supports(x, w, m, k) || n <= 0)
    return Error{"gemv_fp8_add_for_norm: unsupported arguments (m " + std::to_string(m) + ", n " + std::to_string(n) +
                 ", k " + std::to_string(k) + "; needs 1 <= m <= 4, n > 0, k % 16 == 0, 16-byte aligned x and w)"};
  if (out.residual == nullptr || out.weight == nullptr || out.out == nullptr || out.partials == nullptr)
    return Error{"gemv_fp8_add_for_norm: missing residual, weight, out or partials"};
  return launch_gemv_fp8_add_for_norm(x, w, w_scale, m, n, k, out, stream);
}

Status scale_fp8_output(const float* acc, const float* x_scale, const float* w_scale, const float* bias, void* y,
                        bool y_f32, int m, int n, cudaStream_t stream) {
  if (m <= 0 || n <= 0) return Status::success();
  if (y_f32) return launch_scale_output(acc, x_scale, w_scale, bias, static_cast<float*>(y), m, n, stream);
  return launch_scale_output(acc, x_scale, w_scale, bias, static_cast<bf16*>(y), m, n, stream);
}

Status scale_fp8_output_inplace(bf16* y, const float* x_scale, const float* w_scale, const float* bias, int m, int n,
                                cudaStream_t stream) {
  if (m <= 0 || n <= 0) return Status::success();
  return launch_scale_output(static_cast<const bf16*>(y), x_scale, w_scale, bias, y, m, n, stream);
}

}  // namespace ember::gpu
