// Loading Llama-family weights from a Hugging Face safetensors directory into
// float32 (see weights.h). HF's [out, in] layout and rotate_half rope pairing
// are ours, so tensors are upcast and copied, never permuted.
#include <set>
#include <string>
#include <vector>

#include "models/weights.h"

namespace ember {
namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s;
  for (int64_t d : shape) s += (s.empty() ? "" : ", ") + std::to_string(d);
  return "[" + s + "]";
}

// Reads the tensors the config calls for, remembering which names it used so
// that leftovers can be reported (a bias ember has no place for must not be
// dropped silently: the logits would be wrong).
class Reader {
 public:
  explicit Reader(const HfModelDir& dir) : dir_(dir) {}

  // Shape {rows, cols}, or {cols} when rows == 0.
  Status load(const std::string& name, int64_t rows, int64_t cols, std::vector<float>* out) {
    const StTensor* t = dir_.find_tensor(name);
    if (t == nullptr) return Error{dir_.dir() + ": tensor '" + name + "' is missing"};
    used_.insert(name);
    const std::string source = where(name);
    const std::vector<int64_t> want = rows == 0 ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols};
    if (t->shape != want)
      return Error{source + ": tensor '" + name + "' has shape " + shape_str(t->shape) + ", expected " +
                   shape_str(want)};
    if (!st_dtype_supported(t->dtype))
      return Error{source + ": tensor '" + name + "' has dtype " + st_dtype_name(t->dtype) +
                   ", expected F32, F16 or BF16"};
    out->resize(static_cast<size_t>(t->num_elements()));
    return st_to_f32(*t, out->data(), source);
  }

  // The first tensor of the directory the loads did not consume, if any.
  // Rotary inverse frequencies (old checkpoints save them) are recomputed from
  // the config; a tied lm_head some exporters write anyway equals the embedding.
  Status check_all_used(bool tied) const {
    for (const std::string& name : dir_.tensor_names()) {
      if (used_.count(name)) continue;
      if (name.ends_with(".rotary_emb.inv_freq")) continue;
      if (tied && name == "lm_head.weight") continue;
      return Error{where(name) + ": tensor '" + name + "' is not used by the " + dir_.config().architecture +
                   " decoder (an unsupported bias or layer?)"};
    }
    return Status::success();
  }

 private:
  std::string where(const std::string& name) const {
    const std::string shard = dir_.tensor_source(name);  // the shard's path
    return shard.empty() ? dir_.dir() : shard;
  }

  const HfModelDir& dir_;
  std::set<std::string> used_;
};

}  // namespace

Result<LlamaWeights> load_llama_weights(const HfModelDir& dir, const LayerHook& hook) {
  const ModelConfig& c = dir.config();  // validated by HfModelDir::open
  LlamaWeights w;
  w.config = c;
  const int64_t h = c.hidden_size, d = c.head_dim, q_dim = c.num_heads * d, kv_dim = c.num_kv_heads * d;
  const int64_t inter = c.intermediate_size;

  Reader reader(dir);
  Status s;
  auto load = [&](const std::string& name, int64_t rows, int64_t cols, std::vector<float>* out) {
    if (s) s = reader.load(name, rows, cols, out);
  };
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols, WeightMatrix* out) {
    *out = WeightMatrix::zeros(rows, cols);
    if (s) s = reader.load(name, rows, cols, &out->f32);
  };
  matrix("model.embed_tokens.weight", c.vocab_size, h, &w.embed);
  w.layers.resize(static_cast<size_t>(c.num_layers));
  for (int64_t l = 0; l < c.num_layers && s; ++l) {
    LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    load(p + "input_layernorm.weight", 0, h, &lw.attn_norm);
    matrix(p + "self_attn.q_proj.weight", q_dim, h, &lw.wq);
    matrix(p + "self_attn.k_proj.weight", kv_dim, h, &lw.wk);
    matrix(p + "self_attn.v_proj.weight", kv_dim, h, &lw.wv);
    if (c.attention_bias) {
      load(p + "self_attn.q_proj.bias", 0, q_dim, &lw.bq);
      load(p + "self_attn.k_proj.bias", 0, kv_dim, &lw.bk);
      load(p + "self_attn.v_proj.bias", 0, kv_dim, &lw.bv);
    }
    matrix(p + "self_attn.o_proj.weight", h, q_dim, &lw.wo);
    load(p + "post_attention_layernorm.weight", 0, h, &lw.ffn_norm);
    std::vector<float> up;
    matrix(p + "mlp.gate_proj.weight", inter, h, &lw.w_gate_up);
    load(p + "mlp.up_proj.weight", inter, h, &up);
    matrix(p + "mlp.down_proj.weight", h, inter, &lw.w_down);
    if (s) {
      lw.w_gate_up.f32.insert(lw.w_gate_up.f32.end(), up.begin(), up.end());
      lw.w_gate_up.rows += inter;
    }
    if (s && hook) s = hook(l, lw);
  }
  load("model.norm.weight", 0, h, &w.final_norm);
  if (!c.tie_word_embeddings) matrix("lm_head.weight", c.vocab_size, h, &w.lm_head);
  if (s) s = reader.check_all_used(c.tie_word_embeddings);
  if (!s) return s.error();
  return w;
}

}  // namespace ember
