#pragma once
// The weights of a Llama-family decoder as float32 host arrays, in Hugging
// Face layout ([out, in] row-major, rotary pairs (i, i + D/2)), loaded from a
// GGUF file. Quantized tensors are dequantized once at load: the CPU backend
// computes in float32 (SmolLM2-135M is ~540 MB this way).

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "models/gguf.h"
#include "models/hf_model_dir.h"
#include "models/model_config.h"

namespace ember {

struct LayerWeights {
  std::vector<float> attn_norm;   // [H]
  std::vector<float> wq, wk, wv;  // [Hq*D, H], [Hkv*D, H], [Hkv*D, H]
  std::vector<float> bq, bk, bv;  // empty unless config.attention_bias
  std::vector<float> wo;          // [H, Hq*D]
  std::vector<float> ffn_norm;    // [H]
  std::vector<float> w_gate_up;   // [2I, H]: gate rows, then up rows (silu_mul's fused layout)
  std::vector<float> w_down;      // [H, I]
};

struct LlamaWeights {
  ModelConfig config;
  std::vector<float> embed;  // [V, H]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [H]
  std::vector<float> lm_head;     // [V, H]; empty when tied to embed
  const std::vector<float>& head() const { return lm_head.empty() ? embed : lm_head; }
};

// Every tensor's presence, type and shape is checked against `config`; an
// error names the file and the tensor. For llama/mistral GGUFs the Q and K
// rows are un-permuted (llama.cpp's converter interleaves each head's rotary
// halves for GGML's adjacent-pair rope; our rope pairs (i, i + D/2) like HF).
Result<LlamaWeights> load_llama_weights(const GgufFile& gguf, const ModelConfig& config);

// From a Hugging Face directory (weights_safetensors.cpp): F32, F16 and BF16
// tensors are upcast to float32; HF's layout is ours, so nothing is permuted.
// Every expected tensor's presence, dtype and shape is checked, and a tensor
// ember would not use (an o_proj or MLP bias, a q/k/v bias the config does not
// announce) is an error rather than silently dropped. Errors name the shard
// file and the tensor.
Result<LlamaWeights> load_llama_weights(const HfModelDir& dir);

// Bytes make_dummy_weights allocates for `config` (float32 everywhere), for
// callers that check before allocating (Llama-3-8B is ~32 GB).
uint64_t dummy_weights_bytes(const ModelConfig& config);

// Deterministic random weights at real shapes, for tests and benchmarks
// (weights_dummy.cpp): matrices ~ N(0, 0.02^2) from a counter-based hash of
// (seed, tensor, index), so the same seed gives the same bytes on any machine
// and thread count; norms are 1, biases 0. Refuses (Error) an invalid config
// or one needing more than `max_bytes`.
Result<LlamaWeights> make_dummy_weights(const ModelConfig& config, uint64_t seed,
                                        uint64_t max_bytes = uint64_t{8} << 30);

// Inverse of llama.cpp convert_hf_to_gguf.py's `permute` on the rows of a
// [heads * head_dim, cols] matrix (cols = 1 for a bias): GGUF row
// h*D + 2i + p holds HF row h*D + p*D/2 + i.
void unpermute_rotary_rows(std::vector<float>& w, int64_t heads, int64_t head_dim, int64_t cols);

}  // namespace ember
