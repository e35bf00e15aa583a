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
// the logits processors touch), one kernel, one device->host copy. When every
// row is greedy without processors or logprobs, a single argmax kernel runs
// and only tokens come back.
//
// Async scheduling: launch() enqueues a sampling and returns; collect() waits
// (on an event, not the whole stream) for the oldest one. Two samplings may be
// outstanding, each with its own pinned staging, so the host prepares step
// N+1 while step N runs. Generators advance in launch(): one draw per
// non-greedy row, whatever the row's logits (the CPU sampler's rule too).

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "engine/sampler.h"
#include "kernels/cuda/sampler_kernels.h"

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
  // pending_outputs, params and generator are, during the call only. Enqueues
  // the sampling on `stream` and returns; at most kSlots launches may be
  // outstanding (not collected).
  Status launch(float* d_logits, std::span<const SamplerRow> rows, cudaStream_t stream);
  // The newest launch's tokens on the device ([rows] int32), valid in stream
  // order until the launch after next: the next step reads its inputs here.
  const int32_t* device_tokens() const;
  // Waits for the oldest outstanding launch; one SampledToken per row into out.
  Status collect(std::vector<SampledToken>& out);
  // launch() then collect().
  Status sample(float* d_logits, std::span<const SamplerRow> rows, std::vector<SampledToken>& out,
                cudaStream_t stream);
  int outstanding() const { return outstanding_; }

  static constexpr int kSlots = 2;

 private:
  // One launch's pinned staging, device twins and what collect() needs.
  struct Slot {
    void* h_upload = nullptr;  // [params x rows][entries]
    void* d_upload = nullptr;
    size_t upload_capacity = 0;
    GpuSamplerRowResult* h_results = nullptr;
    GpuSamplerRowResult* d_results = nullptr;
    int32_t* h_tokens = nullptr;
    int32_t* d_tokens = nullptr;
    cudaEvent_t done = nullptr;  // after the device->host copy
    int32_t rows = 0;
    bool fast = false;
    std::vector<int32_t> n_logprobs;  // per row, -1: none
  };

  GpuSampler(int32_t vocab, int32_t max_rows, std::vector<int32_t> eos);
  Status reserve_upload(Slot& slot, size_t bytes, cudaStream_t stream);
  // Appends the row's processor entries and sets params.entry_begin/end.
  void add_entries(const SamplerRow& row, GpuSamplerRowParams& params);
  std::vector<uint32_t> masks_;  // this launch's grammar bitmasks, back to back (params.mask_offset)

  int32_t vocab_;
  int32_t max_rows_;
  std::vector<int32_t> eos_;
  Slot slots_[kSlots];
  int next_ = 0;         // the slot the next launch uses
  int outstanding_ = 0;  // launched, not collected: slots next_ - outstanding_ ...

  // Host scratch, reused between calls.
  std::vector<GpuSamplerRowParams> params_;
  std::vector<GpuSamplerEntry> entries_;
  std::vector<int32_t> slot_;     // [vocab] entry index of an id in the current row, -1 when none
  std::vector<int32_t> counts_;   // [entries of the current row] output occurrences
};

}  // namespace ember
