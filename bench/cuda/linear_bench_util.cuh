#pragma once
// Helpers the linear-layer benchmarks share (gemm_bench.cu, fp8_bench.cu):
// CUDA error checks that end the run, random bf16 buffers filled on the
// device, and the median time of a call over timed batches.

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "common/status.h"

namespace ember::bench {

using bf16 = __nv_bfloat16;

#define BENCH_CHECK(expr)                                                      \
  do {                                                                         \
    cudaError_t e_ = (expr);                                                   \
    if (e_ != cudaSuccess) {                                                   \
      std::fprintf(stderr, "bench: %s: %s\n", #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                            \
    }                                                                          \
  } while (0)

// Uniform values in [-scale, scale) from a hash of the index: fills GBs fast.
inline __global__ void fill_random(bf16* p, size_t n, uint32_t seed, float scale) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed ^ static_cast<uint32_t>(i >> 32) * 40503u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    p[i] = __float2bfloat16((static_cast<float>(h & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f) * scale);
  }
}

inline bf16* alloc_random(size_t n, uint32_t seed, float scale) {
  bf16* p = nullptr;
  BENCH_CHECK(cudaMalloc(&p, n * sizeof(bf16)));
  fill_random<<<4096, 256>>>(p, n, seed, scale);
  BENCH_CHECK(cudaGetLastError());
  return p;
}

// Median time (us) of one call: `reps` calls per timed batch, `batches` batches.
inline double median_us(const std::function<void(int)>& call, int reps, int batches = 15) {
  cudaEvent_t a, b;
  BENCH_CHECK(cudaEventCreate(&a));
  BENCH_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < reps; ++i) call(i);  // warm-up (first use builds cuBLASLt plans)
  BENCH_CHECK(cudaDeviceSynchronize());
  std::vector<double> t;
  for (int bi = 0; bi < batches; ++bi) {
    BENCH_CHECK(cudaEventRecord(a));
    for (int i = 0; i < reps; ++i) call(bi * reps + i);
    BENCH_CHECK(cudaEventRecord(b));
    BENCH_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    BENCH_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(1000.0 * ms / reps);
  }
  BENCH_CHECK(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

inline void require_ok(const ember::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "bench: %s\n", s.error().message.c_str());
    std::exit(1);
  }
}

}  // namespace ember::bench
