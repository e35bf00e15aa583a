// Small-M linear: y[m, n] = sum_k x[m, k] w[n, k] (+ bias[n]) for M <= 8.
// Bound by reading w once: N*K*2 bytes (Llama-3-8B, 4096x14336: 117 MB, 39 us
// at 3 TB/s); x (M*K*2 bytes, L1/L2 resident) and y are noise. FLOPs are
// 2*M*N*K: at M = 8 that is 8 FLOP per weight byte, 24 TFLOP/s of fp32 FMA at
// 3 TB/s, well under the SM's rate, so CUDA cores (no tensor cores) suffice.
//
// Shape: a warp owns R consecutive rows of w and walks K in 16-byte chunks,
// lane l taking chunks l, l+32, ...; U chunks of each row are loaded before any
// use, so a lane keeps R*U 16-byte loads in flight (8: ~4 KB a warp, ~60 KB an
// SM at full occupancy, enough to cover HBM latency). Weights are streamed
// with ld.global.nc.L1::no_allocate so they do not evict x from L1, where each
// warp re-reads x (M/R times the weight traffic, served by L1/L2, not HBM).
// Partial sums are reduced with warp shuffles; lane m*R + r writes y[m, n0 + r].
// Blocks are 4 warps (4R rows): N = 4096 gives 256..512 blocks, all resident
// at once, so every SM streams about the same number of rows.

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops_common.cuh"

namespace ember::gpu {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;

template <int M, int R, int U>
__global__ void __launch_bounds__(kThreads)
    gemv_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w, const float* __restrict__ bias,
                void* __restrict__ y, bool y_f32, int n, int k) {
  const int lane = threadIdx.x & 31;
  const int n0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * R;
  if (n0 >= n) return;  // whole warp: no shuffle partner is left behind
  const int chunks = k / 8;
  const uint4* wrow[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    // Rows past N (last warp) re-read row N-1; their sums are never stored.
    const int row = n0 + r < n ? n0 + r : n - 1;
    wrow[r] = reinterpret_cast<const uint4*>(w + static_cast<int64_t>(row) * k);
  }
  const uint4* xv = reinterpret_cast<const uint4*>(x);

  float acc[M][R];
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int r = 0; r < R; ++r) acc[m][r] = 0.0f;

  // One step over chunk c of every row: w converted once, x once per m.
  auto step = [&](const uint4(&wv)[R], int c) {
    float wf[R][8];
#pragma unroll
    for (int r = 0; r < R; ++r) unpack8(wv[r], wf[r]);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      float xf[8];
      unpack8(__ldg(xv + static_cast<int64_t>(m) * chunks + c), xf);
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[m][r] = fmaf(xf[e], wf[r][e], acc[m][r]);
    }
  };
  // Groups of U chunks a lane (lane + 32u, u < U) that every lane has in
  // full; the group after the current one is loaded before the current one
  // is used, so 2*R*U loads stay in flight.
  constexpr int kGroup = 32 * U;
  const int groups = chunks / kGroup;
  uint4 cur[U][R], nxt[U][R];
  auto load = [&](uint4(&wv)[U][R], int c) {
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) wv[u][r] = load_stream(wrow[r] + c + 32 * u);
  };
  pdl_launch_dependents();  // the next launch may fill the slots this grid frees (pdl.cuh)
  // The weights are constant: the first group streams in while the kernel
  // before this one (which wrote x) is still finishing.
  if (groups > 0) load(cur, lane);
  pdl_wait();
  for (int g = 0; g < groups; ++g) {
    const int c = lane + g * kGroup;
    if (g + 1 < groups) load(nxt, c + kGroup);
#pragma unroll
    for (int u = 0; u < U; ++u) step(cur[u], c + 32 * u);
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) cur[u][r] = nxt[u][r];
  }
  for (int c = lane + groups * kGroup; c < chunks; c += 32) {
    uint4 wv[R];
#pragma unroll
    for (int r = 0; r < R; ++r) wv[r] = load_stream(wrow[r] + c);
    step(wv, c);
  }

  const float mine = warp_row_totals(acc, lane);
  if (lane < M * R) {
    const int m = lane / R, col = n0 + lane % R;
    if (col < n) {
      const float out = bias ? mine + bias[col] : mine;
      const int64_t at = static_cast<int64_t>(m) * n + col;
      if (y_f32) {
        static_cast<float*>(y)[at] = out;
      } else {
        static_cast<bf16*>(y)[at] = __float2bfloat16(out);
      }
    }
  }
}

template <int M, int R, int U>
Status launch_ru(const bf16* x, const bf16* w, const float* bias, void* y, bool y_f32, int n, int k, bool pdl,
                 cudaStream_t stream) {
  constexpr int rows_per_block = kWarps * R;
  const dim3 grid(static_cast<unsigned>((n + rows_per_block - 1) / rows_per_block));
  return cuda_status(launch_pdl(pdl, gemv_kernel<M, R, U>, grid, dim3(kThreads), 0, stream, x, w, bias, y, y_f32, n, k),
                     "gemv launch");
}

// Variant `variant` of the tuning grid of gemm.h (0, and anything unknown: the
// default). R = 2 rows a warp for M <= 4 (more warps in flight, x re-read
// <= 2x), 4 for M > 4 (halves the x re-reads, which at M = 8 would otherwise
// be 4x the weight bytes through L1); R*U = 8 loads a group.
template <int M>
Status launch(const bf16* x, const bf16* w, const float* bias, void* y, bool y_f32, int n, int k, int variant,
              bool pdl, cudaStream_t stream) {
  if constexpr (M <= 4) {
    switch (variant) {
      case 1: return launch_ru<M, 1, 8>(x, w, bias, y, y_f32, n, k, pdl, stream);
      case 2: return launch_ru<M, 2, 8>(x, w, bias, y, y_f32, n, k, pdl, stream);
      case 3: return launch_ru<M, 1, 4>(x, w, bias, y, y_f32, n, k, pdl, stream);
      default: return launch_ru<M, 2, 4>(x, w, bias, y, y_f32, n, k, pdl, stream);
    }
  } else {
    return launch_ru<M, 4, 2>(x, w, bias, y, y_f32, n, k, pdl, stream);
  }
}

}  // namespace

bool gemv_supports(const bf16* x, const bf16* w, int m, int k) {
  return m >= 1 && m <= Gemm::kGemvMaxM && k > 0 && k % 8 == 0 && aligned16(x) && aligned16(w);
}

bool gemv_launches_as_dependent() {
  return kernel_has_pdl(reinterpret_cast<const void*>(gemv_kernel<1, 2, 4>));
}

Status gemv_variant(const bf16* x, const bf16* w, const float* bias, void* y, bool y_f32, int m, int n, int k,
                    int variant, bool pdl, cudaStream_t stream) {
  if (n <= 0) return Status::success();
  if (!gemv_supports(x, w, m, k))
    return Error{"gemv: unsupported arguments (m " + std::to_string(m) + ", k " + std::to_string(k) +
                 "; needs 1 <= m <= 8, k % 8 == 0, 16-byte aligned x and w)"};
  switch (m) {
    case 1: return launch<1>(x, w, bias, y, y_f32, n, k, variant, pdl, stream);
    case 2: return launch<2>(x, w, bias, y, y_f32, n, k, variant, pdl, stream);
    case 3: return launch<3>(x, w, bias, y, y_f32, n, k, variant, pdl, stream);
    case 4: return launch<4>(x, w, bias, y, y_f32, n, k, variant, pdl, stream);
    case 5: return launch<5>(x, w, bias, y, y_f32, n, k, variant, pdl, stream);
    case 6: return launch<6>(x, w, bias, y, y_f32, n, k, variant, pdl, stream);
    case 7: return launch<7>(x, w, bias, y, y_f32, n, k, variant, pdl, stream);
    default: return launch<8>(x, w, bias, y, y_f32, n, k, variant, pdl, stream);
  }
}

Status gemv(const bf16* x, const bf16* w, const float* bias, void* y, bool y_f32, int m, int n, int k,
            cudaStream_t stream) {
  return gemv_variant(x, w, bias, y, y_f32, m, n, k, kGemvDefaultVariant, true, stream);
}

}  // namespace ember::gpu
