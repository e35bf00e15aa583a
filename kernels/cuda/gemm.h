#pragma once
// The linear layers on the GPU:  y[M, N] = x[M, K] * w[N, K]^T (+ bias[N]).
// x and w bf16, row-major (w in HF's [out, in] layout), float32 accumulation,
// y bf16 or float32 (the LM head writes float32 logits), bias float32.
//
// Two paths, picked per call by M:
//   M <= kGemvMaxM  the bandwidth-bound gemv kernel (gemv.cu): decode at small
//                   batch reads every weight once at ~copy speed, where
//                   cuBLAS's tiles waste most of the memory bandwidth.
//   otherwise       cuBLASLt (bf16 in, fp32 compute), algorithm from its
//                   heuristic, cached per shape; bias in the epilogue.
// The threshold is justified in kernels/cuda/NOTES-gemm.md.
//
// Graph capture: linear() only enqueues work (no allocation, sync or timing;
// first use of a shape queries the heuristic on the host, which is capture-safe).
// One Gemm per stream at a time: the cuBLASLt workspace is not shared safely
// between concurrent streams.

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace ember::gpu {

class Gemm {
 public:
  static constexpr int kGemvMaxM = 8;
  // Gemm::linear sends M <= this to the gemv kernel. Measured on the H100
  // (bench/results/2026-11-23-h100-kernels.json): gemv beats cuBLASLt up to
  // M = 4 on every Llama-3-8B decode shape, and loses 10-25% at M = 8.
  static constexpr int kGemvDispatchMaxM = 4;
  // ... except that 2 <= M <= 16 on a matrix of at most 64 MB (Llama-3-8B's
  // o_proj and qkv) goes to the tensor-core gemv_mma, variant 1: measured on
  // the H200 (bench/results/2026-12-05-h200-gemv-mma-structured.json) it takes
  // 11.6-13.8 us on o_proj and 16.3-17.2 on qkv at every such M, where the FMA
  // gemv takes 12.4-21.2 (M 2-4) and cuBLASLt 15.4-19.5 (M 5-16); on the
  // larger matrices cuBLASLt streams better and keeps them. (M = 1 stays on
  // the FMA gemv: it is faster there on every shape.) kernels/cuda/NOTES-gemm.md.
  static constexpr int kGemvMmaDispatchMaxM = 16;
  static constexpr int64_t kGemvMmaDispatchMaxBytes = int64_t{64} << 20;
  static constexpr int kGemvMmaDispatchVariant = 1;

  // Creates the cuBLASLt handle and allocates its workspace.
  static Result<std::unique_ptr<Gemm>> create(size_t workspace_bytes = size_t{32} << 20);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // y = x w^T (+ bias). bias may be null; y is float* when y_f32, else bf16*.
  Status linear(const __nv_bfloat16* x, const __nv_bfloat16* w, const float* bias, void* y, bool y_f32, int m, int n,
                int k, cudaStream_t stream);

  // cuBLASLt plans of M <= max_m are autotuned: on a shape's first call
  // outside graph capture, every algorithm the heuristic offers (up to 8) is
  // timed on the call's own buffers and the fastest kept (the call
  // synchronizes the stream once). 0 (the default) keeps the heuristic's first.
  void set_autotune_max_m(int max_m);

  // FP8 weights (kernels/cuda/fp8.h: E4M3 codes [N, K], a float32 scale per
  // output row): small M through gemv_fp8 or the tensor-core gemv_mma_fp8
  // (bf16 x, half the bytes of bf16; thresholds in fp8.h), larger M through
  // cuBLASLt's FP8 GEMM over x quantized per token (dynamic scales, vLLM's
  // "fp8"). k % 16 == 0. The scratch for x's codes grows on a step larger
  // than any before, outside graph capture.
  Status linear_fp8(const __nv_bfloat16* x, const uint8_t* w, const float* w_scale, const float* bias, void* y,
                    bool y_f32, int m, int n, int k, cudaStream_t stream);
  Status linear_fp8_cublaslt(const __nv_bfloat16* x, const uint8_t* w, const float* w_scale, const float* bias,
                             void* y, bool y_f32, int m, int n, int k, cudaStream_t stream);
  // The cuBLASLt path over x already quantized per row (codes [M, K] and one
  // scale a row, quantize_rows_fp8's rule: what rms_norm_fp8 and silu_mul_fp8
  // write), y as linear_fp8's.
  Status linear_fp8_quantized(const uint8_t* xq, const float* x_scale, const uint8_t* w, const float* w_scale,
                              const float* bias, void* y, bool y_f32, int m, int n, int k, cudaStream_t stream);
  // linear_fp8_quantized's GEMM without its scales, where this cuBLASLt would
  // apply them in a separate pass over y (no outer-vector scales; bf16 y): y
  // gets the raw product of the codes, and the caller applies x_scale[row] and
  // w_scale[col] in its next op, bit for bit as scale_fp8_output_inplace would
  // (silu_mul_fp8 with scales, ops.h), saving that pass. False, having done
  // nothing, where the shape takes another path or the GEMM applies the scales.
  Result<bool> linear_fp8_quantized_unscaled(const uint8_t* xq, const uint8_t* w, __nv_bfloat16* y, int m, int n, int k,
                                             cudaStream_t stream);
  // The same over bf16 x, quantized per row into this Gemm's scratch (as
  // linear_fp8 does): *x_scale then points at x's row scales there, valid
  // until the next linear_fp8 / linear_fp8_unscaled over bf16 x.
  Result<bool> linear_fp8_unscaled(const __nv_bfloat16* x, const uint8_t* w, __nv_bfloat16* y, int m, int n, int k,
                                   cudaStream_t stream, const float** x_scale);
  // True when linear_fp8 at this shape quantizes x (takes cuBLASLt's path),
  // so that x may come quantized (linear_fp8_quantized) from the op before.
  bool fp8_quantizes_x(int m, int n, int k) const;
  // True when linear_fp8 at this shape takes the CUDA-core gemv_fp8 (where
  // fp8.h's gemv_fp8_* epilogue forms give its bits and the next op's).
  bool fp8_uses_gemv(int m, int n, int k) const;
  // cuBLASLt's FP8 fast accumulation (off by default: gemm.cu says why;
  // EMBER_FP8_FAST_ACCUM=1 at create turns it on). Changing it drops the FP8
  // plans: call it outside graph capture.
  void set_fp8_fast_accum(bool on);
  // Which kernel linear_fp8 takes for this shape, in words (benchmarks record it).
  std::string fp8_path(int m, int n, int k);

  // The cuBLASLt path whatever M (benchmarks and tests compare the two).
  Status linear_cublaslt(const __nv_bfloat16* x, const __nv_bfloat16* w, const float* bias, void* y, bool y_f32, int m,
                         int n, int k, cudaStream_t stream);

 private:
  struct Impl;
  explicit Gemm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The small-M kernel alone: 1 <= m <= Gemm::kGemvMaxM, k % 8 == 0, x and w
// 16-byte aligned (anything else is an Error; Gemm::linear falls back to
// cuBLASLt for those).
Status gemv(const __nv_bfloat16* x, const __nv_bfloat16* w, const float* bias, void* y, bool y_f32, int m, int n, int k,
            cudaStream_t stream);

// The tuning grid for M <= 4 (M > 4 has one form): rows a warp R and
// 16-byte loads a lane per group U; 0: R 2 U 4, 1: R 1 U 8, 2: R 2 U 8,
// 3: R 1 U 4. gemm_bench times them all; gemv() runs kGemvDefaultVariant.
// pdl: launched as a programmatic dependent (sm_90+): the first weights load
// while the previous kernel finishes (pdl.cuh, pdl_wait).
inline constexpr int kGemvVariants = 4;
inline constexpr int kGemvDefaultVariant = 0;
Status gemv_variant(const __nv_bfloat16* x, const __nv_bfloat16* w, const float* bias, void* y, bool y_f32, int m,
                    int n, int k, int variant, bool pdl, cudaStream_t stream);

// True when gemv() accepts these arguments.
bool gemv_supports(const __nv_bfloat16* x, const __nv_bfloat16* w, int m, int k);

// Whether the batch-1 GEMV launches as a programmatic dependent on this device
// (pdl.cuh kernel_has_pdl: sm_90+ and its code compiled for sm_90+).
bool gemv_launches_as_dependent();

// The small-M kernel on tensor cores (gemv_mma.cu): 1 <= m <= kGemvMmaMaxM,
// k % 8 == 0, x and w 16-byte aligned. Its cost is the weight bytes at any
// such M, and a row's outputs do not depend on M (a speculative verify chunk
// gets the bits its rows would get in decode steps).
// Variants up to M = 16 (gemm_bench times them; larger M has one form): 0: 32
// rows a block, ~2048 warps in flight; 1: 16 rows a block; 2: ~1024 warps;
// 3: ~4096 warps.
inline constexpr int kGemvMmaMaxM = 64;
inline constexpr int kGemvMmaVariants = 4;
inline constexpr int kGemvMmaDefaultVariant = 0;
Status gemv_mma(const __nv_bfloat16* x, const __nv_bfloat16* w, const float* bias, void* y, bool y_f32, int m, int n,
                int k, cudaStream_t stream);
Status gemv_mma_variant(const __nv_bfloat16* x, const __nv_bfloat16* w, const float* bias, void* y, bool y_f32, int m,
                        int n, int k, int variant, bool pdl, cudaStream_t stream);
bool gemv_mma_supports(const __nv_bfloat16* x, const __nv_bfloat16* w, int m, int k);

}  // namespace ember::gpu
