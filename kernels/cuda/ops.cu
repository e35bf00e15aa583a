// Row copies (embedding, gather_rows), SwiGLU and dtype conversions. All are
// pure bandwidth: each byte read once and written once, so the roofline is a
// device-to-device copy (~3 TB/s on H100); a 4096-wide row moves 16 KB.
//   gather: reads R*H*2 B, writes R*H*2 B.   silu_mul: reads 4*M*I B, writes 2*M*I B.

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fp8.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/ops_common.cuh"

namespace ember::gpu {
namespace {

int threads_for(int64_t items, int max_threads) {
  const int64_t t = (items + 31) / 32 * 32;
  return static_cast<int>(t < 32 ? 32 : t > max_threads ? max_threads : t);
}

// One block per output row; kVec: 16-byte vectors (H % 8 == 0, aligned rows).
// x holds rows [first, first + count) of the indexed space: an index outside
// gets a row of zeros (a vocab-parallel embedding's other ranks' tokens).
template <bool kVec>
__global__ void gather_rows_kernel(const bf16* x, const int32_t* idx, int64_t hidden, bf16* out, int64_t first,
                                   int64_t count) {
  pdl_launch_dependents();  // the LM head follows
  const int64_t r = blockIdx.x;
  const int64_t src_row = idx[r] - first;
  const bool zero = src_row < 0 || src_row >= count;
  if constexpr (kVec) {
    const uint4* src = reinterpret_cast<const uint4*>(x + src_row * hidden);
    uint4* dst = reinterpret_cast<uint4*>(out + r * hidden);
    for (int64_t j = threadIdx.x; j < hidden / 8; j += blockDim.x) dst[j] = zero ? make_uint4(0, 0, 0, 0) : src[j];
  } else {
    const bf16* src = x + src_row * hidden;
    bf16* dst = out + r * hidden;
    for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) dst[j] = zero ? __float2bfloat16(0.0f) : src[j];
  }
}

// grid (rows, column chunks of blockDim vectors); silu in float32 as the CPU:
// g / (1 + exp(-g)) (expf, not __expf: ~2 ulp instead of a fast approximation).
template <bool kVec>
__global__ void silu_mul_kernel(const bf16* x, int64_t inter, bf16* out) {
  pdl_launch_dependents();  // the down projection follows
  const int64_t row = blockIdx.x;
  const int64_t j = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  const bf16* gate = x + row * 2 * inter;
  const bf16* up = gate + inter;
  if constexpr (kVec) {
    if (j >= inter / 8) return;
    float g[8], u[8];
    unpack8(reinterpret_cast<const uint4*>(gate)[j], g);
    unpack8(reinterpret_cast<const uint4*>(up)[j], u);
#pragma unroll
    for (int e = 0; e < 8; ++e) g[e] = g[e] / (1.0f + expf(-g[e])) * u[e];
    reinterpret_cast<uint4*>(out + row * inter)[j] = pack8(g);
  } else {
    if (j >= inter) return;
    const float g = __bfloat162float(gate[j]);
    out[row * inter + j] = __float2bfloat16(g / (1.0f + expf(-g)) * __bfloat162float(up[j]));
  }
}

// silu_mul's values quantized per row (quantize_rows_fp8's rule over the bf16
// values silu_mul would store): one block a row, the row in registers. With
// x_scale, x is the gate/up GEMM's raw product of codes and gets its scales
// here, as its scale pass would have applied them.
template <int kVecs>
__global__ void __launch_bounds__(512) silu_mul_fp8_kernel(const bf16* x, int inter, const float* x_scale,
                                                           const float* w_scale, uint8_t* codes, float* scales) {
  pdl_launch_dependents();  // the down projection follows
  const int64_t row = blockIdx.x;
  const int nvec = inter / 8;
  const uint4* gate = reinterpret_cast<const uint4*>(x + row * 2 * inter);
  const uint4* up = gate + nvec;
  const float sx = x_scale != nullptr ? x_scale[row] : 0.0f;
  float v[kVecs][8];
#pragma unroll
  for (int i = 0; i < kVecs; ++i) {
    const int j = threadIdx.x + i * blockDim.x;
    if (j < nvec) {
      float u[8];
      unpack8(gate[j], v[i]);
      unpack8(up[j], u);
      if (x_scale != nullptr) {
        apply_fp8_scales8(v[i], sx, w_scale + 8 * j);
        apply_fp8_scales8(u, sx, w_scale + inter + 8 * j);
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) v[i][e] = v[i][e] / (1.0f + expf(-v[i][e])) * u[e];
      unpack8(pack8(v[i]), v[i]);  // the bf16 values silu_mul would store
    }
  }
  quantize_row_from_registers<kVecs>(v, nvec, codes + row * inter, scales + row);
}

__global__ void f32_to_bf16_kernel(const float* src, int64_t n, bf16* dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16(src[i]);
}

__global__ void bf16_to_f32_kernel(const bf16* src, int64_t n, float* dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = __bfloat162float(src[i]);
}

unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65536 ? blocks : 65536);  // grid-stride loops cover the rest
}

}  // namespace

namespace {

Status gather_window(const bf16* x, const int32_t* idx, int64_t num_rows, int64_t hidden, bf16* out, int64_t first,
                     int64_t count, cudaStream_t stream) {
  if (num_rows <= 0 || hidden <= 0) return Status::success();
  if (num_rows > 0x7fffffff) return Error{"gather_rows: too many rows: " + std::to_string(num_rows)};
  const bool vec = hidden % 8 == 0 && aligned16(x) && aligned16(out);
  const int threads = threads_for(vec ? hidden / 8 : hidden, 256);
  if (vec) {
    gather_rows_kernel<true><<<static_cast<unsigned>(num_rows), threads, 0, stream>>>(x, idx, hidden, out, first, count);
  } else {
    gather_rows_kernel<false><<<static_cast<unsigned>(num_rows), threads, 0, stream>>>(x, idx, hidden, out, first,
                                                                                       count);
  }
  return cuda_status(cudaGetLastError(), "gather_rows launch");
}

}  // namespace

Status gather_rows(const bf16* x, const int32_t* idx, int64_t num_rows, int64_t hidden, bf16* out,
                   cudaStream_t stream) {
  return gather_window(x, idx, num_rows, hidden, out, 0, INT64_MAX, stream);
}

Status embedding(const bf16* table, const int32_t* ids, int64_t num_tokens, int64_t hidden, bf16* out,
                 cudaStream_t stream, int64_t first_row, int64_t table_rows) {
  // A lookup is a gather of table rows.
  return gather_window(table, ids, num_tokens, hidden, out, first_row, table_rows < 0 ? INT64_MAX : table_rows,
                       stream);
}

namespace {
__global__ void scatter_tokens_kernel(int32_t* dst, const int32_t* pairs, int32_t n, const int32_t* src) {
  for (int32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    dst[pairs[2 * i]] = src[pairs[2 * i + 1]];
}
}  // namespace

Status scatter_tokens(int32_t* dst, const int32_t* pairs, int32_t n, const int32_t* src, cudaStream_t stream) {
  if (n <= 0) return Status::success();
  constexpr int kThreads = 256;
  scatter_tokens_kernel<<<(n + kThreads - 1) / kThreads, kThreads, 0, stream>>>(dst, pairs, n, src);
  return cuda_status(cudaGetLastError(), "scatter_tokens launch");
}

Status silu_mul(const bf16* x, int64_t rows, int64_t inter, bf16* out, cudaStream_t stream) {
  if (rows <= 0 || inter <= 0) return Status::success();
  if (rows > 0x7fffffff) return Error{"silu_mul: too many rows: " + std::to_string(rows)};
  const bool vec = inter % 8 == 0 && aligned16(x) && aligned16(out);
  constexpr int kThreads = 256;
  const int64_t items = vec ? inter / 8 : inter;
  const int64_t chunks = (items + kThreads - 1) / kThreads;
  if (chunks > 65535) return Error{"silu_mul: intermediate size too large: " + std::to_string(inter)};
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(chunks));
  if (vec) {
    silu_mul_kernel<true><<<grid, kThreads, 0, stream>>>(x, inter, out);
  } else {
    silu_mul_kernel<false><<<grid, kThreads, 0, stream>>>(x, inter, out);
  }
  return cuda_status(cudaGetLastError(), "silu_mul launch");
}

bool silu_mul_fp8_supports(int64_t rows, int64_t inter) {
  return rows <= 0x7fffffff && inter > 0 && inter % 8 == 0 && inter / 8 <= 8 * 512;
}

Status silu_mul_fp8(const bf16* x, int64_t rows, int64_t inter, uint8_t* codes, float* scales, cudaStream_t stream,
                    const float* x_scale, const float* w_scale) {
  if (rows <= 0 || inter <= 0) return Status::success();
  if (!silu_mul_fp8_supports(rows, inter) || !aligned16(x) || !aligned16(codes))
    return Error{"silu_mul_fp8: intermediate size " + std::to_string(inter) +
                 " must be a multiple of 8 up to 32768, rows 16-byte aligned"};
  if ((x_scale == nullptr) != (w_scale == nullptr)) return Error{"silu_mul_fp8: x_scale and w_scale come together"};
  const int64_t nvec = inter / 8;
  const unsigned grid = static_cast<unsigned>(rows);
  const int i = static_cast<int>(inter);
  // As few vectors a thread as keep the block <= 512 threads (Llama-3-8B's 14,336: 4 a thread).
  auto threads = [&](int per) { return static_cast<int>(std::max<int64_t>(32, (nvec + per - 1) / per + 31) / 32 * 32); };
  if (nvec <= 512) {
    silu_mul_fp8_kernel<1><<<grid, threads(1), 0, stream>>>(x, i, x_scale, w_scale, codes, scales);
  } else if (nvec <= 1024) {
    silu_mul_fp8_kernel<2><<<grid, threads(2), 0, stream>>>(x, i, x_scale, w_scale, codes, scales);
  } else if (nvec <= 2048) {
    silu_mul_fp8_kernel<4><<<grid, threads(4), 0, stream>>>(x, i, x_scale, w_scale, codes, scales);
  } else {
    silu_mul_fp8_kernel<8><<<grid, threads(8), 0, stream>>>(x, i, x_scale, w_scale, codes, scales);
  }
  return cuda_status(cudaGetLastError(), "silu_mul_fp8 launch");
}

Status f32_to_bf16(const float* src, int64_t n, bf16* dst, cudaStream_t stream) {
  if (n <= 0) return Status::success();
  f32_to_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(src, n, dst);
  return cuda_status(cudaGetLastError(), "f32_to_bf16 launch");
}

Status bf16_to_f32(const bf16* src, int64_t n, float* dst, cudaStream_t stream) {
  if (n <= 0) return Status::success();
  bf16_to_f32_kernel<<<grid_for(n, 256), 256, 0, stream>>>(src, n, dst);
  return cuda_status(cudaGetLastError(), "bf16_to_f32 launch");
}

}  // namespace ember::gpu
