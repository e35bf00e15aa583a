#include "engine/parallel/shard.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "kernels/backend.h"

namespace ember {
namespace {

// Rows [begin, end) of m.
WeightMatrix rows_of(const WeightMatrix& m, int64_t begin, int64_t end) {
  WeightMatrix out;
  out.dtype = m.dtype;
  out.rows = end - begin;
  out.cols = m.cols;
  if (m.dtype == DType::kF32) {
    out.f32.assign(m.f32.begin() + begin * m.cols, m.f32.begin() + end * m.cols);
  } else {
    const int64_t row_bytes = dtype_row_bytes(m.dtype, m.cols);
    out.raw.assign(m.raw.begin() + begin * row_bytes, m.raw.begin() + end * row_bytes);
  }
  if (!m.row_scale.empty()) out.row_scale.assign(m.row_scale.begin() + begin, m.row_scale.begin() + end);
  return out;
}

// Rows [a, b) then rows [c, d) of m, stacked.
WeightMatrix rows_of(const WeightMatrix& m, int64_t a, int64_t b, int64_t c, int64_t d) {
  WeightMatrix first = rows_of(m, a, b);
  first.append_rows(rows_of(m, c, d));
  return first;
}

// Columns [begin, end) of every row of m; a quantized matrix only at block boundaries.
Result<WeightMatrix> cols_of(const WeightMatrix& m, int64_t begin, int64_t end, const char* what) {
  const int64_t block = dtype_block_elems(m.dtype);
  if (begin % block != 0 || end % block != 0)
    return Error{std::string("tensor parallelism: ") + what + "'s column slice [" + std::to_string(begin) + ", " +
                 std::to_string(end) + ") cuts its " + std::to_string(block) +
                 "-element quantization blocks: use another --tensor-parallel-size"};
  WeightMatrix out;
  out.dtype = m.dtype;
  out.rows = m.rows;
  out.cols = end - begin;
  out.row_scale = m.row_scale;  // (FP8: a row's scale holds for any of its columns)
  if (m.dtype == DType::kF32) {
    out.f32.resize(static_cast<size_t>(out.rows * out.cols));
    for (int64_t r = 0; r < m.rows; ++r)
      std::memcpy(out.f32.data() + r * out.cols, m.f32.data() + r * m.cols + begin, static_cast<size_t>(out.cols) * 4);
  } else {
    const int64_t row_bytes = dtype_row_bytes(m.dtype, m.cols), slice = dtype_row_bytes(m.dtype, out.cols);
    const int64_t offset = dtype_row_bytes(m.dtype, begin);
    out.raw.resize(static_cast<size_t>(out.rows * slice));
    for (int64_t r = 0; r < m.rows; ++r)
      std::memcpy(out.raw.data() + r * slice, m.raw.data() + r * row_bytes + offset, static_cast<size_t>(slice));
  }
  return out;
}

std::vector<float> slice(const std::vector<float>& v, int64_t begin, int64_t end) {
  if (v.empty()) return {};
  return std::vector<float>(v.begin() + begin, v.begin() + end);
}

}  // namespace

Result<ModelConfig> shard_config(const ModelConfig& c, int n) {
  if (n < 1) return Error{"--tensor-parallel-size must be >= 1, got " + std::to_string(n)};
  ModelConfig s = c;
  if (n == 1) return s;
  const std::string tp = "--tensor-parallel-size " + std::to_string(n);
  if (c.num_heads % n != 0)
    return Error{tp + " does not divide the model's " + std::to_string(c.num_heads) + " attention heads"};
  if (c.intermediate_size % n != 0)
    return Error{tp + " does not divide the model's MLP width " + std::to_string(c.intermediate_size)};
  if (c.num_kv_heads >= n ? c.num_kv_heads % n != 0 : n % c.num_kv_heads != 0)
    return Error{tp + " and the model's " + std::to_string(c.num_kv_heads) +
                 " KV heads: one must divide the other (fewer KV heads than ranks are replicated)"};
  s.num_heads = c.num_heads / n;
  s.num_kv_heads = c.num_kv_heads >= n ? c.num_kv_heads / n : 1;
  s.intermediate_size = c.intermediate_size / n;
  return s;
}

ShardRanges shard_ranges(const ModelConfig& c, int rank, int n) {
  const ModelConfig s = shard_config(c, n).value();  // (callers check that `c` shards)
  const int64_t d = c.head_dim, heads = s.num_heads, inter = s.intermediate_size, kv_heads = s.num_kv_heads;
  // This rank's KV heads: its share, or (replicated) the one its query heads read.
  const int64_t kv_first = c.num_kv_heads >= n ? rank * kv_heads : rank * c.num_kv_heads / n;
  ShardRanges r;
  r.q0 = rank * heads * d;
  r.q1 = r.q0 + heads * d;
  r.k0 = kv_first * d;
  r.k1 = r.k0 + kv_heads * d;
  r.m0 = rank * inter;
  r.m1 = r.m0 + inter;
  return r;
}

Result<LayerWeights> shard_layer(const LayerWeights& l, const ModelConfig& c, int rank, int n) {
  const ShardRanges cut = shard_ranges(c, rank, n);
  LayerWeights o;
  o.attn_norm = l.attn_norm;
  o.ffn_norm = l.ffn_norm;
  o.wq = rows_of(l.wq, cut.q0, cut.q1);
  o.wk = rows_of(l.wk, cut.k0, cut.k1);
  o.wv = rows_of(l.wv, cut.k0, cut.k1);
  o.bq = slice(l.bq, cut.q0, cut.q1);
  o.bk = slice(l.bk, cut.k0, cut.k1);
  o.bv = slice(l.bv, cut.k0, cut.k1);
  Result<WeightMatrix> wo = cols_of(l.wo, cut.q0, cut.q1, "o_proj");
  if (!wo) return wo.error();
  o.wo = std::move(*wo);
  o.w_gate_up = rows_of(l.w_gate_up, cut.m0, cut.m1, c.intermediate_size + cut.m0, c.intermediate_size + cut.m1);
  Result<WeightMatrix> down = cols_of(l.w_down, cut.m0, cut.m1, "down_proj");
  if (!down) return down.error();
  o.w_down = std::move(*down);
  o.k_scale = l.k_scale;  // per tensor: every rank's KV heads share it
  o.v_scale = l.v_scale;
  return o;
}

VocabSplit vocab_split(int64_t v, int rank, int n) {
  VocabSplit s;
  s.ranks = n;
  s.stride = (v + n - 1) / n;
  s.begin = std::min<int64_t>(rank * s.stride, v);
  s.rows = std::min(s.stride, v - s.begin);
  return s;
}

WeightMatrix vocab_rows(const WeightMatrix& table, const VocabSplit& split) {
  return rows_of(table, split.begin, split.begin + split.rows);
}

Result<LlamaWeights> shard_weights(const LlamaWeights& w, int rank, int n, LmHead head) {
  Result<ModelConfig> sc = shard_config(w.config, n);
  if (!sc) return sc.error();
  const bool split = head == LmHead::kVocabParallel;
  if (n == 1 && !split) return w;
  LlamaWeights s;
  s.config = *sc;
  s.final_norm = w.final_norm;
  if (split) {  // this rank's vocabulary rows of the embedding and of an untied LM head
    s.vocab = vocab_split(w.config.vocab_size, rank, n);
    s.embed = vocab_rows(w.embed, s.vocab);
    if (!w.lm_head.empty()) s.lm_head = vocab_rows(w.lm_head, s.vocab);
  } else {
    s.embed = w.embed;
    s.lm_head = w.lm_head;
  }
  if (n == 1) {
    s.layers = w.layers;
    return s;
  }
  for (const LayerWeights& l : w.layers) {
    Result<LayerWeights> o = shard_layer(l, w.config, rank, n);
    if (!o) return o.error();
    s.layers.push_back(std::move(*o));
  }
  return s;
}

}  // namespace ember
