// One forward pass of the Llama-family decoder (see llama_decoder.h). The
// residual stream follows vLLM: rms_norm's fused add keeps `residual` as the
// running sum, so each layer's output goes in as `x` of the next norm.
#include "models/llama_decoder.h"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace ember {

KvCache KvCache::allocate(const ModelConfig& config, int64_t num_blocks, int64_t block_size, DType dtype) {
  assert(dtype == DType::kF32 || dtype == DType::kF8E4M3);
  KvCache c;
  c.num_blocks = num_blocks;
  c.block_size = block_size;
  c.num_kv_heads = config.num_kv_heads;
  c.head_dim = config.head_dim;
  c.dtype = dtype;
  const size_t n = static_cast<size_t>(num_blocks * block_size * config.num_kv_heads * config.head_dim);
  const size_t layers = static_cast<size_t>(config.num_layers);
  if (dtype == DType::kF8E4M3) {
    c.k_fp8.assign(layers, std::vector<uint8_t>(n, 0));
    c.v_fp8.assign(layers, std::vector<uint8_t>(n, 0));
  } else {
    c.k.assign(layers, std::vector<float>(n, 0.0f));
    c.v.assign(layers, std::vector<float>(n, 0.0f));
  }
  c.k_scale.assign(layers, 1.0f);
  c.v_scale.assign(layers, 1.0f);
  return c;
}

int64_t KvCache::bytes_per_token(const ModelConfig& config, DType dtype) {
  return 2 * config.num_layers * config.num_kv_heads * config.head_dim * dtype_bytes(dtype, 1);
}

KvCacheView KvCache::view() {
  KvCacheView out;
  const std::initializer_list<int64_t> dims = {num_blocks, block_size, num_kv_heads, head_dim};
  for (size_t l = 0; l < k_scale.size(); ++l) {
    if (dtype == DType::kF8E4M3) {
      out.k.push_back(Tensor::of(k_fp8[l].data(), DType::kF8E4M3, dims));
      out.v.push_back(Tensor::of(v_fp8[l].data(), DType::kF8E4M3, dims));
      out.k.back().scale = &k_scale[l];
      out.v.back().scale = &v_scale[l];
    } else {
      out.k.push_back(Tensor::of(k[l].data(), DType::kF32, dims));
      out.v.push_back(Tensor::of(v[l].data(), DType::kF32, dims));
    }
  }
  return out;
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

DecoderWeights host_weight_views(const LlamaWeights& w) {
  const ModelConfig& c = w.config;
  const int64_t h = c.hidden_size, q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
  DecoderWeights v;
  v.config = c;
  v.embed = w.embed.view();
  v.final_norm = Tensor::f32(w.final_norm.data(), {h});
  v.vocab = w.vocab;
  v.head = w.head().view();  // (tied and split: the embedding's rows are this rank's vocabulary rows)
  for (const LayerWeights& lw : w.layers) {
    LayerWeightViews l;
    l.attn_norm = Tensor::f32(lw.attn_norm.data(), {h});
    l.ffn_norm = Tensor::f32(lw.ffn_norm.data(), {h});
    l.wq = lw.wq.view();
    l.wk = lw.wk.view();
    l.wv = lw.wv.view();
    l.wo = lw.wo.view();
    if (c.attention_bias) {
      l.bq = Tensor::f32(lw.bq.data(), {q_dim});
      l.bk = Tensor::f32(lw.bk.data(), {kv_dim});
      l.bv = Tensor::f32(lw.bv.data(), {kv_dim});
    }
    l.w_gate_up = lw.w_gate_up.view();
    l.w_down = lw.w_down.view();
    v.layers.push_back(l);
  }
  return v;
}

void* BackendBuffer::ensure(Backend& backend, size_t bytes) {
  if (bytes <= bytes_ && ptr_ != nullptr) return ptr_;
  release();
  backend_ = &backend;
  ptr_ = backend.allocate(bytes);
  bytes_ = bytes;
  return ptr_;
}

void BackendBuffer::release() {
  if (ptr_ != nullptr) backend_->deallocate(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

LlamaDecoder::LlamaDecoder(const LlamaWeights& weights, Backend& backend)
    : LlamaDecoder(host_weight_views(weights), backend) {}

LlamaDecoder::LlamaDecoder(DecoderWeights weights, Backend& backend)
    : w_(std::move(weights)), backend_(backend), rope_(rope_config_of(w_.config)) {
  fused_qkv_ = !w_.layers.empty() && std::all_of(w_.layers.begin(), w_.layers.end(), [&](const LayerWeightViews& l) {
    return l.wqkv.data != nullptr && (!w_.config.attention_bias || l.bqkv.data != nullptr);
  });
  fp8_weights_ = fused_qkv_ && std::all_of(w_.layers.begin(), w_.layers.end(), [](const LayerWeightViews& l) {
    return l.wqkv.dtype == DType::kF8E4M3 && l.w_gate_up.dtype == DType::kF8E4M3 && l.w_down.dtype == DType::kF8E4M3;
  });
}

void LlamaDecoder::reserve(int64_t t, int64_t rows) {
  t = std::max(t, reserved_tokens_);
  rows = std::max(rows, reserved_rows_);
  const ModelConfig& c = w_.config;
  const DType a = backend_.activation_dtype();
  const auto fit = [&](BackendBuffer& b, int64_t elems, DType dtype) {
    b.ensure(backend_, static_cast<size_t>(dtype_bytes(dtype, std::max<int64_t>(elems, 1))));
  };
  fit(hidden_, t * c.hidden_size, a);
  fit(residual_, t * c.hidden_size, a);
  fit(normed_, t * c.hidden_size, a);
  fit(q_, t * c.num_heads * c.head_dim, a);
  if (fused_qkv_) {
    fit(qkv_, t * (c.num_heads + 2 * c.num_kv_heads) * c.head_dim, a);
  } else {
    fit(k_, t * c.num_kv_heads * c.head_dim, a);
    fit(v_, t * c.num_kv_heads * c.head_dim, a);
  }
  fit(attn_, t * c.num_heads * c.head_dim, a);
  fit(gate_up_, t * 2 * c.intermediate_size, a);
  fit(act_, t * c.intermediate_size, a);
  if (fp8_weights_) {  // codes, then the rows' scales (16-byte aligned after the codes)
    const auto codes_and_scales = [&](int64_t cols) { return (t * cols + 15) / 16 * 16 + t * 4; };
    fit(normed_fp8_, codes_and_scales(c.hidden_size), DType::kF8E4M3);
    fit(act_fp8_, codes_and_scales(c.intermediate_size), DType::kF8E4M3);
  }
  fit(gathered_, rows * c.hidden_size, a);
  fit(logits_, rows * c.vocab_size, DType::kF32);
  if (w_.vocab.on()) {
    fit(vocab_part_, rows * w_.vocab.stride, DType::kF32);
    fit(vocab_all_, w_.vocab.ranks * rows * w_.vocab.stride, DType::kF32);
  }
  reserved_tokens_ = t;
  reserved_rows_ = rows;
}

namespace {
// --calculate-kv-scales: the largest |k| lands on code 200 and the largest |v| on 100 of E4M3's 448 (vLLM's
// K_SCALE_CONSTANT and V_SCALE_CONSTANT), headroom for later requests' larger values.
constexpr float kKScaleRange = 200.0f;
constexpr float kVScaleRange = 100.0f;
}  // namespace

Tensor LlamaDecoder::forward(const ForwardInputs& in, const KvCacheView& cache) {
  const ModelConfig& c = w_.config;
  const int64_t t = in.num_tokens(), h = c.hidden_size, d = c.head_dim;
  const int64_t q_dim = c.num_heads * d, kv_dim = c.num_kv_heads * d, inter = c.intermediate_size;
  const int64_t r = static_cast<int64_t>(in.logits_indices.size());
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  if (t > reserved_tokens_ || r > reserved_rows_) reserve(t, r);

  const DType a = backend_.activation_dtype();
  Tensor hidden = Tensor::of(hidden_.data(), a, {t, h});
  Tensor residual = Tensor::of(residual_.data(), a, {t, h});
  Tensor normed = Tensor::of(normed_.data(), a, {t, h});
  Tensor q = Tensor::of(q_.data(), a, {t, q_dim});
  Tensor attn = Tensor::of(attn_.data(), a, {t, q_dim});
  Tensor gate_up = Tensor::of(gate_up_.data(), a, {t, 2 * inter});
  Tensor act = Tensor::of(act_.data(), a, {t, inter});

  // FP8 weights whose linear quantizes this step's activations: the norm (and
  // below the SiLU) writes them quantized, a pass over memory less.
  const auto fp8_rows = [&](const BackendBuffer& buf, int64_t rows, int64_t cols) {
    const int64_t codes = (rows * cols + 15) / 16 * 16;
    return Tensor::fp8(buf.data(), reinterpret_cast<const float*>(static_cast<const char*>(buf.data()) + codes), rows,
                       cols);
  };
  const auto norm = [&](const Tensor& x, Tensor* res, const Tensor& weight, const Tensor* next, Tensor& out) {
    if (fp8_weights_ && next != nullptr && backend_.takes_fp8_activations(*next, t)) {
      Tensor q8 = fp8_rows(normed_fp8_, t, h);
      backend_.rms_norm_fp8(x, res, weight, eps, q8);
      return q8;
    }
    backend_.rms_norm(x, res, weight, eps, out);
    return out;
  };

  // A residual branch's last linear (o_proj, down_proj), the residual add and the norm after it, for `next`, the
  // linear that reads it (null: the LM head's bf16 rows). `next_in_epilogue`: that linear will be a GEMV epilogue
  // op (linear_rope_and_cache_write, linear_silu_mul) if the backend has them, which may then finish the norm.
  const auto branch_end = [&](const Tensor& x, const Tensor& w, const Tensor& norm_weight, const Tensor* next,
                              bool next_in_epilogue) {
    if (fp8_weights_ && next != nullptr && next_in_epilogue &&
        backend_.linear_add_for_next_norm(x, w, residual, norm_weight, eps, *next, normed))
      return normed;
    // (FP8: the norm may apply the linear's output scales, a pass less.)
    if (!fp8_weights_ || !backend_.linear_scaled_by_next_op(x, w, hidden, Backend::ScalesReader::kRmsNorm))
      backend_.linear(x, w, nullptr, hidden);
    backend_.all_reduce(hidden);
    return norm(hidden, &residual, norm_weight, next, normed);
  };

  if (w_.vocab.on()) {  // this rank's vocabulary rows, zeros for the others' tokens, summed over the ranks
    backend_.embedding(w_.embed, in, hidden, w_.vocab.begin);
    backend_.all_reduce(hidden);
  } else {
    backend_.embedding(w_.embed, in, hidden);
  }
  const bool calibrate = kv_scales_pending_ && t > 0;
  if (calibrate) kv_scales_pending_ = false;
  assert(!w_.layers.empty());
  // Layer 0 has no residual to add: it starts as the embeddings. Each layer ends in the next one's norm (the final
  // norm after the last).
  backend_.copy(hidden, residual);
  Tensor next_in = norm(hidden, nullptr, w_.layers[0].attn_norm, fused_qkv_ ? &w_.layers[0].wqkv : nullptr, normed);
  for (size_t l = 0; l < w_.layers.size(); ++l) {
    const LayerWeightViews& lw = w_.layers[l];
    const Tensor qkv_in = next_in;
    const bool bias = c.attention_bias;
    Tensor k_cache = cache.k[l], v_cache = cache.v[l];
    const bool set_scales = calibrate && k_cache.dtype == DType::kF8E4M3;
    // (FP8, small batches: the GEMV may do the rope and the cache write in its epilogue; not with a bias, nor
    // when the KV scales are calibrated from qkv first.)
    const bool roped_in_linear =
        fused_qkv_ && fp8_weights_ && !bias && !set_scales &&
        backend_.linear_rope_and_cache_write(qkv_in, lw.wqkv, in, rope_, d, q, k_cache, v_cache);
    if (roped_in_linear) {
      // q is rotated, k and v are in the cache
    } else if (fused_qkv_) {
      Tensor qkv = Tensor::of(qkv_.data(), a, {t, q_dim + 2 * kv_dim});
      // (FP8: the rope may apply the GEMM's output scales, a pass less; the same exceptions.)
      if (!fp8_weights_ || bias || set_scales ||
          !backend_.linear_scaled_by_next_op(qkv_in, lw.wqkv, qkv, Backend::ScalesReader::kQkvRope))
        backend_.linear(qkv_in, lw.wqkv, bias ? &lw.bqkv : nullptr, qkv);
      if (set_scales) {
        backend_.set_kv_scale(qkv, q_dim, kv_dim, d, kKScaleRange, k_cache);
        backend_.set_kv_scale(qkv, q_dim + kv_dim, kv_dim, 0, kVScaleRange, v_cache);
      }
      backend_.qkv_rope_and_cache_write(qkv, in, rope_, d, q, k_cache, v_cache);
    } else {
      Tensor k = Tensor::of(k_.data(), a, {t, kv_dim});
      Tensor v = Tensor::of(v_.data(), a, {t, kv_dim});
      backend_.linear(normed, lw.wq, bias ? &lw.bq : nullptr, q);
      backend_.linear(normed, lw.wk, bias ? &lw.bk : nullptr, k);
      backend_.linear(normed, lw.wv, bias ? &lw.bv : nullptr, v);
      if (set_scales) {
        backend_.set_kv_scale(k, 0, kv_dim, d, kKScaleRange, k_cache);
        backend_.set_kv_scale(v, 0, kv_dim, 0, kVScaleRange, v_cache);
      }
      backend_.rope_and_cache_write(q, k, v, in, rope_, d, k_cache, v_cache);
    }
    backend_.paged_attention(q, k_cache, v_cache, in, c.num_heads, scale, attn);
    const bool fp8_act = fp8_weights_ && backend_.takes_fp8_activations(lw.w_down, t);
    const Tensor up_in = branch_end(attn, lw.wo, lw.ffn_norm, &lw.w_gate_up, !fp8_act);

    Tensor down_in = act;
    if (fp8_act) {
      down_in = fp8_rows(act_fp8_, t, inter);
      backend_.linear_silu_mul_fp8(up_in, lw.w_gate_up, gate_up, down_in);
    } else if (!fp8_weights_ || !backend_.linear_silu_mul(up_in, lw.w_gate_up, act)) {
      backend_.linear(up_in, lw.w_gate_up, nullptr, gate_up);
      backend_.silu_mul(gate_up, act);
    }
    const bool last = l + 1 == w_.layers.size();
    const LayerWeightViews* next = last ? nullptr : &w_.layers[l + 1];
    next_in = branch_end(down_in, lw.w_down, last ? w_.final_norm : next->attn_norm,
                         next != nullptr && fused_qkv_ ? &next->wqkv : nullptr, !bias && !calibrate);
  }
  // (normed: the final norm's rows)
  // Only the wanted rows go through the LM head (V x H per row: the largest matmul).
  Tensor gathered = Tensor::of(gathered_.data(), a, {r, h});
  backend_.gather_logit_rows(normed, in, gathered);
  Tensor logits = Tensor::of(logits_.data(), DType::kF32, {r, c.vocab_size});
  lm_head(gathered, logits);
  return logits;
}

void LlamaDecoder::lm_head(const Tensor& gathered, Tensor& logits) {
  const VocabSplit& s = w_.vocab;
  if (!s.on()) {
    backend_.linear(gathered, w_.head, nullptr, logits);
    return;
  }
  // This rank's vocab rows: [R, s.rows] at the front of an [R, s.stride] slot
  // (the rest of the slot is padding nobody reads), gathered rank by rank, then
  // each rank's [R, its rows] block copied into its columns of the logits.
  // Each logit is the dot product the whole head computes: the same bits.
  const int64_t r = gathered.rows(), v = w_.config.vocab_size;
  Tensor part = Tensor::of(vocab_part_.data(), DType::kF32, {r, s.rows});
  if (s.rows > 0) backend_.linear(gathered, w_.head, nullptr, part);
  const Tensor slot = Tensor::of(vocab_part_.data(), DType::kF32, {r * s.stride});
  Tensor all = Tensor::of(vocab_all_.data(), DType::kF32, {s.ranks * r * s.stride});
  if (s.ranks == 1) {
    backend_.copy(slot, all);
  } else {
    assert(comm_ != nullptr && comm_->size() == s.ranks);
    comm_->all_gather(slot, all, stream_);
  }
  for (int k = 0; k < s.ranks; ++k) {
    const int64_t begin = k * s.stride, rows = std::clamp<int64_t>(v - begin, 0, s.stride);
    if (rows == 0) continue;
    const Tensor src = Tensor::of(static_cast<float*>(vocab_all_.data()) + k * r * s.stride, DType::kF32, {r, rows});
    Tensor dst = Tensor::of(static_cast<float*>(logits.data) + begin, DType::kF32, {r, rows});
    backend_.copy_2d(src, rows, dst, v);
  }
}

void LlamaDecoder::forward(const ForwardInputs& in, KvCache& cache, std::vector<float>& logits) {
  backend_.begin_forward(in);
  const Tensor out = forward(in, cache.view());
  logits.resize(static_cast<size_t>(out.numel()));
  backend_.download(out, logits.data());
}

}  // namespace ember
