#include "kernels/cuda/device_info.h"

#include <cuda_runtime.h>

#include <atomic>

namespace ember {

std::vector<CudaDeviceInfo> cuda_devices() {
  std::vector<CudaDeviceInfo> out;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" error
    return out;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    CudaDeviceInfo info;
    info.index = i;
    info.name = prop.name;
    info.major = prop.major;
    info.minor = prop.minor;
    info.multiprocessors = prop.multiProcessorCount;
    info.total_memory = prop.totalGlobalMem;
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      info.free_memory = free_bytes;
    }
    out.push_back(info);
  }
  return out;
}

namespace {

// An attribute of the current device, fixed for the process lifetime: cached
// per device (queries are cheap but not free, and these run once per layer);
// `fallback` if the query fails.
int cached_attribute(cudaDeviceAttr attr, std::atomic<int> (&cached)[64], int fallback) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return fallback;
  int n = cached[dev].load(std::memory_order_relaxed);
  if (n == 0) {
    if (cudaDeviceGetAttribute(&n, attr, dev) != cudaSuccess || n <= 0) n = fallback;
    cached[dev].store(n, std::memory_order_relaxed);
  }
  return n;
}

}  // namespace

int cuda_sm_count() {
  static std::atomic<int> cached[64] = {};
  return cached_attribute(cudaDevAttrMultiProcessorCount, cached, 132);
}

int64_t cuda_l2_bytes() {
  static std::atomic<int> cached[64] = {};
  return cached_attribute(cudaDevAttrL2CacheSize, cached, 50 << 20);
}

}  // namespace ember
