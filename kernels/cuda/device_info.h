#pragma once
// What the CUDA runtime reports about the GPUs of this machine. No GPU (or no
// driver) is not an error: it is an empty list, and ember runs on the CPU.

#include <cstdint>
#include <string>
#include <vector>

namespace ember {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;  // compute capability
  int multiprocessors = 0;
  uint64_t total_memory = 0;
  uint64_t free_memory = 0;
};

std::vector<CudaDeviceInfo> cuda_devices();

// The multiprocessor count of the current device, queried once per device
// (kernels size their grids by it on every launch); 132 if the query fails.
int cuda_sm_count();

}  // namespace ember
