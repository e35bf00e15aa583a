// Loading Llama-family weights from a Hugging Face safetensors directory into
// float32 (see weights.h). HF's [out, in] layout and rotate_half rope pairing
// are ours, so tensors are upcast and copied, never permuted.
#include <cmath>
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

  // A weight matrix: float32 from F32/F16/BF16, or an FP8 checkpoint's E4M3
  // codes with their scales (`<name minus .weight>.weight_scale`: one value,
  // or one per output row).
  Status load_matrix(const std::string& name, int64_t rows, int64_t cols, WeightMatrix* out) {
    const StTensor* t = dir_.find_tensor(name);
    if (t == nullptr || t->dtype != StDtype::kF8E4M3) {
      *out = WeightMatrix::zeros(rows, cols);
      return load(name, rows, cols, &out->f32);
    }
    used_.insert(name);
    const std::string source = where(name);
    if (t->shape != std::vector<int64_t>{rows, cols})
      return Error{source + ": tensor '" + name + "' has shape " + shape_str(t->shape) + ", expected " +
                   shape_str({rows, cols})};
    const std::string base = name.substr(0, name.size() - std::string(".weight").size());
    if (dir_.find_tensor(base + ".weight_scale_inv") != nullptr)
      return Error{source + ": tensor '" + name + "' is block-quantized FP8 (weight_scale_inv, as DeepSeek's 128x128 "
                   "blocks); ember reads FP8 with a scale per tensor or per output channel"};
    const StTensor* st = dir_.find_tensor(base + ".weight_scale");
    if (st == nullptr) return Error{source + ": FP8 tensor '" + name + "' has no '" + base + ".weight_scale'"};
    used_.insert(st->name);
    const int64_t n = st->num_elements();
    const bool per_tensor = n == 1 && st->shape.size() <= 1;
    const bool per_row = n == rows && (st->shape == std::vector<int64_t>{rows} ||
                                       st->shape == std::vector<int64_t>{rows, 1});
    if (!per_tensor && !per_row)
      return Error{where(st->name) + ": tensor '" + st->name + "' has shape " + shape_str(st->shape) +
                   ": expected one scale ([] or [1]) or one per output channel ([" + std::to_string(rows) + "] or [" +
                   std::to_string(rows) + ", 1])"};
    auto scales = st_to_f32(*st, where(st->name));
    if (!scales) return scales.error();
    for (float v : *scales)
      if (!std::isfinite(v) || v < 0)
        return Error{where(st->name) + ": tensor '" + st->name + "' holds a scale that is negative or not finite"};
    if (const StTensor* in = dir_.find_tensor(base + ".input_scale"); in != nullptr) used_.insert(in->name);
    out->dtype = DType::kF8E4M3;
    out->rows = rows;
    out->cols = cols;
    out->f32 = {};
    out->raw.assign(t->data, t->data + rows * cols);
    for (size_t i = 0; i < out->raw.size(); ++i)
      if ((out->raw[i] & 0x7F) == 0x7F)
        return Error{source + ": FP8 tensor '" + name + "' holds NaN at element " + std::to_string(i) + " (byte " +
                     std::to_string(t->begin + i) + " of the data section)"};
    out->row_scale = per_tensor ? std::vector<float>(static_cast<size_t>(rows), scales->front()) : std::move(*scales);
    return Status::success();
  }

  // An FP8 KV cache's scale, when the checkpoint has one under any of `names` (one positive finite value);
  // `out` keeps its value otherwise. Several names: vLLM's spellings of the same scale.
  Status kv_scale(std::initializer_list<std::string> names, float* out) {
    for (const std::string& name : names) {
      const StTensor* t = dir_.find_tensor(name);
      if (t == nullptr) continue;
      used_.insert(name);
      if (t->num_elements() != 1 || t->shape.size() > 1)
        return Error{where(name) + ": tensor '" + name + "' has shape " + shape_str(t->shape) +
                     ": a KV-cache scale is one value ([] or [1])"};
      auto v = st_to_f32(*t, where(name));
      if (!v) return v.error();
      if (!std::isfinite(v->front()) || v->front() <= 0)
        return Error{where(name) + ": tensor '" + name + "' holds a KV-cache scale that is not positive and finite"};
      *out = v->front();
    }
    return Status::success();
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
    if (s) s = reader.load_matrix(name, rows, cols, out);
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
    WeightMatrix up;
    matrix(p + "mlp.gate_proj.weight", inter, h, &lw.w_gate_up);
    matrix(p + "mlp.up_proj.weight", inter, h, &up);
    matrix(p + "mlp.down_proj.weight", h, inter, &lw.w_down);
    if (s) lw.w_gate_up.append_rows(std::move(up));
    // An FP8 KV cache's scales (used with --kv-cache-dtype fp8): vLLM's names, the older shared kv_scale, and
    // compressed-tensors' output scales of the k and v projections.
    if (s) s = reader.kv_scale({p + "self_attn.kv_scale", p + "self_attn.k_scale", p + "self_attn.k_proj.output_scale"},
                               &lw.k_scale);
    if (s) s = reader.kv_scale({p + "self_attn.kv_scale", p + "self_attn.v_scale", p + "self_attn.v_proj.output_scale"},
                               &lw.v_scale);
    if (s && hook) s = hook(l, lw);
  }
  load("model.norm.weight", 0, h, &w.final_norm);
  if (!c.tie_word_embeddings) matrix("lm_head.weight", c.vocab_size, h, &w.lm_head);
  if (s) s = reader.check_all_used(c.tie_word_embeddings);
  if (!s) return s.error();
  return w;
}

}  // namespace ember
