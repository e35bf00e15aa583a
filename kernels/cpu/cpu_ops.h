#pragma once
// The float32 CPU backend: the reference every GPU kernel is checked against,
// and the embedded default on machines without a GPU. Activations are kF32
// host memory; linear weights and embedding tables may be any DType (GGUF
// blocks are dequantized on the fly, linear_kernels.h). Ops that matter for
// speed (linear, attention) split their work over a persistent thread pool.

#include <vector>

#include "kernels/backend.h"
#include "kernels/communicator.h"
#include "kernels/cpu/thread_pool.h"

namespace ember {

// What the backend trades for speed:
//   kExact: float32 activations in every op (linear_kernels.h, attention.cpp):
//           exact up to summation order, what the Hugging Face parity tests
//           hold to (--dtype float32);
//   kFast:  linear() quantizes activations to 8 bits per 32 for Q8_0 / Q4_0 /
//           Q4_1 weights (linear_int8.h; integer dot products as llama.cpp,
//           logits off by a few % of their range, greedy text parts from the
//           exact mode's at near-ties), and attention runs the AVX2 kernel
//           (attention_avx2.cpp: float32, another summation order). The
//           default of `ember serve` / `generate` on the CPU (--dtype auto).
// Other weight types take the float32 path in both.
enum class CpuPrecision : uint8_t { kExact, kFast };

class CpuBackend final : public Backend {
 public:
  // num_threads <= 0: one per hardware thread.
  explicit CpuBackend(int num_threads = 0, CpuPrecision precision = CpuPrecision::kExact)
      : pool_(num_threads), precision_(precision) {}

  DType activation_dtype() const override { return DType::kF32; }
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr) override;
  void begin_forward(const ForwardInputs& /*in*/) override {}
  void copy(const Tensor& src, Tensor& dst) override;
  void download(const Tensor& src, float* host) override;

  void embedding(const Tensor& table, const ForwardInputs& in, Tensor& out, int64_t first_row = -1) override;
  void rms_norm(const Tensor& x, Tensor* residual, const Tensor& weight, float eps, Tensor& out) override;
  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override;
  void rope_and_cache_write(Tensor& q, Tensor& k, const Tensor& v, const ForwardInputs& in, const RopeConfig& rope,
                            int64_t head_dim, Tensor& k_cache, Tensor& v_cache) override;
  void qkv_rope_and_cache_write(const Tensor& qkv, const ForwardInputs& in, const RopeConfig& rope, int64_t head_dim,
                                Tensor& q, Tensor& k_cache, Tensor& v_cache) override;
  void set_kv_scale(const Tensor& x, int64_t col, int64_t width, int64_t rope_head_dim, float range,
                    Tensor& cache) override;
  void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const ForwardInputs& in,
                       int64_t num_heads, float scale, Tensor& out) override;
  void silu_mul(const Tensor& x, Tensor& out) override;
  void gather_logit_rows(const Tensor& x, const ForwardInputs& in, Tensor& out) override;
  // Sums x over the tensor-parallel ranks (set_communicator); alone, nothing to do.
  void all_reduce(Tensor& x) override {
    if (comm_ != nullptr && comm_->size() > 1) comm_->all_reduce(x, nullptr);
  }
  // This backend's rank in a tensor-parallel group (not owned; null: alone).
  void set_communicator(Communicator* comm) { comm_ = comm; }

  int num_threads() const { return pool_.num_threads(); }
  CpuPrecision precision() const { return precision_; }
  void set_precision(CpuPrecision p) { precision_ = p; }

 private:
  void linear_int8(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y);

  ThreadPool pool_;
  Communicator* comm_ = nullptr;
  CpuPrecision precision_;
  // kFast: the quantized activations of the current linear (Q8Rows), reused across calls.
  std::vector<int8_t> q8_q_;
  std::vector<float> q8_d_, q8_ds_;
  std::vector<int32_t> q8_sum_;
};

}  // namespace ember
