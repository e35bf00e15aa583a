#pragma once
// Sampling on the GPU with the CPU sampler's semantics (engine/sampler.h), the
// kernels that engine/cuda/gpu_sampler.h drives: the plain structs the host
// uploads and reads back, and the two kernel launchers. C++17-clean, because
// .cu files compile as C++17 (CMakeLists.txt).

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ember {

// One id of a row touched by a logits processor. The host folds bias,
// min_tokens, repetition and frequency/presence into these few flags and
// operands; the device applies the rules of kernels/sampling_rules.h to the
// id's logit in their order: bias, mask, repetition, subtract.
struct GpuSamplerEntry {
  int32_t id = 0;
  uint32_t flags = 0;
  float bias = 0.0f;
  float sub = 0.0f;  // frequency * count + presence (sampling::additive_penalty), computed on the host
  float raw = 0.0f;  // written by the device: the raw logit before processing
};

inline constexpr uint32_t kEntryBias = 1u;
inline constexpr uint32_t kEntryMask = 2u;
inline constexpr uint32_t kEntryRepetition = 4u;
inline constexpr uint32_t kEntrySubtract = 8u;
inline constexpr int kGpuSamplerMaxLogprobs = 20;

struct GpuSamplerRowParams {
  int32_t entry_begin = 0;  // [begin, end) into the entry array
  int32_t entry_end = 0;
  int32_t greedy = 0;
  int32_t top_k = -1;       // -1: off
  float inv_temperature = 1.0f;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition = 1.0f;
  int32_t n_logprobs = -1;  // -1: no logprobs; else how many top alternatives (<= 20)
  int32_t draft = -1;       // >= 0: verify this proposed token (engine/sampler.h, SamplerRow::draft_token)
  double uniform = 0.0;     // the draw's uniform in [0, 1), from the row's RequestGenerator
  double uniform2 = 0.0;    // a verify row's second uniform: the draw after a rejection
  int64_t mask_offset = -1; // >= 0: the row's grammar bitmask (structured outputs) at masks + mask_offset words
};

struct GpuSamplerRowResult {
  int32_t token;
  int32_t drew;      // 1 when a random draw happened (0: a non-greedy row had every id masked)
  float logprob;
  int32_t n_top;
  int32_t top_id[kGpuSamplerMaxLogprobs];
  float top_logprob[kGpuSamplerMaxLogprobs];
};

// Greedy fast path: tokens[r] = argmax(logits[r, :]), lowest id on ties.
Status launch_argmax_rows(const float* d_logits, int32_t rows, int32_t vocab, int32_t* d_tokens,
                          cudaStream_t stream);

// The full path, one block per row (see sampler_kernels.cu). d_logits is
// modified in place (processed logits); d_entries' raw fields are written;
// d_tokens[r] gets row r's token (also in d_results[r]).
// d_masks: the rows' grammar bitmasks (GpuSamplerRowParams::mask_offset); ids whose bit is clear are masked
// after the raw logprobs are taken, before the entries (the CPU sampler's order).
Status launch_sample_rows(float* d_logits, int32_t rows, int32_t vocab, const GpuSamplerRowParams* d_params,
                          GpuSamplerEntry* d_entries, const uint32_t* d_masks, GpuSamplerRowResult* d_results,
                          int32_t* d_tokens,
                          cudaStream_t stream);

}  // namespace ember
