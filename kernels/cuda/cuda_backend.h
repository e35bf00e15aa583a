#pragma once
// The Backend of kernels/backend.h on one CUDA device: bf16 activations, a KV
// cache of bf16 or of FP8 E4M3 codes (--kv-cache-dtype fp8), fp32
// accumulation, every op enqueued on one stream. The step's
// metadata (ForwardInputs) is uploaded once per step by begin_forward() into
// device buffers at fixed addresses, so a CUDA graph captured over a step
// replays on the next step's inputs.
//
// Backend ops return nothing (the decoder is written once for every backend);
// a CUDA failure inside one is recorded and the first one is reported by
// status(), which the runner checks after each step.

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <span>

#include "common/status.h"
#include "kernels/backend.h"
#include "kernels/communicator.h"

namespace ember {

struct CudaBackendLimits {
  int64_t max_tokens = 8192;      // tokens in one step
  int32_t max_seqs = 256;         // sequences in one step
  int64_t max_model_len = 8192;   // context of one sequence
  int32_t block_size = 16;        // KV-cache block
};

class CudaBackend final : public Backend {
 public:
  // Uses the current device (the caller sets it).
  static Result<std::unique_ptr<CudaBackend>> create(const CudaBackendLimits& limits);
  ~CudaBackend() override;

  cudaStream_t stream() const;
  const CudaBackendLimits& limits() const;
  // The first CUDA error any op hit (they are sticky: the device is unusable after one).
  Status status() const;
  // Device memory handed out by allocate() and not yet freed.
  uint64_t allocated_bytes() const;

  // Steps made current after this size attention's split grid for contexts up
  // to `bound` tokens instead of the step's longest: what a CUDA graph captured
  // once must do to serve any later context. 0 restores the default.
  void set_seq_len_bound(int32_t bound);
  // Async scheduling, after begin_forward(): the step's token ids at `index`
  // (into ForwardInputs::token_ids) become src[row] for the matching `row`,
  // read on the device in stream order (src: the previous step's sampled
  // tokens). At most max_seqs entries.
  void patch_token_ids(std::span<const int32_t> index, std::span<const int32_t> row, const int32_t* src);
  // Autotune the cuBLASLt GEMMs of M <= max_m met from now on (gpu::Gemm::
  // set_autotune_max_m); 0 stops. The runner tunes its graph buckets.
  void set_gemm_autotune(int max_m);
  // From now on, time every op outside graph capture with CUDA events and
  // print the totals per op and shape class to stderr at destruction
  // (EMBER_CUDA_PROFILE=1 in the runner).
  void enable_op_profile();
  // Computes and uploads rope frequencies ahead of time (rope_and_cache_write
  // does it on first use, which must not happen during graph capture).
  Status prepare_rope(const RopeConfig& rope, int64_t head_dim);

  DType activation_dtype() const override { return DType::kBF16; }
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr) override;
  void begin_forward(const ForwardInputs& in) override;
  void copy(const Tensor& src, Tensor& dst) override;
  void copy_2d(const Tensor& src, int64_t src_stride, Tensor& dst, int64_t dst_stride) override;
  void download(const Tensor& src, float* host) override;

  void embedding(const Tensor& table, const ForwardInputs& in, Tensor& out, int64_t first_row = -1) override;
  void rms_norm(const Tensor& x, Tensor* residual, const Tensor& weight, float eps, Tensor& out) override;
  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override;
  void rope_and_cache_write(Tensor& q, Tensor& k, const Tensor& v, const ForwardInputs& in, const RopeConfig& rope,
                            int64_t head_dim, Tensor& k_cache, Tensor& v_cache) override;
  void qkv_rope_and_cache_write(const Tensor& qkv, const ForwardInputs& in, const RopeConfig& rope,
                                int64_t head_dim, Tensor& q, Tensor& k_cache, Tensor& v_cache) override;
  void set_kv_scale(const Tensor& x, int64_t col, int64_t width, int64_t rope_head_dim, float range,
                    Tensor& cache) override;
  void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const ForwardInputs& in,
                       int64_t num_heads, float scale, Tensor& out) override;
  void silu_mul(const Tensor& x, Tensor& out) override;
  bool takes_fp8_activations(const Tensor& w, int64_t rows) override;
  void rms_norm_fp8(const Tensor& x, Tensor* residual, const Tensor& weight, float eps, Tensor& out) override;
  void silu_mul_fp8(const Tensor& x, Tensor& out) override;
  void linear_silu_mul_fp8(const Tensor& x, const Tensor& w_gate_up, Tensor& gate_up, Tensor& act) override;
  bool linear_scaled_by_next_op(const Tensor& x, const Tensor& w, Tensor& y, ScalesReader reader) override;
  bool linear_rope_and_cache_write(const Tensor& x, const Tensor& w_qkv, const ForwardInputs& in,
                                   const RopeConfig& rope, int64_t head_dim, Tensor& q, Tensor& k_cache,
                                   Tensor& v_cache) override;
  bool linear_silu_mul(const Tensor& x, const Tensor& w_gate_up, Tensor& act) override;
  bool linear_add_for_next_norm(const Tensor& x, const Tensor& w, Tensor& residual, const Tensor& norm_weight,
                                float eps, const Tensor& next, Tensor& out) override;
  void gather_logit_rows(const Tensor& x, const ForwardInputs& in, Tensor& out) override;
  // Sums x over the tensor-parallel ranks through this rank's communicator
  // (NCCL; set_communicator), on this backend's stream: capturable in graphs.
  void all_reduce(Tensor& x) override;
  void set_communicator(Communicator* comm) { comm_ = comm; }

 private:
  struct Impl;
  explicit CudaBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  Communicator* comm_ = nullptr;  // not owned; null: one device
};

}  // namespace ember
