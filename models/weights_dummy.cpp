// Deterministic random Llama weights at a config's real shapes (see weights.h),
// so benchmarks and tests can run Llama-3-8B-sized layers without the files.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "models/weights.h"

namespace ember {
namespace {

// splitmix64's finalizer: a bijective mix, so (seed, tensor, index) -> value
// needs no sequential state and any element can be computed independently.
uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in (0, 1): 53 random bits, offset by half a step so log() is finite.
double unit(uint64_t bits) { return (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53; }

// N(0, std^2) via Box-Muller from two hashes of the element's counter.
void fill_normal(std::vector<float>& out, size_t n, double std, uint64_t seed, uint64_t tensor) {
  out.resize(n);
  const uint64_t base = mix64(seed ^ mix64(tensor));
  constexpr double kTwoPi = 6.283185307179586;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t a = mix64(base + 2 * static_cast<uint64_t>(i));
    const uint64_t b = mix64(base + 2 * static_cast<uint64_t>(i) + 1);
    out[i] = static_cast<float>(std * std::sqrt(-2.0 * std::log(unit(a))) * std::cos(kTwoPi * unit(b)));
  }
}

void fill_matrix(WeightMatrix& m, int64_t rows, int64_t cols, double std, uint64_t seed, uint64_t tensor) {
  m = WeightMatrix{};
  m.rows = rows;
  m.cols = cols;
  fill_normal(m.f32, static_cast<size_t>(rows * cols), std, seed, tensor);
}

}  // namespace

double dummy_output_projection_std(const ModelConfig& config, int64_t layer) {
  return layer >= config.dummy_exit_layer ? kDummyStd * config.dummy_late_layer_scale : kDummyStd;
}

uint64_t dummy_weights_bytes(const ModelConfig& c) {
  // Within ModelConfig::validate()'s limits every product fits in 64 bits; an
  // unvalidated config only wraps (unsigned), and make_dummy_weights validates first.
  const uint64_t h = static_cast<uint64_t>(c.hidden_size), d = static_cast<uint64_t>(c.head_dim);
  const uint64_t q = static_cast<uint64_t>(c.num_heads) * d, kv = static_cast<uint64_t>(c.num_kv_heads) * d;
  const uint64_t inter = static_cast<uint64_t>(c.intermediate_size), v = static_cast<uint64_t>(c.vocab_size);
  uint64_t per_layer = 2 * h                 // norms
                       + q * h + 2 * kv * h  // q, k, v
                       + h * q               // o
                       + 3 * inter * h;      // gate, up, down
  if (c.attention_bias) per_layer += q + 2 * kv;
  const uint64_t head = c.tie_word_embeddings ? 0 : v * h;
  return 4 * (v * h + static_cast<uint64_t>(c.num_layers) * per_layer + h + head);
}

Result<LlamaWeights> make_dummy_weights(const ModelConfig& config, uint64_t seed, uint64_t max_bytes,
                                        const LayerHook& hook) {
  if (Status s = config.validate(); !s) return s.error();
  const uint64_t bytes = dummy_weights_bytes(config);
  if (bytes > max_bytes)
    return Error{"dummy weights need " + std::to_string(bytes) + " bytes, over the limit of " +
                 std::to_string(max_bytes)};
  const ModelConfig& c = config;
  const auto z = [](int64_t a, int64_t b = 1) { return static_cast<size_t>(a * b); };
  const size_t h = z(c.hidden_size), q_dim = z(c.num_heads, c.head_dim), kv_dim = z(c.num_kv_heads, c.head_dim);
  // HF's initializer_range; each tensor gets its own stream (numbered in a
  // fixed order), so its values do not depend on how others are computed.
  constexpr double kStd = kDummyStd;
  uint64_t tensor = 0;
  int64_t layer = 0;
  LlamaWeights w;
  w.config = c;
  fill_matrix(w.embed, c.vocab_size, c.hidden_size, kStd, seed, tensor++);
  w.layers.resize(z(c.num_layers));
  for (LayerWeights& lw : w.layers) {
    lw.attn_norm.assign(h, 1.0f);
    lw.ffn_norm.assign(h, 1.0f);
    fill_matrix(lw.wq, c.num_heads * c.head_dim, c.hidden_size, kStd, seed, tensor++);
    fill_matrix(lw.wk, c.num_kv_heads * c.head_dim, c.hidden_size, kStd, seed, tensor++);
    fill_matrix(lw.wv, c.num_kv_heads * c.head_dim, c.hidden_size, kStd, seed, tensor++);
    const double out_std = dummy_output_projection_std(c, layer++);
    fill_matrix(lw.wo, c.hidden_size, c.num_heads * c.head_dim, out_std, seed, tensor++);
    fill_matrix(lw.w_gate_up, 2 * c.intermediate_size, c.hidden_size, kStd, seed, tensor++);
    fill_matrix(lw.w_down, c.hidden_size, c.intermediate_size, out_std, seed, tensor++);
    if (c.attention_bias) {
      lw.bq.assign(q_dim, 0.0f);
      lw.bk.assign(kv_dim, 0.0f);
      lw.bv.assign(kv_dim, 0.0f);
    }
    if (hook) {
      if (Status s = hook(layer - 1, lw); !s) return s.error();
    }
  }
  w.final_norm.assign(h, 1.0f);
  if (!c.tie_word_embeddings) fill_matrix(w.lm_head, c.vocab_size, c.hidden_size, kStd, seed, kDummyLmHeadTensor);
  return w;
}

}  // namespace ember
