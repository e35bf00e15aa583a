#pragma once
// Megatron-style tensor-parallel shards of a Llama model, rank r of N:
//   q / k / v and gate / up split by output rows (whole heads, whole MLP
//   columns); o_proj and down_proj split by input columns, so each rank's
//   output is a partial sum the decoder all-reduces (LlamaDecoder calls
//   Backend::all_reduce after both); the KV cache follows the KV heads.
//   KV heads fewer than N are replicated (each rank keeps the one its query
//   heads read), as vLLM does. Embedding, norms and LM head are replicated.
// A head count or MLP width N does not divide, or a quantized matrix whose
// column slice would cut a block, is an Error saying so.

#include "common/status.h"
#include "models/model_config.h"
#include "models/weights.h"

namespace ember {

// The config a rank computes with: heads, KV heads and MLP width divided.
Result<ModelConfig> shard_config(const ModelConfig& config, int tensor_parallel_size);

// Rank `rank`'s slices of `weights` (copied; `weights` is left as it is).
Result<LlamaWeights> shard_weights(const LlamaWeights& weights, int rank, int tensor_parallel_size);

}  // namespace ember
