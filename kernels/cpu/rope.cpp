// Rotary position embedding (HF Llama convention) fused with the KV-cache
// write: both touch every K element once, so one pass instead of two. An FP8
// cache gets each element quantized as it is stored.
#include <algorithm>
#include <cmath>
#include <numbers>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/quant/fp8.h"

namespace ember {
namespace {

// Elements [at, at + n) of a KV cache = src: float32, or FP8 codes of src / scale (kernels/backend.h).
void store_kv(const float* src, int64_t n, Tensor& cache, int64_t at) {
  if (cache.dtype != DType::kF8E4M3) {
    std::copy_n(src, n, cache.f32() + at);
    return;
  }
  const float scale = *cache.scale;
  uint8_t* codes = static_cast<uint8_t*>(cache.data) + at;
  for (int64_t i = 0; i < n; ++i) codes[i] = quant::fp8_e4m3_from_float(src[i] / scale);
}

}  // namespace

std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  std::vector<float> out(half);
  // llama3 bands (transformers' _compute_llama3_parameters): wavelengths longer
  // than old_ctx / low_freq_factor are divided by factor, shorter than
  // old_ctx / high_freq_factor kept, and the band between blended linearly.
  const double old_ctx = static_cast<double>(rope.original_max_position_embeddings);
  const double low_wavelen = old_ctx / rope.low_freq_factor;
  const double high_wavelen = old_ctx / rope.high_freq_factor;
  for (int64_t i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(rope.theta, static_cast<double>(2 * i) / static_cast<double>(head_dim));
    if (rope.scaling == RopeScalingKind::kLinear) {
      f /= rope.factor;
    } else if (rope.scaling == RopeScalingKind::kLlama3) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f /= rope.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth =
            (old_ctx / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
        f = (1.0 - smooth) * f / rope.factor + smooth * f;
      }
    }
    out[i] = static_cast<float>(f);
  }
  return out;
}

void CpuBackend::rope_and_cache_write(Tensor& q, Tensor& k, const Tensor& v, const ForwardInputs& in,
                                      const RopeConfig& rope, int64_t head_dim, Tensor& k_cache,
                                      Tensor& v_cache) {
  const int64_t t_count = in.num_tokens();
  const int64_t d = head_dim, half = d / 2;
  const int64_t hq = q.cols() / d, hkv = k.cols() / d;
  assert(q.rows() == t_count && k.rows() == t_count && v.rows() == t_count && v.cols() == hkv * d);
  assert(k_cache.ndim == 4 && k_cache.dim(2) == hkv && k_cache.dim(3) == d);
  const int64_t num_slots = k_cache.dim(0) * k_cache.dim(1);
  (void)num_slots;
  const std::vector<float> inv_freq = rope_inv_freq(rope, d);
  pool_.parallel_for(t_count, [&](int64_t begin, int64_t end) {
    std::vector<float> cos_t(half), sin_t(half);
    for (int64_t t = begin; t < end; ++t) {
      // As HF: the angle is a float32 product, then cos/sin of it.
      const float pos = static_cast<float>(in.positions[t]);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = pos * inv_freq[i];
        cos_t[i] = std::cos(angle);
        sin_t[i] = std::sin(angle);
      }
      auto rotate = [&](float* x) {
        for (int64_t i = 0; i < half; ++i) {
          const float a = x[i], b = x[i + half];
          x[i] = a * cos_t[i] - b * sin_t[i];
          x[i + half] = b * cos_t[i] + a * sin_t[i];
        }
      };
      for (int64_t h = 0; h < hq; ++h) rotate(q.f32() + (t * hq + h) * d);
      for (int64_t h = 0; h < hkv; ++h) rotate(k.f32() + (t * hkv + h) * d);
      const int64_t slot = in.slot_mapping[t];
      if (slot < 0) continue;  // padding token: rotated, not cached
      assert(slot < num_slots);
      store_kv(k.f32() + t * hkv * d, hkv * d, k_cache, slot * hkv * d);
      store_kv(v.f32() + t * hkv * d, hkv * d, v_cache, slot * hkv * d);
    }
  });
}

void CpuBackend::qkv_rope_and_cache_write(const Tensor& qkv, const ForwardInputs& in, const RopeConfig& rope,
                                          int64_t head_dim, Tensor& q, Tensor& k_cache, Tensor& v_cache) {
  // The reference: split the rows, then the unfused op (k is rotated in a scratch copy).
  const int64_t t_count = in.num_tokens(), q_dim = q.cols(), kv_dim = k_cache.dim(2) * head_dim;
  assert(qkv.rows() == t_count && qkv.cols() == q_dim + 2 * kv_dim && q.rows() == t_count);
  std::vector<float> k(static_cast<size_t>(t_count * kv_dim)), v(k.size());
  const float* src = qkv.f32();
  for (int64_t t = 0; t < t_count; ++t) {
    const float* row = src + t * qkv.cols();
    std::copy_n(row, q_dim, q.f32() + t * q_dim);
    std::copy_n(row + q_dim, kv_dim, k.data() + t * kv_dim);
    std::copy_n(row + q_dim + kv_dim, kv_dim, v.data() + t * kv_dim);
  }
  Tensor kt = Tensor::f32(k.data(), {t_count, kv_dim});
  rope_and_cache_write(q, kt, Tensor::f32(v.data(), {t_count, kv_dim}), in, rope, head_dim, k_cache, v_cache);
}

void CpuBackend::set_kv_scale(const Tensor& x, int64_t col, int64_t width, int64_t rope_head_dim, float range,
                              Tensor& cache) {
  assert(cache.dtype == DType::kF8E4M3 && cache.scale != nullptr && col + width <= x.cols());
  // The largest square (of an element, or of a rotation pair's norm), its root taken once.
  float m2 = 0.0f;
  const int64_t half = rope_head_dim / 2;
  for (int64_t t = 0; t < x.rows(); ++t) {
    const float* row = x.f32() + t * x.cols() + col;
    if (half == 0) {
      for (int64_t i = 0; i < width; ++i) m2 = std::max(m2, row[i] * row[i]);
      continue;
    }
    for (int64_t h = 0; h + rope_head_dim <= width; h += rope_head_dim)
      for (int64_t i = 0; i < half; ++i) {
        const float a = row[h + i], b = row[h + i + half];
        m2 = std::max(m2, a * a + b * b);
      }
  }
  const float m = std::sqrt(m2);
  // The scale is the runner's (KvCache::k_scale / v_scale), written here as the contract says.
  if (m > 0.0f && std::isfinite(m)) *const_cast<float*>(cache.scale) = m / range;
}

}  // namespace ember
