// Loading Llama-family weights from GGUF into float32 (see weights.h).
#include "models/weights.h"

#include <cstring>
#include <string>

namespace ember {
namespace {

// Reads tensor `name` with numpy shape {rows, cols} (ggml shape {cols, rows};
// a 1-D tensor has rows == 0) into float32.
Status load_tensor(const GgufFile& gguf, const std::string& name, int64_t rows, int64_t cols, std::vector<float>* out) {
  const GgufTensor* t = gguf.find_tensor(name);
  if (!t) return Error{gguf.name() + ": tensor '" + name + "' is missing"};
  const std::vector<int64_t> want = rows == 0 ? std::vector<int64_t>{cols} : std::vector<int64_t>{cols, rows};
  if (t->shape != want) {
    std::string got;
    for (int64_t d : t->shape) got += (got.empty() ? "" : ", ") + std::to_string(d);
    std::string exp;
    for (int64_t d : want) exp += (exp.empty() ? "" : ", ") + std::to_string(d);
    return Error{gguf.name() + ": tensor '" + name + "' has ggml shape [" + got + "], expected [" + exp + "]"};
  }
  const int64_t n = t->num_elements();
  int64_t block_elems = 0, block_bytes = 0;
  if (!ggml_type_layout(t->type, &block_elems, &block_bytes))
    return Error{gguf.name() + ": tensor '" + name + "' has unsupported type " + ggml_type_name(t->type)};
  if (n % block_elems != 0 || static_cast<uint64_t>(n / block_elems * block_bytes) != t->nbytes)
    return Error{gguf.name() + ": tensor '" + name + "' size does not match its type and shape"};
  out->assign(static_cast<size_t>(n), 0.0f);
  Status s = dequantize(t->type, t->data, n, out->data());
  if (!s) return Error{gguf.name() + ": tensor '" + name + "': " + s.error().message};
  return Status::success();
}

}  // namespace

void unpermute_rotary_rows(std::vector<float>& w, int64_t heads, int64_t head_dim, int64_t cols) {
  std::vector<float> head(static_cast<size_t>(head_dim * cols));
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* base = w.data() + h * head_dim * cols;
    std::memcpy(head.data(), base, head.size() * sizeof(float));
    for (int64_t i = 0; i < half; ++i)
      for (int64_t p = 0; p < 2; ++p)
        std::memcpy(base + (p * half + i) * cols, head.data() + (2 * i + p) * cols, cols * sizeof(float));
  }
}

Result<LlamaWeights> load_llama_weights(const GgufFile& gguf, const ModelConfig& config) {
  if (Status s = config.validate(); !s) return s.error();
  LlamaWeights w;
  w.config = config;
  const ModelConfig& c = config;
  const int64_t h = c.hidden_size, d = c.head_dim, q_dim = c.num_heads * d, kv_dim = c.num_kv_heads * d;
  const int64_t inter = c.intermediate_size;
  // Qwen2 GGUFs keep HF's layout (llama.cpp uses NEOX rope for them); only the
  // llama converter permutes.
  const bool permuted = c.architecture != "qwen2";

  Status s;
  auto load = [&](const std::string& name, int64_t rows, int64_t cols, std::vector<float>* out) {
    if (s) s = load_tensor(gguf, name, rows, cols, out);
  };
  load("token_embd.weight", c.vocab_size, h, &w.embed);
  w.layers.resize(static_cast<size_t>(c.num_layers));
  for (int64_t l = 0; l < c.num_layers && s; ++l) {
    LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    const std::string p = "blk." + std::to_string(l) + ".";
    load(p + "attn_norm.weight", 0, h, &lw.attn_norm);
    load(p + "attn_q.weight", q_dim, h, &lw.wq);
    load(p + "attn_k.weight", kv_dim, h, &lw.wk);
    load(p + "attn_v.weight", kv_dim, h, &lw.wv);
    if (c.attention_bias) {
      load(p + "attn_q.bias", 0, q_dim, &lw.bq);
      load(p + "attn_k.bias", 0, kv_dim, &lw.bk);
      load(p + "attn_v.bias", 0, kv_dim, &lw.bv);
    }
    load(p + "attn_output.weight", h, q_dim, &lw.wo);
    load(p + "ffn_norm.weight", 0, h, &lw.ffn_norm);
    std::vector<float> up;
    load(p + "ffn_gate.weight", inter, h, &lw.w_gate_up);
    load(p + "ffn_up.weight", inter, h, &up);
    load(p + "ffn_down.weight", h, inter, &lw.w_down);
    if (!s) break;
    lw.w_gate_up.insert(lw.w_gate_up.end(), up.begin(), up.end());
    if (permuted) {
      unpermute_rotary_rows(lw.wq, c.num_heads, d, h);
      unpermute_rotary_rows(lw.wk, c.num_kv_heads, d, h);
      if (c.attention_bias) {
        unpermute_rotary_rows(lw.bq, c.num_heads, d, 1);
        unpermute_rotary_rows(lw.bk, c.num_kv_heads, d, 1);
      }
    }
  }
  load("output_norm.weight", 0, h, &w.final_norm);
  if (!c.tie_word_embeddings) load("output.weight", c.vocab_size, h, &w.lm_head);
  if (!s) return s.error();
  return w;
}

}  // namespace ember
