#pragma once
// Megatron-style tensor-parallel shards of a Llama model, rank r of N:
//   q / k / v and gate / up split by output rows (whole heads, whole MLP
//   columns); o_proj and down_proj split by input columns, so each rank's
//   output is a partial sum the decoder all-reduces (LlamaDecoder calls
//   Backend::all_reduce after both); the KV cache follows the KV heads.
//   KV heads fewer than N are replicated (each rank keeps the one its query
//   heads read), as vLLM does. Norms and the embedding are replicated.
//   The LM head is vocab-parallel (each rank computes the logits of ceil(V/N)
//   vocabulary rows, the last ranks fewer, and the decoder all-gathers them:
//   VocabSplit, models/weights.h), or replicated (LmHead::kReplicated).
//   A tied head is a view of the replicated embedding's rows, so it saves
//   compute but no memory; an untied one keeps only its rows.
// A head count or MLP width N does not divide, or a quantized matrix whose
// column slice would cut a block, is an Error saying so.

#include "common/status.h"
#include "models/model_config.h"
#include "models/weights.h"

namespace ember {

// The config a rank computes with: heads, KV heads and MLP width divided.
Result<ModelConfig> shard_config(const ModelConfig& config, int tensor_parallel_size);

// Where rank `rank` of n cuts the whole model's matrices: query rows [q0, q1)
// (of q, and columns of o_proj), KV rows [k0, k1) (of k and v), MLP columns
// [m0, m1) (rows of gate and of up, columns of down). `whole` must shard.
struct ShardRanges {
  int64_t q0 = 0, q1 = 0, k0 = 0, k1 = 0, m0 = 0, m1 = 0;
};
ShardRanges shard_ranges(const ModelConfig& whole, int rank, int tensor_parallel_size);

// Rank `rank`'s slices of one layer of the `whole` model.
Result<LayerWeights> shard_layer(const LayerWeights& layer, const ModelConfig& whole, int rank,
                                 int tensor_parallel_size);

enum class LmHead { kReplicated, kVocabParallel };

// Rank `rank` of n's vocabulary rows: [rank * stride, ...) with
// stride = ceil(V / n), clipped to V (the last ranks may hold fewer, or none).
VocabSplit vocab_split(int64_t vocab_size, int rank, int tensor_parallel_size);
// Rows [split.begin, split.begin + split.rows) of a whole [V, H] table, copied.
WeightMatrix vocab_rows(const WeightMatrix& table, const VocabSplit& split);

// Rank `rank`'s slices of `weights` (copied; `weights` is left as it is).
// kVocabParallel splits the LM head even at n = 1 (a split of one rank: the
// whole TP path, gather included, on one device).
Result<LlamaWeights> shard_weights(const LlamaWeights& weights, int rank, int tensor_parallel_size,
                                   LmHead head = LmHead::kVocabParallel);

}  // namespace ember
