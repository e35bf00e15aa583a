#pragma once
// The model runner on one CUDA GPU (see engine/model_runner.h for the
// interface). Weights are uploaded as bf16, the paged KV cache takes what
// --gpu-memory-utilization leaves after the weights and a profiled forward,
// and decode-only steps replay CUDA graphs captured per batch-size bucket.

#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "engine/model_runner.h"
#include "engine/parallel/shard.h"
#include "kernels/communicator.h"
#include "models/weights.h"

namespace ember {

struct CudaRunnerOptions {
  int device = 0;
  int32_t block_size = 16;
  int64_t max_num_batched_tokens = 8192;
  int32_t max_num_seqs = 256;
  int64_t max_model_len = 0;            // 0: the config's
  double gpu_memory_utilization = 0.9;  // fraction of total device memory ember may use
  int64_t num_gpu_blocks_override = 0;  // > 0: exactly this many KV blocks
  bool enforce_eager = false;           // no CUDA graphs
  // --quantization fp8: the layers' matrices FP8 E4M3 (DeviceWeights::quantize_fp8)
  bool quantize_fp8 = false;
  // --kv-cache-dtype fp8: the KV cache E4M3 codes (one byte an element), each layer's K and V scaled by its
  // LayerWeights::k_scale / v_scale (kernels/backend.h); else bf16.
  bool kv_cache_fp8 = false;
  // --calculate-kv-scales: with kv_cache_fp8, the first served step sets the scales from its own K and V
  // (LlamaDecoder::calculate_kv_scales_next_forward; that step runs eager).
  bool calculate_kv_scales = false;
  uint64_t dummy_seed = 0;               // for make_cuda_runner_dummy
  std::vector<int32_t> eos_token_ids;    // the model's EOS ids, for the GPU sampler's min_tokens
  int32_t max_logits_per_seq = 1;        // StepSequence::num_logits at most (1 + speculative tokens)
  Communicator* communicator = nullptr;  // a tensor-parallel rank's (not owned); null: the whole model
  int tensor_parallel_rank = 0;          // make_cuda_model_runner_dummy: this rank's slice of the weights
  int tensor_parallel_size = 1;
  LmHead lm_head = LmHead::kVocabParallel;  // tensor parallelism: how the ranks share the LM head
  // tensor parallelism: a step's NCCL collectives, before the watchdog ends the process
  double collective_timeout_s = 300;
};

// Uploads host weights (any dtype: quantized GGUF blocks are expanded to bf16).
Result<std::unique_ptr<ModelRunner>> make_cuda_model_runner(const LlamaWeights& weights,
                                                            const CudaRunnerOptions& options);

// Random N(0, 0.02^2) weights generated directly on the device (bit-identical
// to make_dummy_weights' values rounded to bf16), for shapes whose float32 host
// copy would not fit (Llama-3-8B).
Result<std::unique_ptr<ModelRunner>> make_cuda_model_runner_dummy(const ModelConfig& config,
                                                                  const CudaRunnerOptions& options);

}  // namespace ember
