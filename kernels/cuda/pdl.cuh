#pragma once
// Programmatic dependent launch (sm_90+; no-ops before). The decode chain's
// kernels launch this way: the GEMVs (they load their first weights before
// they wait; gemv.cu, fp8.cu, gemv_mma.cu), the norms, the decode attention
// and its merge, and the FP8 row quantizer and scale pass. The CUDA-core
// GEMVs (bf16 and FP8, batch-1 decode's), the norms and the decode attention
// also trigger the next launch first thing, so the next kernel's blocks take
// the slots their grid frees in its tail and wait there: GEMV -> norm -> GEMV
// has no launch gap, and the second GEMV's first weights stream in during the
// first one's tail (measured on the H100, 2026-12-06: batch-1 decode 294.7 ->
// 305.8 tok/s in FP8 and 180.4 -> 181.8 in bf16; a decode step's 128 FP8
// linears in one graph 2,553 -> 2,454 us). Before that, the norms and the
// attention were plain launches, and launching them as dependents had measured
// no gain: the GEMVs before them did not trigger early. The tensor-core GEMV
// (gemv_mma.cu, 3-16 rows) does not trigger early (not measured). A kernel
// launched with launch_pdl may start while the kernel before it in the stream
// is running:
//   - pdl_wait() blocks until that kernel has finished and its writes are
//     visible, so only reads of constant data (weights) may come before it,
//     and every kernel launched with launch_pdl must call it before touching
//     anything an earlier kernel wrote (or exit without touching it). Data
//     that was final before the step began only through L2 (ld.global.cg):
//     decode attention reading seq_lens and the block table (copied in
//     before the step) with plain loads ahead of its wait gave wrong,
//     run-to-run varying FP8 decodes in graphs (H100, 2026-12-06), as if it
//     had read the previous step's values, e.g. from a line its SM cached
//     then, which the wait's acquire would have dropped (one possible cause,
//     not established; kernels/cuda/NOTES-gemm.md). Its blocks now read
//     seq_lens (and query_start_loc) that way to leave early when they have
//     no keys, and (PagedAttentionArgs::decode_early_kv) their warps the
//     block table and their first tile's keys, all but the step's new one
//     (which the kernel before writes);
//   - pdl_launch_dependents() lets the next launch_pdl kernel start early (its
//     blocks become resident and wait); it is a scheduling hint only. The
//     next kernel starts once every block of this grid has triggered or
//     exited, so its blocks never take a slot this grid still needs.
// In a chain of such kernels each waits for its predecessor, which waited for
// its own, so every earlier write is visible. CUDA graphs keep the edges.
// Internal to kernels/cuda: include only from .cu files.

#include <cuda_runtime.h>

#include <mutex>
#include <unordered_map>
#include <utility>

namespace ember::gpu {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether `kernel` may launch as a programmatic dependent: the device runs
// them (sm_90+) and the kernel's code holds the PDL instructions, i.e. it was
// compiled for a PTX target of 9.0 or later. A newer GPU running the build's
// compute_80 PTX (JIT-compiled) has no griddepcontrol.wait in it: launched as
// a dependent, it could start before a library kernel that triggers early had
// finished. Asked once per kernel (cudaFuncGetAttributes' ptxVersion), on
// the device current at the first ask: one process drives GPUs of one kind.
inline bool kernel_has_pdl(const void* kernel) {
  static std::mutex mu;
  static std::unordered_map<const void*, bool> known;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = known.find(kernel); it != known.end()) return it->second;
  int dev = 0, major = 0;
  bool yes = false;
  if (cudaGetDevice(&dev) == cudaSuccess &&
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9) {
    cudaFuncAttributes attr = {};
    if (cudaFuncGetAttributes(&attr, kernel) == cudaSuccess) {
      yes = attr.ptxVersion >= 90;
    } else {
      cudaGetLastError();  // (this query's own error: the answer is only "no")
    }
  }
  known.emplace(kernel, yes);
  return yes;
}

// kernel<<<grid, block, smem, stream>>>(args...), as a programmatic dependent
// when `pdl` and kernel_has_pdl(kernel).
template <typename... Params, typename... Args>
cudaError_t launch_pdl(bool pdl, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                       Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl && kernel_has_pdl(reinterpret_cast<const void*>(kernel)) ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace ember::gpu
