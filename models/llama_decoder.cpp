// One forward pass of the Llama-family decoder (see llama_decoder.h). The
// residual stream follows vLLM: rms_norm's fused add keeps `residual` as the
// running sum, so each layer's output goes in as `x` of the next norm.
#include "models/llama_decoder.h"

#include <algorithm>
#include <cmath>

namespace ember {

KvCache KvCache::allocate(const ModelConfig& config, int64_t num_blocks, int64_t block_size) {
  KvCache c;
  c.num_blocks = num_blocks;
  c.block_size = block_size;
  c.num_kv_heads = config.num_kv_heads;
  c.head_dim = config.head_dim;
  const size_t n = static_cast<size_t>(num_blocks * block_size * config.num_kv_heads * config.head_dim);
  c.k.assign(static_cast<size_t>(config.num_layers), std::vector<float>(n, 0.0f));
  c.v.assign(static_cast<size_t>(config.num_layers), std::vector<float>(n, 0.0f));
  return c;
}

RopeConfig rope_config_of(const ModelConfig& config) {
  RopeConfig r;
  r.theta = config.rope_theta;
  const RopeScaling& s = config.rope_scaling;
  switch (s.type) {
    case RopeScalingType::kNone:
      r.scaling = RopeScalingKind::kNone;
      break;
    case RopeScalingType::kLinear:
      r.scaling = RopeScalingKind::kLinear;
      break;
    case RopeScalingType::kLlama3:
      r.scaling = RopeScalingKind::kLlama3;
      break;
  }
  r.factor = s.factor;
  r.low_freq_factor = s.low_freq_factor;
  r.high_freq_factor = s.high_freq_factor;
  r.original_max_position_embeddings = s.original_max_position_embeddings;
  return r;
}

LlamaDecoder::LlamaDecoder(const LlamaWeights& weights, Backend& backend)
    : w_(weights), backend_(backend), rope_(rope_config_of(weights.config)) {}

void LlamaDecoder::ensure_scratch(int64_t t) {
  const ModelConfig& c = w_.config;
  auto fit = [](std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  };
  fit(hidden_, t * c.hidden_size);
  fit(residual_, t * c.hidden_size);
  fit(normed_, t * c.hidden_size);
  fit(q_, t * c.num_heads * c.head_dim);
  fit(k_, t * c.num_kv_heads * c.head_dim);
  fit(v_, t * c.num_kv_heads * c.head_dim);
  fit(attn_, t * c.num_heads * c.head_dim);
  fit(gate_up_, t * 2 * c.intermediate_size);
  fit(act_, t * c.intermediate_size);
}

void LlamaDecoder::forward(const ForwardInputs& in, KvCache& cache, std::vector<float>& logits) {
  const ModelConfig& c = w_.config;
  const int64_t t = in.num_tokens(), h = c.hidden_size, d = c.head_dim;
  const int64_t q_dim = c.num_heads * d, kv_dim = c.num_kv_heads * d, inter = c.intermediate_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  ensure_scratch(t);

  Tensor hidden = Tensor::f32(hidden_.data(), {t, h});
  Tensor residual = Tensor::f32(residual_.data(), {t, h});
  Tensor normed = Tensor::f32(normed_.data(), {t, h});
  Tensor q = Tensor::f32(q_.data(), {t, q_dim});
  Tensor k = Tensor::f32(k_.data(), {t, kv_dim});
  Tensor v = Tensor::f32(v_.data(), {t, kv_dim});
  Tensor attn = Tensor::f32(attn_.data(), {t, q_dim});
  Tensor gate_up = Tensor::f32(gate_up_.data(), {t, 2 * inter});
  Tensor act = Tensor::f32(act_.data(), {t, inter});

  backend_.embedding(w_.embed.view(), in.token_ids, hidden);
  // A zero residual makes layer 0's fused add a copy: one code path for all layers.
  std::fill(residual_.begin(), residual_.begin() + t * h, 0.0f);

  for (size_t l = 0; l < w_.layers.size(); ++l) {
    const LayerWeights& lw = w_.layers[l];
    backend_.rms_norm(hidden, &residual, Tensor::f32(lw.attn_norm.data(), {h}), eps, normed);

    const Tensor wq = lw.wq.view(), wk = lw.wk.view(), wv = lw.wv.view();
    const Tensor bq = Tensor::f32(lw.bq.data(), {q_dim});
    const Tensor bk = Tensor::f32(lw.bk.data(), {kv_dim});
    const Tensor bv = Tensor::f32(lw.bv.data(), {kv_dim});
    const bool bias = c.attention_bias;
    backend_.linear(normed, wq, bias ? &bq : nullptr, q);
    backend_.linear(normed, wk, bias ? &bk : nullptr, k);
    backend_.linear(normed, wv, bias ? &bv : nullptr, v);

    Tensor k_cache = cache.k_tensor(l), v_cache = cache.v_tensor(l);
    backend_.rope_and_cache_write(q, k, v, in, rope_, d, k_cache, v_cache);
    backend_.paged_attention(q, k_cache, v_cache, in, c.num_heads, scale, attn);
    backend_.linear(attn, lw.wo.view(), nullptr, hidden);
    backend_.all_reduce(hidden);

    backend_.rms_norm(hidden, &residual, Tensor::f32(lw.ffn_norm.data(), {h}), eps, normed);
    backend_.linear(normed, lw.w_gate_up.view(), nullptr, gate_up);
    backend_.silu_mul(gate_up, act);
    backend_.linear(act, lw.w_down.view(), nullptr, hidden);
    backend_.all_reduce(hidden);
  }

  backend_.rms_norm(hidden, &residual, Tensor::f32(w_.final_norm.data(), {h}), eps, normed);
  // Only the wanted rows go through the LM head (V x H per row: the largest matmul).
  const int64_t r = static_cast<int64_t>(in.logits_indices.size());
  gathered_.resize(static_cast<size_t>(r * h));
  Tensor gathered = Tensor::f32(gathered_.data(), {r, h});
  backend_.gather_rows(normed, in.logits_indices, gathered);
  logits.resize(static_cast<size_t>(r * c.vocab_size));
  Tensor out = Tensor::f32(logits.data(), {r, c.vocab_size});
  backend_.linear(gathered, w_.head().view(), nullptr, out);
}

}  // namespace ember
