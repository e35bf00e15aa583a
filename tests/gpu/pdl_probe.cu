#include "tests/gpu/pdl_probe.h"

#include "kernels/cuda/pdl.cuh"

namespace ember::gputest {
namespace {

__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void late_copy_kernel(const __nv_bfloat16* src, __nv_bfloat16* dst, int64_t n, int64_t ns,
                                 uint64_t* times) {
  gpu::pdl_launch_dependents();
  const uint64_t start = global_ns();
  while (global_ns() - start < static_cast<uint64_t>(ns)) __nanosleep(1000);
  if (times != nullptr && threadIdx.x == 0) times[0] = global_ns();
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

__global__ void copy_before_waiting_kernel(const __nv_bfloat16* src, __nv_bfloat16* dst, int64_t n,
                                           uint64_t* times) {
  if (times != nullptr && threadIdx.x == 0) times[1] = global_ns();
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
  gpu::pdl_wait();
}

}  // namespace

cudaError_t late_copy(const __nv_bfloat16* src, __nv_bfloat16* dst, int64_t n, int64_t ns, cudaStream_t stream,
                      uint64_t* times) {
  late_copy_kernel<<<1, 256, 0, stream>>>(src, dst, n, ns, times);
  return cudaGetLastError();
}

cudaError_t copy_before_waiting(const __nv_bfloat16* src, __nv_bfloat16* dst, int64_t n, cudaStream_t stream,
                                uint64_t* times) {
  return gpu::launch_pdl(true, copy_before_waiting_kernel, dim3(1), dim3(256), 0, stream, src, dst, n, times);
}

}  // namespace ember::gputest
