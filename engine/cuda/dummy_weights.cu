// make_dummy_weights' generator (models/weights_dummy.cpp) on the device: the
// same counter-based hash and Box-Muller transform in double precision, so a
// dummy model on the GPU has the CPU's weights rounded to bf16.
#include <cuda_bf16.h>

#include <algorithm>

#include "engine/cuda/dummy_fill.h"
#include "kernels/cuda/cuda_check.h"

namespace ember {
namespace {

// Host (the per-tensor base) and device (every element) use the same mix.
__host__ __device__ uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

__device__ double unit(uint64_t bits) { return (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53; }

// out[i] for i < rows * cols: the stream's element at (row0 + i / cols) * full_cols + col0 + i % cols.
__global__ void fill_normal_kernel(__nv_bfloat16* out, int64_t rows, int64_t cols, int64_t full_cols, int64_t row0,
                                   int64_t col0, double std, uint64_t base) {
  constexpr double kTwoPi = 6.283185307179586;
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t e = static_cast<uint64_t>((row0 + i / cols) * full_cols + col0 + i % cols);
    const uint64_t a = mix64(base + 2 * e);
    const uint64_t b = mix64(base + 2 * e + 1);
    // The host rounds the double to float, then the loader rounds to bf16: do the same.
    const float v = static_cast<float>(std * sqrt(-2.0 * log(unit(a))) * cos(kTwoPi * unit(b)));
    out[i] = __float2bfloat16_rn(v);
  }
}

}  // namespace

Status fill_dummy_bf16_slice(void* dst, int64_t rows, int64_t cols, int64_t full_cols, int64_t row0, int64_t col0,
                             double std, uint64_t seed, uint64_t tensor, cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n <= 0) return Status::success();
  const uint64_t base = mix64(seed ^ mix64(tensor));
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65536);
  fill_normal_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      static_cast<__nv_bfloat16*>(dst), rows, cols, full_cols, row0, col0, std, base);
  EMBER_CUDA_TRY(cudaGetLastError());
  return Status::success();
}

Status fill_dummy_bf16(void* dst, int64_t n, double std, uint64_t seed, uint64_t tensor, cudaStream_t stream) {
  return fill_dummy_bf16_slice(dst, 1, n, n, 0, 0, std, seed, tensor, stream);
}

}  // namespace ember
