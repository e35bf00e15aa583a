#pragma once
// GpuSampler: the CPU Sampler's semantics (engine/sampler.h) on logits that
// already live on the GPU, so only tokens and logprobs cross PCIe.
//
// Guarantees, relative to Sampler on the same rows and generators:
//   - processed logits (bias, min_tokens, penalties, temperature) are
//     bit-identical, so greedy tokens and top-k / top-p / min-p survivor sets
//     match exactly (top-p up to ~1e-13 of mass at its boundary);
//   - seeded draws use the same uniform (computed here on the host from the
//     row's RequestGenerator, advanced exactly when the CPU would); the token
//     differs only when that uniform lies within ~1e-12 of a CDF boundary
//     (the GPU sums the same probabilities in another order);
//   - logprobs (raw log-softmax) agree to ~1e-6, top-N ids exactly.
// Per call: one async host->device copy (row parameters plus the sparse ids
// the logits processors touch), one kernel, one device->host copy, one stream
// sync. When every row is greedy without processors or logprobs, a single
// argmax kernel runs and only tokens come back.

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "engine/cuda/gpu_sampler_kernels.h"
#include "engine/sampler.h"

namespace ember {

class GpuSampler {
 public:
  // vocab: row length; max_rows: the most rows one call may pass; eos: the
  // model's EOS ids (masked by min_tokens unless ignore_eos).
  static Result<std::unique_ptr<GpuSampler>> create(int32_t vocab, int32_t max_rows, std::vector<int32_t> eos);
  ~GpuSampler();
  GpuSampler(const GpuSampler&) = delete;
  GpuSampler& operator=(const GpuSampler&) = delete;

  // d_logits: [rows.size(), vocab] float32 on the device, modified in place.
  // rows[i].logits is not read (the device row is); prompt_ids, output_ids,
  // params and generator are. Writes one SampledToken per row into out.
  Status sample(float* d_logits, std::span<const SamplerRow> rows, std::vector<SampledToken>& out,
                cudaStream_t stream);

 private:
  GpuSampler(int32_t vocab, int32_t max_rows, std::vector<int32_t> eos);
  Status reserve_upload(size_t bytes);
  // Appends the row's processor entries and sets params.entry_begin/end.
  void add_entries(const SamplerRow& row, GpuSamplerRowParams& params);

  int32_t vocab_;
  int32_t max_rows_;
  std::vector<int32_t> eos_;

  // Pinned staging and its device twin: [params x rows][entries].
  void* h_upload_ = nullptr;
  void* d_upload_ = nullptr;
  size_t upload_capacity_ = 0;
  GpuSamplerRowResult* h_results_ = nullptr;
  GpuSamplerRowResult* d_results_ = nullptr;
  int32_t* h_tokens_ = nullptr;
  int32_t* d_tokens_ = nullptr;

  // Host scratch, reused between calls.
  std::vector<GpuSamplerRowParams> params_;
  std::vector<GpuSamplerEntry> entries_;
  std::vector<int32_t> slot_;     // [vocab] entry index of an id in the current row, -1 when none
  std::vector<int32_t> counts_;   // [entries of the current row] output occurrences
  std::vector<RequestGenerator> next_generators_;
};

}  // namespace ember
