// Loading Llama-family weights from GGUF (see weights.h): matrices keep their
// GGUF type when the CPU kernels read it, everything else becomes float32.
#include "models/weights.h"

#include "kernels/quant/fp8.h"
#include "kernels/quant/quant_blocks.h"

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

// The kernel dtype of a GGUF type kept as is; false: dequantize to float32.
bool kernel_dtype(GgmlType t, DType* out) {
  switch (t) {
    case GgmlType::kF16: *out = DType::kF16; return true;
    case GgmlType::kBF16: *out = DType::kBF16; return true;
    case GgmlType::kQ8_0: *out = DType::kQ8_0; return true;
    case GgmlType::kQ4_0: *out = DType::kQ4_0; return true;
    case GgmlType::kQ4_1: *out = DType::kQ4_1; return true;
    case GgmlType::kQ4_K: *out = DType::kQ4_K; return true;
    case GgmlType::kQ6_K: *out = DType::kQ6_K; return true;
    case GgmlType::kF32: break;
  }
  return false;
}

// A matrix with numpy shape {rows, cols}: raw blocks when the kernels take
// its type, float32 otherwise (load_tensor checks shape and size first).
Status load_matrix(const GgufFile& gguf, const std::string& name, int64_t rows, int64_t cols, WeightMatrix* out) {
  const GgufTensor* t = gguf.find_tensor(name);
  DType dtype;
  if (t && kernel_dtype(t->type, &dtype)) {
    std::vector<float> unused;
    // Same checks as the float path, without dequantizing.
    const std::vector<int64_t> want{cols, rows};
    if (t->shape != want) return load_tensor(gguf, name, rows, cols, &unused);  // for its error message
    if (cols % dtype_block_elems(dtype) != 0 ||
        static_cast<uint64_t>(rows * dtype_row_bytes(dtype, cols)) != t->nbytes)
      return Error{gguf.name() + ": tensor '" + name + "' size does not match its type and shape"};
    *out = WeightMatrix{};
    out->dtype = dtype;
    out->rows = rows;
    out->cols = cols;
    out->raw.assign(t->data, t->data + t->nbytes);
    return Status::success();
  }
  *out = WeightMatrix::zeros(rows, cols);
  return load_tensor(gguf, name, rows, cols, &out->f32);
}

// Appends b's rows to a's (gate then up). Mixed types fall back to float32.
void stack_rows(WeightMatrix& a, WeightMatrix& b) {
  if (a.dtype != b.dtype) {
    for (WeightMatrix* m : {&a, &b}) {
      if (m->dtype == DType::kF32) continue;
      WeightMatrix f = WeightMatrix::zeros(m->rows, m->cols);
      for (int64_t r = 0; r < m->rows; ++r)
        quant::dequantize_row(m->dtype, m->raw.data() + r * dtype_row_bytes(m->dtype, m->cols), m->cols,
                       f.f32.data() + r * m->cols);
      *m = std::move(f);
    }
  }
  a.f32.insert(a.f32.end(), b.f32.begin(), b.f32.end());
  a.raw.insert(a.raw.end(), b.raw.begin(), b.raw.end());
  a.rows += b.rows;
}

}  // namespace

WeightMatrix WeightMatrix::zeros(int64_t rows, int64_t cols) {
  WeightMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.f32.assign(static_cast<size_t>(rows * cols), 0.0f);
  return m;
}

void dequantize_fp8(WeightMatrix& m) {
  if (m.dtype != DType::kF8E4M3) return;
  m.f32.resize(m.size());
  for (int64_t r = 0; r < m.rows; ++r) {
    const float scale = m.row_scale[static_cast<size_t>(r)];
    for (int64_t c = 0; c < m.cols; ++c)
      m.f32[static_cast<size_t>(r * m.cols + c)] = quant::fp8_e4m3_to_float(m.raw[static_cast<size_t>(r * m.cols + c)]) * scale;
  }
  m.raw = {};
  m.row_scale = {};
  m.dtype = DType::kF32;
}

namespace {

// fn(matrix) for every matrix of w (const or not).
template <class Weights, class Fn>
void for_each_matrix(Weights& w, Fn fn) {
  fn(w.embed);
  fn(w.lm_head);
  for (auto& l : w.layers)
    for (auto* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate_up, &l.w_down}) fn(*m);
}

}  // namespace

void dequantize_fp8(LlamaWeights& w) {
  for_each_matrix(w, [](WeightMatrix& m) { dequantize_fp8(m); });
}

bool has_fp8(const LlamaWeights& w) {
  bool any = false;
  for_each_matrix(w, [&](const WeightMatrix& m) { any |= m.dtype == DType::kF8E4M3; });
  return any;
}

void WeightMatrix::append_rows(WeightMatrix other) {
  if (dtype != other.dtype) {
    dequantize_fp8(*this);
    dequantize_fp8(other);
  }
  rows += other.rows;
  f32.insert(f32.end(), other.f32.begin(), other.f32.end());
  raw.insert(raw.end(), other.raw.begin(), other.raw.end());
  row_scale.insert(row_scale.end(), other.row_scale.begin(), other.row_scale.end());
}

uint64_t LlamaWeights::bytes() const {
  auto mat = [](const WeightMatrix& m) {
    return m.f32.size() * sizeof(float) + m.raw.size() + m.row_scale.size() * sizeof(float);
  };
  auto vec = [](const std::vector<float>& v) { return v.size() * sizeof(float); };
  uint64_t n = mat(embed) + mat(lm_head) + vec(final_norm);
  for (const LayerWeights& l : layers)
    n += vec(l.attn_norm) + vec(l.ffn_norm) + vec(l.bq) + vec(l.bk) + vec(l.bv) + mat(l.wq) + mat(l.wk) +
         mat(l.wv) + mat(l.wo) + mat(l.w_gate_up) + mat(l.w_down);
  return n;
}

void unpermute_rotary_rows(WeightMatrix& w, int64_t heads, int64_t head_dim) {
  if (w.dtype == DType::kF32) return unpermute_rotary_rows(w.f32, heads, head_dim, w.cols);
  const int64_t row = dtype_row_bytes(w.dtype, w.cols), half = head_dim / 2;
  std::vector<uint8_t> head(static_cast<size_t>(head_dim * row));
  for (int64_t h = 0; h < heads; ++h) {
    uint8_t* base = w.raw.data() + h * head_dim * row;
    std::memcpy(head.data(), base, head.size());
    for (int64_t i = 0; i < half; ++i)
      for (int64_t p = 0; p < 2; ++p)
        std::memcpy(base + (p * half + i) * row, head.data() + (2 * i + p) * row, static_cast<size_t>(row));
  }
}

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

Result<LlamaWeights> load_llama_weights(const GgufFile& gguf, const ModelConfig& config, const LayerHook& hook) {
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
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols, WeightMatrix* out) {
    if (s) s = load_matrix(gguf, name, rows, cols, out);
  };
  matrix("token_embd.weight", c.vocab_size, h, &w.embed);
  w.layers.resize(static_cast<size_t>(c.num_layers));
  for (int64_t l = 0; l < c.num_layers && s; ++l) {
    LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    const std::string p = "blk." + std::to_string(l) + ".";
    load(p + "attn_norm.weight", 0, h, &lw.attn_norm);
    matrix(p + "attn_q.weight", q_dim, h, &lw.wq);
    matrix(p + "attn_k.weight", kv_dim, h, &lw.wk);
    matrix(p + "attn_v.weight", kv_dim, h, &lw.wv);
    if (c.attention_bias) {
      load(p + "attn_q.bias", 0, q_dim, &lw.bq);
      load(p + "attn_k.bias", 0, kv_dim, &lw.bk);
      load(p + "attn_v.bias", 0, kv_dim, &lw.bv);
    }
    matrix(p + "attn_output.weight", h, q_dim, &lw.wo);
    load(p + "ffn_norm.weight", 0, h, &lw.ffn_norm);
    WeightMatrix up;
    matrix(p + "ffn_gate.weight", inter, h, &lw.w_gate_up);
    matrix(p + "ffn_up.weight", inter, h, &up);
    matrix(p + "ffn_down.weight", h, inter, &lw.w_down);
    if (!s) break;
    stack_rows(lw.w_gate_up, up);
    if (permuted) {
      unpermute_rotary_rows(lw.wq, c.num_heads, d);
      unpermute_rotary_rows(lw.wk, c.num_kv_heads, d);
      if (c.attention_bias) {
        unpermute_rotary_rows(lw.bq, c.num_heads, d, 1);
        unpermute_rotary_rows(lw.bk, c.num_kv_heads, d, 1);
      }
    }
    if (hook) s = hook(l, lw);
  }
  load("output_norm.weight", 0, h, &w.final_norm);
  if (!c.tie_word_embeddings) matrix("output.weight", c.vocab_size, h, &w.lm_head);
  if (!s) return s.error();
  return w;
}

}  // namespace ember
