#pragma once
// Kernels that probe programmatic dependent launch (kernels/cuda/pdl.cuh) for
// the GPU tests: a writer that lets the next launch start before it writes,
// and a reader that starts early and does not wait.

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace ember::gputest {

// dst[0, n) = src[0, n), written after `ns` nanoseconds, by a kernel that
// triggers its dependents first thing: the next launch_pdl kernel may start
// while it sleeps, and sees dst's new values only if it waits (pdl_wait).
// times[0] (device, optional): the GPU's clock in ns when it writes.
cudaError_t late_copy(const __nv_bfloat16* src, __nv_bfloat16* dst, int64_t n, int64_t ns, cudaStream_t stream,
                      uint64_t* times = nullptr);

// dst[0, n) = src[0, n) at once, launched as a programmatic dependent that
// copies before it waits: what a kernel with its pdl_wait misplaced would
// read. times[1] (device, optional): the clock when it starts.
cudaError_t copy_before_waiting(const __nv_bfloat16* src, __nv_bfloat16* dst, int64_t n, cudaStream_t stream,
                                uint64_t* times = nullptr);

}  // namespace ember::gputest
