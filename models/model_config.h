#pragma once
// The shape of a Llama-family decoder, read from a Hugging Face config.json or
// from GGUF metadata. Everything the decoder, the KV cache and the tokenizer
// need to agree on lives here; loaders validate it once (see validate()).

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace ember {

class GgufFile;

enum class RopeScalingType { kNone, kLinear, kLlama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  // llama3 only (Llama 3.1+): frequency bands that are kept, scaled or blended.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture;  // "llama", "mistral", "qwen2" (HF model_type / GGUF general.architecture)
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;     // query heads
  int64_t num_kv_heads = 0;  // GQA: num_heads % num_kv_heads == 0
  int64_t head_dim = 0;      // usually hidden_size / num_heads, but explicit in some configs
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;  // context length
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-5;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;  // lm_head shares the embedding matrix (SmolLM2)
  bool attention_bias = false;       // q/k/v projections carry a bias (Qwen2)
  int64_t bos_token_id = -1;         // -1: none
  std::vector<int64_t> eos_token_ids;  // any of these ends generation
  std::string torch_dtype;           // as the checkpoint declares it ("bfloat16", ...), informational
  std::string quant_method;          // quantization_config.quant_method: "" | "fp8" | "compressed-tensors"
  // --load-format dummy only, from config.json's ember key
  // "ember_dummy": {"exit_layer": E, "late_layer_scale": S}: the o_proj and down_proj
  // of layers >= E are drawn S times smaller, so what those layers add to the
  // residual stream shrinks with S and the model's first E layers (a model cut
  // to E layers shares their dummy tensors) predict its output: a draft whose
  // acceptance S dials, for speculative decoding benchmarks. S = 1: plain dummy weights.
  int64_t dummy_exit_layer = 0;
  double dummy_late_layer_scale = 1.0;

  // Checks the invariants the decoder relies on; the message names the field.
  Status validate() const;
};

// `config_json` and `generation_config_json` are file contents; generation
// config may be empty. `source` names the file in error messages.
Result<ModelConfig> model_config_from_hf_json(const std::string& config_json,
                                              const std::string& generation_config_json,
                                              const std::string& source);

Result<ModelConfig> model_config_from_gguf(const GgufFile& gguf);

}  // namespace ember
