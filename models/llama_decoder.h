#pragma once
// The Llama-family decoder (Llama, Mistral, Qwen2, SmolLM2), written once
// against the Backend op interface. One forward() runs a flat varlen batch
// (any mix of prefill chunks and decodes, see ForwardInputs) over a paged KV
// cache and returns logits only for the rows in logits_indices.

#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "models/weights.h"

namespace ember {

// Paged K and V caches, per layer [num_blocks, block_size, num_kv_heads, head_dim]
// float32. Slot s of a layer is block s / block_size, offset s % block_size.
struct KvCache {
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  std::vector<std::vector<float>> k, v;  // [layer]

  static KvCache allocate(const ModelConfig& config, int64_t num_blocks, int64_t block_size);
  Tensor k_tensor(size_t layer) { return view(k[layer]); }
  Tensor v_tensor(size_t layer) { return view(v[layer]); }

 private:
  Tensor view(std::vector<float>& data) const {
    return Tensor::f32(data.data(), {num_blocks, block_size, num_kv_heads, head_dim});
  }
};

RopeConfig rope_config_of(const ModelConfig& config);

class LlamaDecoder {
 public:
  // `weights` and `backend` must outlive the decoder.
  LlamaDecoder(const LlamaWeights& weights, Backend& backend);

  // Writes in.logits_indices.size() rows of vocab_size logits to `logits`.
  // Inputs are trusted (the scheduler validated them): token ids < vocab,
  // slots inside the cache, block tables covering seq_lens.
  void forward(const ForwardInputs& in, KvCache& cache, std::vector<float>& logits);

  const ModelConfig& config() const { return w_.config; }

 private:
  void ensure_scratch(int64_t tokens);

  const LlamaWeights& w_;
  Backend& backend_;
  RopeConfig rope_;
  // Activations, reused between calls; sized for the largest batch seen.
  std::vector<float> hidden_, residual_, normed_, q_, k_, v_, attn_, gate_up_, act_, gathered_;
};

}  // namespace ember
